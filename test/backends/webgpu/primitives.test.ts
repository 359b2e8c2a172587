/**
 * The WGSL primitives, one dispatch each, against the float64 reference kernels (src/ir/attention.ts)
 * and plain loops. Budgets are derived as for the C primitives: next to each GPU result a float32
 * eager evaluation (Math.fround after every operation) is compared with the same float64 reference,
 * and the GPU error must stay within 4x the eager error plus 4 units of 2^-24 of the values' scale.
 * Empty rows come back with LSE -3.0e38 (WGSL has no -inf) and are converted with fromGpuLse.
 */
import { describe, expect, test } from 'vitest';
import { pipelineFor, uniformData, workgroups } from '../../../src/backends/webgpu/runner.ts';
import {
  fromGpuLse,
  NEG_LSE,
  type ShaderName,
  type WeightFormat,
  weighted,
} from '../../../src/backends/webgpu/shaders.ts';
import { attentionPartial, mergePartials } from '../../../src/ir/attention.ts';
import { rope as rope64 } from '../../../src/ir/interpret.ts';
import { type AttentionCase as Case, makeAttentionCase } from '../../support/attentionCase.ts';
import { expectClose, f32, scaleOf } from '../../support/float32.ts';
import { randFloats, randIndices, rng } from '../../support/random.ts';
import { gpuOrSkip, readsFormat, runKernel, weightIn } from './support.ts';

function gather64(src: Float32Array, idx: Int32Array, width: number): Float64Array {
  const out = new Float64Array(idx.length * width);
  for (let i = 0; i < idx.length; i++)
    for (let d = 0; d < width; d++) out[i * width + d] = src[(idx[i] as number) * width + d] as number;
  return out;
}
const NONE_I = new Int32Array(4);
const NONE_F = new Float32Array(4);

// Acquired while collecting, so that a missing adapter skips visibly (with its reason) instead of passing.
const device = await gpuOrSkip('WebGPU primitives');
const gpu = () => device as GPUDevice;
const gpuTest = (name: string, fn: () => Promise<void>) => test.skipIf(!device)(name, fn);
const formats: readonly WeightFormat[] = ['f32', 'bf16', 'f16'];
if (device && !readsFormat(device, 'f16'))
  console.log('WebGPU primitives with f16 weights: skipped: the adapter has no shader-f16');
/** A test of a weight-reading shader in one format, run where the device can read that format. */
const formatTest = (format: WeightFormat, name: string, fn: () => Promise<void>) =>
  test.skipIf(!readsFormat(device, format))(`${name}, ${format} weights`, fn);

const deviations: Record<string, number> = {};

describe('WGSL primitives against float64 references', () => {
  for (const format of formats)
    formatTest(format, 'gemm: tiles, ragged edges, indirect rows, bias, accumulate', async () => {
      const shader = weighted('gemm', format);
      const shapes = [
        [1, 1, 1],
        [5, 3, 7],
        [17, 16, 20],
        [33, 40, 64],
        [20, 70, 33],
      ] as const;
      let seed = 1;
      for (const [m, n, k] of shapes)
        for (const flags of [0, 1, 2, 3, 4, 7]) {
          const r = rng(seed++);
          const rowsA = flags & 1 ? m + 5 : m;
          const a = randFloats(r, rowsA * k);
          const arows = flags & 1 ? randIndices(r, m, rowsA) : NONE_I;
          const { operand: wIn, values: w } = weightIn(randFloats(r, n * k), format);
          const bias = flags & 2 ? randFloats(r, n) : NONE_F;
          const c0 = randFloats(r, m * n);
          const c =
            flags & 4
              ? await runWithInitialOutput(shader, [m, n, k, flags], [a, arows, wIn, bias], c0, 4, [n, m])
              : (
                  await runKernel(
                    gpu(),
                    shader,
                    [m, n, k, flags],
                    [a, arows, wIn, bias, { out: m * n }],
                    [n, m],
                  )
                )[0];
          const ref = new Float64Array(m * n);
          const eager = new Float64Array(m * n);
          for (let i = 0; i < m; i++)
            for (let j = 0; j < n; j++) {
              const src = flags & 1 ? (arows[i] as number) : i;
              let s = 0;
              let s32 = 0;
              for (let t = 0; t < k; t++) {
                const x = (a[src * k + t] as number) * (w[j * k + t] as number);
                s += x;
                s32 = f32(s32 + f32(x));
              }
              if (flags & 2) {
                s += bias[j] as number;
                s32 = f32(s32 + (bias[j] as number));
              }
              if (flags & 4) {
                s += c0[i * n + j] as number;
                s32 = f32(s32 + (c0[i * n + j] as number));
              }
              ref[i * n + j] = s;
              eager[i * n + j] = s32;
            }
          deviations[shader] = Math.max(
            deviations[shader] ?? 0,
            expectClose(`${shader} ${m}x${n}x${k} flags ${flags}`, c as Float32Array, ref, eager),
          );
        }
    });

  describe('attention', () => {
    /** Smaller than the CPU tests' cases (Dawn on llvmpipe is slow): up to 30 rows, 60 keys. */
    function makeCase(seed: number, s: Partial<Case> & { amp?: number } = {}): Case {
      const r = rng(seed);
      const kvh = s.kvh ?? ([1, 2, 4][Math.floor(r() * 3)] as number);
      const heads = s.heads ?? kvh * (1 + Math.floor(r() * 3));
      const hd = s.hd ?? ([1, 8, 16, 20, 32][Math.floor(r() * 5)] as number);
      const nq = s.nq ?? 1 + Math.floor(r() * 30);
      const nk = s.nk ?? Math.floor(r() * 60);
      const L = s.L ?? Math.max(nq, nk, 1) + Math.floor(r() * 10);
      return makeAttentionCase(seed, { ...s, kvh, heads, hd, nq, nk, L });
    }
    function eager32(t: Case): { o: Float64Array; lse: Float64Array } {
      const { nq, nk, heads, kvh, hd, scale, q, kc, vc, qpos, kpos, blocks } = t;
      const o = new Float64Array(nq * heads * hd);
      const lse = new Float64Array(nq * heads);
      const s = new Float64Array(nk);
      for (let i = 0; i < nq; i++)
        for (let h = 0; h < heads; h++) {
          const g = Math.floor(h / (heads / kvh));
          const qo = (i * heads + h) * hd;
          let m = Number.NEGATIVE_INFINITY;
          for (let j = 0; j < nk; j++) {
            const kp = kpos[j] as number;
            if (blocks && (blocks[kp] as number) > (blocks[qpos[i] as number] as number)) {
              s[j] = Number.NEGATIVE_INFINITY;
              continue;
            }
            let dot = 0;
            for (let d = 0; d < hd; d++)
              dot = f32(dot + f32((q[qo + d] as number) * (kc[(kp * kvh + g) * hd + d] as number)));
            s[j] = f32(dot * f32(scale));
            if ((s[j] as number) > m) m = s[j] as number;
          }
          if (m === Number.NEGATIVE_INFINITY) {
            lse[i * heads + h] = m;
            continue;
          }
          let sum = 0;
          const acc = new Float64Array(hd);
          for (let j = 0; j < nk; j++) {
            if (s[j] === Number.NEGATIVE_INFINITY) continue;
            const e = f32(Math.exp(f32((s[j] as number) - m)));
            sum = f32(sum + e);
            const vo = ((kpos[j] as number) * kvh + (g as number)) * hd;
            for (let d = 0; d < hd; d++) acc[d] = f32((acc[d] as number) + f32(e * (vc[vo + d] as number)));
          }
          for (let d = 0; d < hd; d++) o[qo + d] = f32((acc[d] as number) / sum);
          lse[i * heads + h] = f32(m + f32(Math.log(sum)));
        }
      return { o, lse };
    }
    async function check(label: string, t: Case) {
      const { nq, nk, heads, kvh, hd, scale, q, kc, vc, qpos, kpos, blocks } = t;
      const [o, lseRaw] = await runKernel(
        gpu(),
        'attention',
        [nq, nk, heads, kvh, hd, blocks ? 1 : 0, { f: scale }],
        [
          q,
          kc,
          vc,
          qpos,
          nk ? kpos : NONE_I,
          blocks ?? NONE_I,
          { out: nq * heads * hd },
          { out: nq * heads },
        ],
        [nq * heads, 1],
      );
      const lse = Float64Array.from(lseRaw as Float32Array, fromGpuLse);
      const ref = attentionPartial(
        Float64Array.from(q),
        gather64(kc, kpos, kvh * hd),
        gather64(vc, kpos, kvh * hd),
        qpos,
        kpos,
        {
          scale: f32(scale),
          mask: blocks ? 'block_causal' : 'none',
          blocks: blocks ?? undefined,
          heads,
          kvHeads: kvh,
          headDim: hd,
        },
      );
      const e = eager32(t);
      deviations.attention = Math.max(
        deviations.attention ?? 0,
        expectClose(`${label}: o`, o as Float32Array, ref.o, e.o),
      );
      expectClose(`${label}: lse`, lse, ref.lse, e.lse, Math.max(scaleOf(ref.lse), 1));
      return { o: o as Float32Array, lse, raw: lseRaw as Float32Array };
    }

    gpuTest('random shapes with GQA, with and without block-causal masks', async () => {
      for (let seed = 1; seed <= 16; seed++) {
        const t = makeCase(seed);
        await check(
          `seed ${seed} nq=${t.nq} nk=${t.nk} h=${t.heads}/${t.kvh} hd=${t.hd} mask=${t.blocks !== null}`,
          t,
        );
      }
    });

    gpuTest('long key lists and large scores (online rescaling)', async () => {
      await check('nk=400 hd=64', makeCase(101, { nq: 20, nk: 400, heads: 4, kvh: 2, hd: 64 }));
      await check(
        'large scores',
        makeCase(103, { nq: 10, nk: 200, heads: 2, kvh: 2, hd: 16, amp: 6, scale: 1 }),
      );
    });

    gpuTest('an empty key list: o = 0 and lse = -3.0e38 (read back as -Infinity)', async () => {
      const { o, raw } = await check('nk=0', makeCase(200, { nq: 5, nk: 0, heads: 4, kvh: 2, hd: 16 }));
      expect(o.every((x) => x === 0)).toBe(true);
      expect(raw.every((x) => x === f32(NEG_LSE))).toBe(true);
    });

    gpuTest('a single key: o = v, lse = score', async () => {
      const t = makeCase(201, { nq: 6, nk: 1, heads: 2, kvh: 1, hd: 24, blocks: null });
      const { o } = await check('nk=1', t);
      const vo = (t.kpos[0] as number) * t.kvh * t.hd;
      for (let i = 0; i < t.nq * t.heads; i++)
        for (let d = 0; d < t.hd; d++) expect(o[i * t.hd + d]).toBeCloseTo(t.vc[vo + d] as number, 6);
    });

    gpuTest('fully masked rows (block-causal) give o = 0 and an empty LSE', async () => {
      const L = 16;
      const blocks = Int32Array.from({ length: L }, (_, i) => (i < 4 ? -1 : Math.floor(i / 4)));
      // Query rows in block 1 see no key of blocks 2 and 3.
      const t = makeCase(202, {
        nq: 3,
        nk: 6,
        heads: 2,
        kvh: 1,
        hd: 8,
        L,
        blocks,
        qpos: Int32Array.from([4, 5, 13]),
        kpos: Int32Array.from([8, 9, 10, 12, 14, 15]),
      });
      const { o, lse } = await check('masked rows', t);
      for (let i = 0; i < 2 * 2 * 8; i++) expect(o[i]).toBe(0);
      expect(lse[0]).toBe(Number.NEGATIVE_INFINITY);
      expect(Number.isFinite(lse[4] as number)).toBe(true);
    });
  });

  gpuTest('merge: the log-sum-exp rule, empty partials on either side', async () => {
    const r = rng(9);
    const pairs = 40;
    const hd = 12;
    const o1 = randFloats(r, pairs * hd);
    const o2 = randFloats(r, pairs * hd);
    const l1 = Float64Array.from({ length: pairs }, (_, i) =>
      i % 5 === 0 ? Number.NEGATIVE_INFINITY : f32(r() * 8 - 4),
    );
    const l2 = Float64Array.from({ length: pairs }, (_, i) =>
      i % 7 === 0 ? Number.NEGATIVE_INFINITY : f32(r() * 8 - 4),
    );
    const toGpu = (l: Float64Array) =>
      Float32Array.from(l, (x) => (x === Number.NEGATIVE_INFINITY ? NEG_LSE : x));
    const [o, lse] = await runKernel(
      gpu(),
      'merge',
      [pairs, hd],
      [o1, toGpu(l1), o2, toGpu(l2), { out: pairs * hd }, { out: pairs }],
      [pairs, 1],
    );
    const ref = mergePartials(Float64Array.from(o1), l1, Float64Array.from(o2), l2, hd);
    const eager = new Float64Array(pairs * hd);
    const eagerL = new Float64Array(pairs);
    for (let p = 0; p < pairs; p++) {
      const m = Math.max(l1[p] as number, l2[p] as number);
      if (m === Number.NEGATIVE_INFINITY) {
        eagerL[p] = m;
        continue;
      }
      const w1 = f32(Math.exp(f32((l1[p] as number) - m)));
      const w2 = f32(Math.exp(f32((l2[p] as number) - m)));
      const tot = f32(w1 + w2);
      const a = f32(w1 / tot);
      const b = f32(w2 / tot);
      for (let d = 0; d < hd; d++)
        eager[p * hd + d] = f32(
          (a ? f32(a * (o1[p * hd + d] as number)) : 0) + (b ? f32(b * (o2[p * hd + d] as number)) : 0),
        );
      eagerL[p] = f32(m + f32(Math.log(tot)));
    }
    deviations.merge = expectClose('merge o', o as Float32Array, ref.o, eager);
    expectClose('merge lse', Float64Array.from(lse as Float32Array, fromGpuLse), ref.lse, eagerL, 4);
    // Both empty (pair 0 and 35): o = 0, LSE empty.
    for (const p of [0, 35])
      expect(fromGpuLse((lse as Float32Array)[p] as number)).toBe(Number.NEGATIVE_INFINITY);
  });

  gpuTest('rmsnorm with and without indirect rows', async () => {
    for (const [n, d, indirect] of [
      [1, 8, false],
      [9, 100, true],
      [70, 64, false],
    ] as const) {
      const r = rng(n * d);
      const src = indirect ? n + 3 : n;
      const x = randFloats(r, src * d, 3);
      const rows = indirect ? randIndices(r, n, src) : NONE_I;
      const w = randFloats(r, d);
      const eps = 1e-6;
      const [out] = await runKernel(
        gpu(),
        'rmsnorm',
        [n, d, indirect ? 1 : 0, { f: eps }],
        [x, rows, w, { out: n * d }],
        [64 * n, 1],
      );
      const ref = new Float64Array(n * d);
      const eager = new Float64Array(n * d);
      for (let i = 0; i < n; i++) {
        const s = indirect ? (rows[i] as number) : i;
        let ss = 0;
        let ss32 = 0;
        for (let j = 0; j < d; j++) {
          const v = x[s * d + j] as number;
          ss += v * v;
          ss32 = f32(ss32 + f32(v * v));
        }
        const inv = 1 / Math.sqrt(ss / d + eps);
        const inv32 = f32(1 / f32(Math.sqrt(f32(f32(ss32 / d) + f32(eps)))));
        for (let j = 0; j < d; j++) {
          const v = x[s * d + j] as number;
          ref[i * d + j] = v * (w[j] as number) * inv;
          eager[i * d + j] = f32(f32(v * (w[j] as number)) * inv32);
        }
      }
      deviations.rmsnorm = Math.max(
        deviations.rmsnorm ?? 0,
        expectClose(`rmsnorm n=${n} d=${d}`, out as Float32Array, ref, eager),
      );
    }
  });

  gpuTest('rope from the host cos/sin table', async () => {
    const n = 7;
    const heads = 3;
    const hd = 16;
    const theta = 10000;
    const maxPos = 40;
    const r = rng(5);
    const x = randFloats(r, n * heads * hd);
    const pos = randIndices(r, n, maxPos);
    const half = hd / 2;
    const table = new Float32Array(maxPos * hd);
    for (let p = 0; p < maxPos; p++)
      for (let i = 0; i < half; i++) {
        const a = p * theta ** ((-2 * i) / hd);
        table[(p * half + i) * 2] = Math.cos(a);
        table[(p * half + i) * 2 + 1] = Math.sin(a);
      }
    const [out] = await runKernel(
      gpu(),
      'rope',
      [n, heads, hd],
      [x, pos, table, { out: x.length }],
      [n * heads * half, 1],
    );
    const ref = rope64(Float64Array.from(x), pos, heads, hd, theta);
    const eager = new Float64Array(x.length);
    for (let q = 0; q < n; q++)
      for (let i = 0; i < half; i++) {
        const c = table[((pos[q] as number) * half + i) * 2] as number;
        const s = table[((pos[q] as number) * half + i) * 2 + 1] as number;
        for (let h = 0; h < heads; h++) {
          const base = (q * heads + h) * hd;
          const lo = x[base + i] as number;
          const hi = x[base + i + half] as number;
          eager[base + i] = f32(f32(lo * c) - f32(hi * s));
          eager[base + i + half] = f32(f32(hi * c) + f32(lo * s));
        }
      }
    deviations.rope = expectClose('rope', out as Float32Array, ref, eager, Math.max(scaleOf(ref), 1));
  });

  gpuTest('add and swiglu', async () => {
    const n = 300;
    const r = rng(11);
    const a = randFloats(r, n, 4);
    const b = randFloats(r, n, 2);
    const [sum] = await runKernel(gpu(), 'pointwise_add', [n], [a, b, { out: n }], [n, 1]);
    const [sw] = await runKernel(gpu(), 'swiglu', [n], [a, b, { out: n }], [n, 1]);
    const refAdd = Float64Array.from(a, (x, i) => x + (b[i] as number));
    expectClose('add', sum as Float32Array, refAdd, Float64Array.from(refAdd, f32));
    const refSw = Float64Array.from(a, (g, i) => (g / (1 + Math.exp(-g))) * (b[i] as number));
    const eager = Float64Array.from(a, (g, i) => f32(f32(g / f32(1 + f32(Math.exp(-g)))) * (b[i] as number)));
    deviations.swiglu = expectClose('swiglu', sw as Float32Array, refSw, eager);
  });

  for (const format of formats)
    formatTest(format, 'embed is exact', async () => {
      const r = rng(13);
      // Rows of an odd width: half of them start in the middle of a 32-bit word of 16-bit weights.
      const { operand, values } = weightIn(randFloats(r, 21 * 7), format);
      const ids = randIndices(r, 9, 21);
      const [e] = await runKernel(
        gpu(),
        weighted('embed', format),
        [9, 7],
        [operand, ids, { out: 63 }],
        [63, 1],
      );
      expect(Array.from(e as Float32Array)).toEqual(Array.from(gather64(values, ids, 7)));
    });

  gpuTest('copy_rows (every combination of row lists) is exact', async () => {
    const r = rng(14);
    const src = randFloats(r, 10 * 5);
    const srows = Int32Array.from([9, 0, 4]);
    const drows = Int32Array.from([2, 7, 3]);
    for (const flags of [0, 1, 2, 3]) {
      const dst = new Float32Array(10 * 5).fill(-1);
      const out = await copyRowsInto(
        src,
        flags & 1 ? srows : undefined,
        dst,
        flags & 2 ? drows : undefined,
        3,
        5,
      );
      for (let i = 0; i < 3; i++) {
        const s = flags & 1 ? (srows[i] as number) : i;
        const d = flags & 2 ? (drows[i] as number) : i;
        dst.set(src.subarray(s * 5, s * 5 + 5), d * 5);
      }
      expect(Array.from(out)).toEqual(Array.from(dst));
    }
  });

  test('report the measured deviations', () => {
    if (device) console.log(`WebGPU primitives, max |gpu - float64|: ${JSON.stringify(deviations)}`);
  });
});

async function copyRowsInto(
  src: Float32Array,
  srows: Int32Array | undefined,
  dst: Float32Array,
  drows: Int32Array | undefined,
  n: number,
  width: number,
) {
  const flags = (srows ? 1 : 0) | (drows ? 2 : 0);
  return runWithInitialOutput(
    'copy_rows',
    [n, width, flags],
    [src, srows ?? NONE_I, drows ?? NONE_I],
    dst,
    2,
    [n * width, 1],
  );
}

/** Runs a shader whose read_write binding `at` (0-based among buffers) starts with `init`, and reads it back. */
async function runWithInitialOutput(
  shader: ShaderName,
  params: number[],
  inputs: (Float32Array | Int32Array | Uint16Array)[],
  init: Float32Array,
  at: number,
  items: [number, number],
): Promise<Float32Array> {
  const d = device as GPUDevice;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const ops = [...inputs];
  ops.splice(at, 0, init);
  const bufs = ops.map((o) => {
    const b = d.createBuffer({ size: Math.max(16, o.byteLength), usage });
    d.queue.writeBuffer(b, 0, o);
    return b;
  });
  const u = uniformData(
    shader,
    params.map((p) => ({ u: [p] as const })),
    () => 0,
  );
  const ub = d.createBuffer({ size: u.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  d.queue.writeBuffer(ub, 0, u);
  const p = pipelineFor(d, shader);
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(
    0,
    d.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: ub } },
        ...bufs.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
      ],
    }),
  );
  pass.dispatchWorkgroups(...workgroups(shader, items[0], items[1]));
  pass.end();
  const staging = d.createBuffer({
    size: init.byteLength,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  enc.copyBufferToBuffer(bufs[at] as GPUBuffer, 0, staging, 0, init.byteLength);
  d.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  for (const b of [...bufs, ub, staging]) b.destroy();
  return out;
}
