/**
 * The small kernels: rmsnorm (indirect rows), rotary embedding, swiglu, embed, copy_rows,
 * fill, the LSE merge and the split-K reduction. Each mirrors the primitive of the same name in
 * src/backends/cpu/c/kvplan_cpu.h; optional index lists are nullable pointers. Element-wise
 * kernels use one thread per element, 256 per CTA: grid ceil(count / 256).
 */

import { pointwise } from './pointwise.ts';
import {
  type Arch,
  f64,
  type GeneratedKernel,
  KernelGenError,
  type KernelParam,
  LN2,
  LOG2E,
  NEG_INF,
  Ptx,
} from './ptx.ts';

export const EW_THREADS = 256;
export const NORM_THREADS = 256;

/** idx = ctaid.x * 256 + tid.x; returns past `count`. */
function flatIndex(x: Ptx, count: string): string {
  const t = x.special('%tid.x');
  const b = x.special('%ctaid.x');
  const idx = x.r();
  x.i(`mad.lo.s32 ${idx}, ${b}, ${EW_THREADS}, ${t}`);
  const out = x.p();
  x.i(`setp.ge.u32 ${out}, ${idx}, ${count}`);
  x.at(out, 'bra.uni $L_exit');
  return idx;
}

function finish(
  x: Ptx,
  arch: Arch,
  name: string,
  kind: GeneratedKernel['kind'],
  params: readonly KernelParam[],
  doc: string,
  extra: { globals?: string[]; block?: number; shared?: number; usesExit?: boolean } = {},
): GeneratedKernel {
  if (extra.usesExit !== false) x.place('$L_exit');
  const block = extra.block ?? EW_THREADS;
  return {
    name,
    kind,
    params,
    block,
    sharedBytes: extra.shared ?? 0,
    ptx: x.module({
      arch,
      entry: name,
      params,
      maxThreads: block,
      ...(extra.globals ? { globals: extra.globals } : {}),
      ...(extra.shared ? { dynamicShared: true } : {}),
      doc,
    }),
  };
}

/** Optional index list: row r maps to list[r] when the pointer is not null. */
function mapRow(x: Ptx, listParam: string, r: string): string {
  const n = x.isNull(listParam);
  const list = x.rd();
  x.i(`cvta.to.global.u64 ${list}, ${n.raw}`);
  const out = x.r();
  x.i(`mov.u32 ${out}, ${r}`);
  const has = x.p();
  x.i(`not.pred ${has}, ${n.pred}`);
  x.at(has, `ld.global.nc.u32 ${out}, [${x.addr(list, r, 4)}]`);
  return out;
}

/** base + (row * width + col) * 4. */
function elemAddr(x: Ptx, base: string, row: string, width: string, col: string): string {
  const e = x.rd();
  x.i(`mul.wide.u32 ${e}, ${row}, ${width}`);
  if (col !== '0') {
    const c = x.rd();
    x.i(`cvt.u64.u32 ${c}, ${col}`);
    x.i(`add.s64 ${e}, ${e}, ${c}`);
  }
  x.i(`shl.b64 ${e}, ${e}, 2`);
  x.i(`add.s64 ${e}, ${e}, ${base}`);
  return e;
}

/** out[i] = x[r(i)] * w / sqrt(mean(x[r(i)]^2) + eps). Grid n, 256 threads, one row per CTA. */
export function rmsnormKernel(arch: Arch): GeneratedKernel {
  const name = 'kvp_rmsnorm';
  const params: KernelParam[] = [
    { name: 'p_out', type: 'u64' },
    { name: 'p_x', type: 'u64' },
    { name: 'p_rows', type: 'u64', nullable: true },
    { name: 'p_w', type: 'u64' },
    { name: 'p_n', type: 'u32' },
    { name: 'p_d', type: 'u32' },
    { name: 'p_eps', type: 'f32' },
  ];
  const x = new Ptx();
  const t = x.special('%tid.x');
  const row = x.special('%ctaid.x');
  const OUT = x.gptr('p_out');
  const X = x.gptr('p_x');
  const W = x.gptr('p_w');
  const n = x.param('p_n', 'u32');
  const d = x.param('p_d', 'u32');
  const eps = x.param('p_eps', 'f32');
  const past = x.p();
  x.i(`setp.ge.u32 ${past}, ${row}, ${n}`);
  x.at(past, 'bra.uni $L_exit');
  const src = mapRow(x, 'p_rows', row);
  const xrow = elemAddr(x, X, src, d, '0');
  const orow = elemAddr(x, OUT, row, d, '0');
  const ss = x.f();
  x.i(`mov.f32 ${ss}, 0f00000000`);
  const j = x.r();
  const v = x.f();
  const p = x.p();
  const l1 = x.label('sq');
  const l1e = x.label('sq_end');
  x.i(`mov.u32 ${j}, ${t}`);
  x.place(l1);
  x.i(`setp.ge.u32 ${p}, ${j}, ${d}`);
  x.at(p, `bra.uni ${l1e}`);
  x.i(`ld.global.f32 ${v}, [${x.addr(xrow, j, 4)}]`);
  x.i(`fma.rn.f32 ${ss}, ${v}, ${v}, ${ss}`);
  x.i(`add.s32 ${j}, ${j}, ${NORM_THREADS}`);
  x.i(`bra.uni ${l1}`);
  x.place(l1e);
  const tmp = x.f();
  for (const lane of [16, 8, 4, 2, 1]) {
    x.i(`shfl.sync.bfly.b32 ${tmp}, ${ss}, ${lane}, 31, -1`);
    x.i(`add.f32 ${ss}, ${ss}, ${tmp}`);
  }
  const red = x.r();
  x.i(`mov.u32 ${red}, kvp_smem`);
  const lane = x.r();
  x.i(`and.b32 ${lane}, ${t}, 31`);
  const warp = x.r();
  x.i(`shr.u32 ${warp}, ${t}, 5`);
  const first = x.p();
  x.i(`setp.eq.u32 ${first}, ${lane}, 0`);
  const slot = x.r();
  x.i(`mad.lo.s32 ${slot}, ${warp}, 4, ${red}`);
  x.at(first, `st.shared.f32 [${slot}], ${ss}`);
  x.i('bar.sync 0');
  x.i(`ld.shared.f32 ${ss}, [${red}]`);
  for (let w = 1; w < NORM_THREADS / 32; w++) {
    x.i(`ld.shared.f32 ${tmp}, [${red}+${w * 4}]`);
    x.i(`add.f32 ${ss}, ${ss}, ${tmp}`);
  }
  const df = x.f();
  x.i(`cvt.rn.f32.u32 ${df}, ${d}`);
  const inv = x.f();
  x.i(`div.rn.f32 ${inv}, ${ss}, ${df}`);
  x.i(`add.f32 ${inv}, ${inv}, ${eps}`);
  x.i(`sqrt.rn.f32 ${inv}, ${inv}`);
  x.i(`rcp.rn.f32 ${inv}, ${inv}`);
  const l2 = x.label('out');
  const l2e = x.label('out_end');
  const wv = x.f();
  x.i(`mov.u32 ${j}, ${t}`);
  x.place(l2);
  x.i(`setp.ge.u32 ${p}, ${j}, ${d}`);
  x.at(p, `bra.uni ${l2e}`);
  x.i(`ld.global.f32 ${v}, [${x.addr(xrow, j, 4)}]`);
  x.i(`ld.global.nc.f32 ${wv}, [${x.addr(W, j, 4)}]`);
  x.i(`mul.f32 ${v}, ${v}, ${wv}`);
  x.i(`mul.f32 ${v}, ${v}, ${inv}`);
  x.i(`st.global.f32 [${x.addr(orow, j, 4)}], ${v}`);
  x.i(`add.s32 ${j}, ${j}, ${NORM_THREADS}`);
  x.i(`bra.uni ${l2}`);
  x.place(l2e);
  return finish(x, arch, name, 'norm', params, 'RMSNorm over rows read through an optional index list.', {
    block: NORM_THREADS,
    shared: (NORM_THREADS / 32) * 4,
  });
}

/**
 * Rotary embedding, rotate-half pairs (i, i + hd/2), angle pos[r] * theta^(-2i/hd), out of place
 * (out may equal x). The inverse frequencies are computed on the host in double precision and
 * baked in as a constant table; the angle is formed and reduced mod 2*pi in f64 before the f32
 * sin/cos, so large positions keep their accuracy. One thread per (row, head, i < hd/2).
 */
export function ropeKernel(arch: Arch, headDim: number, theta: number): GeneratedKernel {
  if (headDim < 2 || headDim % 2 !== 0)
    throw new KernelGenError(`rope needs an even head_dim (got ${headDim})`);
  const half = headDim / 2;
  const tag = String(theta).replace(/[^0-9a-zA-Z]/g, '_');
  const name = `kvp_rope_hd${headDim}_theta${tag}`;
  const params: KernelParam[] = [
    { name: 'p_out', type: 'u64' },
    { name: 'p_x', type: 'u64' },
    { name: 'p_pos', type: 'u64', nullable: true },
    { name: 'p_n', type: 'u32' },
    { name: 'p_heads', type: 'u32' },
  ];
  const table = Array.from({ length: half }, (_, i) => f64(theta ** ((-2 * i) / headDim)));
  const x = new Ptx();
  const OUT = x.gptr('p_out');
  const X = x.gptr('p_x');
  const n = x.param('p_n', 'u32');
  const heads = x.param('p_heads', 'u32');
  const count = x.r();
  x.i(`mul.lo.s32 ${count}, ${n}, ${heads}`);
  x.i(`mul.lo.s32 ${count}, ${count}, ${half}`);
  const idx = flatIndex(x, count);
  const i = x.r();
  x.i(`rem.u32 ${i}, ${idx}, ${half}`);
  const rh = x.r();
  x.i(`div.u32 ${rh}, ${idx}, ${half}`);
  const r = x.r();
  x.i(`div.u32 ${r}, ${rh}, ${heads}`);
  const pos = mapRow(x, 'p_pos', r);
  const tab = x.rd();
  x.i(`mov.u64 ${tab}, kvp_invfreq`);
  const fr = x.fd();
  x.i(`ld.const.f64 ${fr}, [${x.addr(tab, i, 8)}]`);
  const ang = x.fd();
  x.i(`cvt.rn.f64.s32 ${ang}, ${pos}`);
  x.i(`mul.f64 ${ang}, ${ang}, ${fr}`);
  const k = x.fd();
  x.i(`mul.f64 ${k}, ${ang}, ${f64(1 / (2 * Math.PI))}`);
  x.i(`cvt.rni.f64.f64 ${k}, ${k}`);
  x.i(`neg.f64 ${k}, ${k}`);
  x.i(`fma.rn.f64 ${ang}, ${k}, ${f64(2 * Math.PI)}, ${ang}`);
  const a = x.f();
  x.i(`cvt.rn.f32.f64 ${a}, ${ang}`);
  const c = x.f();
  const s = x.f();
  x.i(`cos.approx.f32 ${c}, ${a}`);
  x.i(`sin.approx.f32 ${s}, ${a}`);
  const lo = elemAddr(x, X, rh, String(headDim), i);
  const lo2 = elemAddr(x, OUT, rh, String(headDim), i);
  const vl = x.f();
  const vh = x.f();
  x.i(`ld.global.f32 ${vl}, [${lo}]`);
  x.i(`ld.global.f32 ${vh}, [${lo}+${half * 4}]`);
  const ol = x.f();
  const oh = x.f();
  x.i(`mul.f32 ${ol}, ${vh}, ${s}`);
  x.i(`neg.f32 ${ol}, ${ol}`);
  x.i(`fma.rn.f32 ${ol}, ${vl}, ${c}, ${ol}`);
  x.i(`mul.f32 ${oh}, ${vl}, ${s}`);
  x.i(`fma.rn.f32 ${oh}, ${vh}, ${c}, ${oh}`);
  x.i(`st.global.f32 [${lo2}], ${ol}`);
  x.i(`st.global.f32 [${lo2}+${half * 4}], ${oh}`);
  return finish(x, arch, name, 'rope', params, 'rotary embedding (rotate-half), f64 angle reduction.', {
    globals: [`.const .align 8 .f64 kvp_invfreq[${table.length}] = {${table.join(', ')}};`],
  });
}

/**
 * out[i] = body(operands[i]…, attrs…) over `count` elements, one thread each (out may alias an
 * operand). Operand k is the pointer parameter `p_<operands[k]>`; a numeric attribute is the f32
 * parameter `p_attr_<name>`.
 */
export function mapKernel(
  arch: Arch,
  name: string,
  doc: string,
  operands: readonly string[],
  attrs: readonly string[],
  body: (x: Ptx, args: readonly string[], attrs: Readonly<Record<string, string>>) => string,
): GeneratedKernel {
  const params: KernelParam[] = [
    { name: 'p_out', type: 'u64' },
    ...operands.map((o): KernelParam => ({ name: `p_${o}`, type: 'u64' })),
    ...attrs.map((a): KernelParam => ({ name: `p_attr_${a}`, type: 'f32' })),
    { name: 'p_count', type: 'u32' },
  ];
  const x = new Ptx();
  const OUT = x.gptr('p_out');
  const ptrs = operands.map((o) => x.gptr(`p_${o}`));
  const values = Object.fromEntries(attrs.map((a) => [a, x.param(`p_attr_${a}`, 'f32')]));
  const count = x.param('p_count', 'u32');
  const idx = flatIndex(x, count);
  const args = ptrs.map((p) => {
    const v = x.f();
    x.i(`ld.global.f32 ${v}, [${x.addr(p, idx, 4)}]`);
    return v;
  });
  const out = body(x, args, values);
  x.i(`st.global.f32 [${x.addr(OUT, idx, 4)}], ${out}`);
  return finish(x, arch, name, 'elementwise', params, doc);
}

/** Operand k of a pointwise kernel is the parameter `p_<letter k>`: a, b, c, … */
export const pointwiseOperand = (k: number): string => String.fromCharCode(97 + k);

/** The kernel `kvp_<fn>` of a pointwise op of ./pointwise.ts. */
export function pointwiseKernel(
  arch: Arch,
  fn: string,
  arity: number,
  attrs: readonly string[],
): GeneratedKernel {
  const spell = pointwise[fn];
  if (!spell) throw new KernelGenError(`the PTX backend has no pointwise op '${fn}'`);
  if (arity > 26) throw new KernelGenError(`pointwise op '${fn}' has ${arity} operands; at most 26`);
  const operands = Array.from({ length: arity }, (_, k) => pointwiseOperand(k));
  return mapKernel(arch, `kvp_${fn}`, `out = ${fn}(${operands.join(', ')})`, operands, attrs, spell);
}

/** out = silu(gate) * up (out may alias either input). */
export function swigluKernel(arch: Arch): GeneratedKernel {
  return mapKernel(arch, 'kvp_swiglu', 'out = silu(a) * b', ['a', 'b'], [], (x, [g, u]) => {
    const e = x.f();
    x.i(`mul.f32 ${e}, ${g}, ${LOG2E}`);
    x.i(`neg.f32 ${e}, ${e}`);
    x.i(`ex2.approx.ftz.f32 ${e}, ${e}`);
    x.i(`add.f32 ${e}, ${e}, 0f3F800000`);
    const o = x.f();
    x.i(`div.rn.f32 ${o}, ${g}, ${e}`);
    x.i(`mul.f32 ${o}, ${o}, ${u}`);
    return o;
  });
}

/** out[i] = table[ids[i]], rows of d floats. */
export function embedKernel(arch: Arch): GeneratedKernel {
  const params: KernelParam[] = [
    { name: 'p_out', type: 'u64' },
    { name: 'p_table', type: 'u64' },
    { name: 'p_ids', type: 'u64' },
    { name: 'p_n', type: 'u32' },
    { name: 'p_d', type: 'u32' },
  ];
  const x = new Ptx();
  const OUT = x.gptr('p_out');
  const T = x.gptr('p_table');
  const IDS = x.gptr('p_ids');
  const n = x.param('p_n', 'u32');
  const d = x.param('p_d', 'u32');
  const count = x.r();
  x.i(`mul.lo.s32 ${count}, ${n}, ${d}`);
  const idx = flatIndex(x, count);
  const r = x.r();
  x.i(`div.u32 ${r}, ${idx}, ${d}`);
  const c = x.r();
  x.i(`rem.u32 ${c}, ${idx}, ${d}`);
  const id = x.r();
  x.i(`ld.global.nc.u32 ${id}, [${x.addr(IDS, r, 4)}]`);
  const v = x.f();
  x.i(`ld.global.nc.f32 ${v}, [${elemAddr(x, T, id, d, c)}]`);
  x.i(`st.global.f32 [${x.addr(OUT, idx, 4)}], ${v}`);
  return finish(x, arch, 'kvp_embed', 'embed', params, 'out[i] = table[ids[i]]');
}

/** dst[dst_rows ? dst_rows[i] : i] = src[src_rows ? src_rows[i] : i], n rows of width floats. */
export function copyRowsKernel(arch: Arch): GeneratedKernel {
  const params: KernelParam[] = [
    { name: 'p_dst', type: 'u64' },
    { name: 'p_dst_rows', type: 'u64', nullable: true },
    { name: 'p_src', type: 'u64' },
    { name: 'p_src_rows', type: 'u64', nullable: true },
    { name: 'p_n', type: 'u32' },
    { name: 'p_width', type: 'u32' },
  ];
  const x = new Ptx();
  const DST = x.gptr('p_dst');
  const SRC = x.gptr('p_src');
  const n = x.param('p_n', 'u32');
  const w = x.param('p_width', 'u32');
  const count = x.r();
  x.i(`mul.lo.s32 ${count}, ${n}, ${w}`);
  const idx = flatIndex(x, count);
  const r = x.r();
  x.i(`div.u32 ${r}, ${idx}, ${w}`);
  const c = x.r();
  x.i(`rem.u32 ${c}, ${idx}, ${w}`);
  const sr = mapRow(x, 'p_src_rows', r);
  const dr = mapRow(x, 'p_dst_rows', r);
  const v = x.f();
  x.i(`ld.global.f32 ${v}, [${elemAddr(x, SRC, sr, w, c)}]`);
  x.i(`st.global.f32 [${elemAddr(x, DST, dr, w, c)}], ${v}`);
  return finish(x, arch, 'kvp_copy_rows', 'copy', params, 'row copy through optional index lists');
}

/** out[i] = value, count floats. */
export function fillKernel(arch: Arch): GeneratedKernel {
  const params: KernelParam[] = [
    { name: 'p_out', type: 'u64' },
    { name: 'p_count', type: 'u32' },
    { name: 'p_value', type: 'f32' },
  ];
  const x = new Ptx();
  const OUT = x.gptr('p_out');
  const count = x.param('p_count', 'u32');
  const value = x.param('p_value', 'f32');
  const idx = flatIndex(x, count);
  x.i(`st.global.f32 [${x.addr(OUT, idx, 4)}], ${value}`);
  return finish(x, arch, 'kvp_fill', 'elementwise', params, 'out[i] = value');
}

/**
 * out[i] = (ws[i] + ws[zstride + i] + ... + ws[(splits - 1) * zstride + i]) + bias[i % n]: the
 * partials of a split-K GEMM (gemm.ts, gemmSplit), summed in split order so that the result does
 * not depend on which split finished first.
 */
export function splitkReduceKernel(arch: Arch): GeneratedKernel {
  const params: KernelParam[] = [
    { name: 'p_out', type: 'u64' },
    { name: 'p_ws', type: 'u64' },
    { name: 'p_bias', type: 'u64', nullable: true },
    { name: 'p_count', type: 'u32' },
    { name: 'p_n', type: 'u32' },
    { name: 'p_splits', type: 'u32' },
    { name: 'p_zstride', type: 'u32' },
  ];
  const x = new Ptx();
  const OUT = x.gptr('p_out');
  const WS = x.gptr('p_ws');
  const noBias = x.isNull('p_bias');
  const bias = x.rd();
  x.i(`cvta.to.global.u64 ${bias}, ${noBias.raw}`);
  const count = x.param('p_count', 'u32');
  const n = x.param('p_n', 'u32');
  const splits = x.param('p_splits', 'u32');
  const zstride = x.param('p_zstride', 'u32');
  const idx = flatIndex(x, count);
  const acc = x.f();
  x.i(`ld.global.f32 ${acc}, [${x.addr(WS, idx, 4)}]`);
  const at = x.r();
  x.i(`mov.u32 ${at}, ${idx}`);
  const z = x.r();
  x.i(`mov.u32 ${z}, 1`);
  const loop = x.label('z');
  const done = x.label('sum');
  x.place(loop);
  const end = x.p();
  x.i(`setp.ge.u32 ${end}, ${z}, ${splits}`);
  x.at(end, `bra.uni ${done}`);
  x.i(`add.s32 ${at}, ${at}, ${zstride}`);
  const v = x.f();
  x.i(`ld.global.f32 ${v}, [${x.addr(WS, at, 4)}]`);
  x.i(`add.f32 ${acc}, ${acc}, ${v}`);
  x.i(`add.s32 ${z}, ${z}, 1`);
  x.i(`bra.uni ${loop}`);
  x.place(done);
  const withBias = x.p();
  x.i(`not.pred ${withBias}, ${noBias.pred}`);
  const col = x.r();
  x.i(`rem.u32 ${col}, ${idx}, ${n}`);
  const b = x.f();
  x.i(`mov.f32 ${b}, 0f00000000`);
  x.at(withBias, `ld.global.nc.f32 ${b}, [${x.addr(bias, col, 4)}]`);
  x.i(`add.f32 ${acc}, ${acc}, ${b}`);
  x.i(`st.global.f32 [${x.addr(OUT, idx, 4)}], ${acc}`);
  return finish(
    x,
    arch,
    'kvp_splitk_reduce',
    'elementwise',
    params,
    'out = sum of the split-K partials + bias',
  );
}

/**
 * (o, lse) = merge((o1, lse1), (o2, lse2)) by the log-sum-exp rule, natural log; outputs must not
 * alias the inputs. pairs = rows * heads; one thread per (pair, d).
 */
export function mergeKernel(arch: Arch): GeneratedKernel {
  const params: KernelParam[] = [
    { name: 'p_o', type: 'u64' },
    { name: 'p_lse', type: 'u64' },
    { name: 'p_o1', type: 'u64' },
    { name: 'p_lse1', type: 'u64' },
    { name: 'p_o2', type: 'u64' },
    { name: 'p_lse2', type: 'u64' },
    { name: 'p_pairs', type: 'u32' },
    { name: 'p_hd', type: 'u32' },
  ];
  const x = new Ptx();
  const O = x.gptr('p_o');
  const L = x.gptr('p_lse');
  const O1 = x.gptr('p_o1');
  const L1 = x.gptr('p_lse1');
  const O2 = x.gptr('p_o2');
  const L2 = x.gptr('p_lse2');
  const pairs = x.param('p_pairs', 'u32');
  const hd = x.param('p_hd', 'u32');
  const count = x.r();
  x.i(`mul.lo.s32 ${count}, ${pairs}, ${hd}`);
  const idx = flatIndex(x, count);
  const pr = x.r();
  x.i(`div.u32 ${pr}, ${idx}, ${hd}`);
  const d = x.r();
  x.i(`rem.u32 ${d}, ${idx}, ${hd}`);
  const l1 = x.f();
  const l2 = x.f();
  x.i(`ld.global.f32 ${l1}, [${x.addr(L1, pr, 4)}]`);
  x.i(`ld.global.f32 ${l2}, [${x.addr(L2, pr, 4)}]`);
  const m = x.f();
  x.i(`max.f32 ${m}, ${l1}, ${l2}`);
  const valid = x.p();
  x.i(`setp.ne.f32 ${valid}, ${m}, ${NEG_INF}`);
  const w1 = x.f();
  const w2 = x.f();
  for (const [w, l] of [
    [w1, l1],
    [w2, l2],
  ] as const) {
    x.i(`sub.f32 ${w}, ${l}, ${m}`);
    x.i(`mul.f32 ${w}, ${w}, ${LOG2E}`);
    x.i(`ex2.approx.ftz.f32 ${w}, ${w}`);
  }
  const tot = x.f();
  x.i(`add.f32 ${tot}, ${w1}, ${w2}`);
  const a = x.f();
  const b = x.f();
  x.i(`div.rn.f32 ${a}, ${w1}, ${tot}`);
  x.i(`div.rn.f32 ${b}, ${w2}, ${tot}`);
  x.i(`selp.f32 ${a}, ${a}, 0f00000000, ${valid}`);
  x.i(`selp.f32 ${b}, ${b}, 0f00000000, ${valid}`);
  const x1 = x.f();
  const x2 = x.f();
  x.i(`ld.global.f32 ${x1}, [${x.addr(O1, idx, 4)}]`);
  x.i(`ld.global.f32 ${x2}, [${x.addr(O2, idx, 4)}]`);
  const za = x.p();
  const zb = x.p();
  x.i(`setp.eq.f32 ${za}, ${a}, 0f00000000`);
  x.i(`setp.eq.f32 ${zb}, ${b}, 0f00000000`);
  x.i(`mul.f32 ${x1}, ${x1}, ${a}`);
  x.i(`selp.f32 ${x1}, 0f00000000, ${x1}, ${za}`);
  x.i(`mul.f32 ${x2}, ${x2}, ${b}`);
  x.i(`selp.f32 ${x2}, 0f00000000, ${x2}, ${zb}`);
  x.i(`add.f32 ${x1}, ${x1}, ${x2}`);
  x.i(`st.global.f32 [${x.addr(O, idx, 4)}], ${x1}`);
  const first = x.p();
  x.i(`setp.eq.u32 ${first}, ${d}, 0`);
  x.i(`lg2.approx.f32 ${tot}, ${tot}`);
  x.i(`fma.rn.f32 ${tot}, ${tot}, ${LN2}, ${m}`);
  x.i(`selp.f32 ${tot}, ${tot}, ${NEG_INF}, ${valid}`);
  x.at(first, `st.global.f32 [${x.addr(L, pr, 4)}], ${tot}`);
  return finish(x, arch, 'kvp_merge', 'merge', params, 'LSE merge of two attention partials');
}
