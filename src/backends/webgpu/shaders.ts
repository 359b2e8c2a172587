/**
 * WGSL compute shaders for the primitives of kvplan_cpu.h, computing in f32. The shaders that read
 * a weight matrix (gemm, embed) come in one variant per weight format (`WeightFormat`): f32, bf16
 * bits two to a u32 word, or f16 (`shader-f16`). Every shader reads its sizes
 * and offsets from a uniform `Params` struct at binding 0 (per-step sizes are never shader
 * constants) and its index lists from storage buffers written each step. Every output is a
 * separate `read_write` binding: no buffer is bound for reading and writing in one dispatch, so
 * the in-place primitives of the CPU backend (rope, merge) are out-of-place here.
 *
 * WGSL has no -inf literal and inf/NaN handling is implementation-defined, so the LSE of a row
 * that sees no key is `NEG` = -3.0e38 (a large finite negative) instead of -Infinity; merge treats
 * any LSE <= -1.0e38 as empty. Readback converts it (see `fromGpuLse`).
 */

import { describeFault, type Fault, type FaultPrimitive } from '../fault.ts';
import { pointwiseSignature } from '../walk.ts';
import { pointwise } from './pointwise.ts';

/** The LSE written for an empty row (the WebGPU stand-in for -Infinity). */
export const NEG_LSE = -3.0e38;
/** An LSE at or below this is an empty partial. */
export const EMPTY_LSE = -1.0e38;

/**
 * Wraps the value a primitive writes to its output: the identity, except for the primitive of an
 * armed fault (test only, see src/backends/fault.ts), whose value it scales.
 */
export type Perturb = (primitive: FaultPrimitive, value: string) => string;

/** One uniform field: a 32-bit unsigned size or a float. */
export type ParamType = 'u32' | 'f32';

/**
 * How a weight matrix is stored on the GPU and read by the shaders, which widen it to f32: `f32`
 * as is; `bf16` as its raw bits, two to a u32 word (element e in the low half of word e/2 when e
 * is even), widened by a shift (bf16 is the top half of an f32), on every adapter; `f16` as WGSL
 * `f16`, which needs the device feature `shader-f16`.
 */
export type WeightFormat = 'f32' | 'bf16' | 'f16';

/** The element type of a storage binding. */
export type StorageType = 'f32' | 'i32' | 'u32' | 'f16';

/** The storage type a weight binding has in each format. */
export const weightStorage: Readonly<Record<WeightFormat, StorageType>> = {
  f32: 'f32',
  bf16: 'u32',
  f16: 'f16',
};

/** The shaders that read a weight matrix, each in one variant per format. */
export type WeightedShader = 'gemm' | 'embed';

/** The name of a weight-reading shader's variant: the f32 one keeps the plain name. */
export const weighted = (shader: WeightedShader, format: WeightFormat): ShaderName =>
  format === 'f32' ? shader : `${shader}_${format}`;

/**
 * `fn weight(e: u32) -> f32`: element e of the weight binding `w`, widened to f32. bf16: the word
 * holding e, shifted (even e) or masked (odd e) into the top half of an f32.
 */
function weightLoader(w: string, format: WeightFormat): string {
  if (format === 'f32') return `fn weight(e: u32) -> f32 { return ${w}[e]; }`;
  if (format === 'f16') return `fn weight(e: u32) -> f32 { return f32(${w}[e]); }`;
  return `fn weight(e: u32) -> f32 {
  let word = ${w}[e >> 1u];
  return bitcast<f32>(select(word & 0xffff0000u, word << 16u, (e & 1u) == 0u));
}`;
}

export interface ShaderDef {
  readonly name: string;
  /** Uniform fields in order (each 4 bytes). */
  readonly params: readonly (readonly [string, ParamType])[];
  /** Storage bindings 1.., in order: name, access and element type. */
  readonly bindings: readonly (readonly [string, 'read' | 'read_write', StorageType])[];
  /** The format of the weight binding the shader reads (gemm, embed); absent: no weight matrix. */
  readonly weights?: WeightFormat;
  /** Work items per workgroup along x and y. */
  readonly workgroup: readonly [number, number];
  /** The body after the declarations; every write of a primitive's result goes through `out`. */
  readonly body: (out: Perturb) => string;
}

/** Index of the current item in a 1-D launch folded into x and y (x at most 65535 workgroups). */
const linear = (wg: number) => `let idx = gid.x + gid.y * nwg.x * ${wg}u;`;
const builtins1d = '@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u';

/** C[i][j] = (acc ? C : 0) + sum_k A[r(i)][k] W[j][k] + bias[j]; 16x16 tiles in workgroup memory. */
const gemm = (format: WeightFormat): ShaderDef => ({
  name: weighted('gemm', format),
  weights: format,
  params: [
    ['m', 'u32'],
    ['n', 'u32'],
    ['k', 'u32'],
    ['flags', 'u32'], // 1: indirect rows, 2: bias, 4: accumulate
  ],
  bindings: [
    ['a', 'read', 'f32'],
    ['arows', 'read', 'i32'],
    ['w', 'read', weightStorage[format]],
    ['bias', 'read', 'f32'],
    ['c', 'read_write', 'f32'],
  ],
  workgroup: [16, 16],
  body: (out) => `var<workgroup> ta: array<array<f32, 17>, 16>;
var<workgroup> tw: array<array<f32, 17>, 16>;

${weightLoader('w', format)}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.y * 16u + lid.y;
  let col = wg.x * 16u + lid.x;
  let wrow = wg.x * 16u + lid.y;
  var src = row;
  if (row < p.m && (p.flags & 1u) != 0u) { src = u32(arows[row]); }
  var acc = 0.0;
  for (var t = 0u; t < p.k; t += 16u) {
    let kk = t + lid.x;
    var av = 0.0;
    if (row < p.m && kk < p.k) { av = a[src * p.k + kk]; }
    ta[lid.y][lid.x] = av;
    var wv = 0.0;
    if (wrow < p.n && kk < p.k) { wv = weight(wrow * p.k + kk); }
    tw[lid.y][lid.x] = wv;
    workgroupBarrier();
    let len = min(16u, p.k - t);
    for (var j = 0u; j < len; j++) { acc += ta[lid.y][j] * tw[lid.x][j]; }
    workgroupBarrier();
  }
  if (row < p.m && col < p.n) {
    var v = acc;
    if ((p.flags & 2u) != 0u) { v += bias[col]; }
    if ((p.flags & 4u) != 0u) { v += c[row * p.n + col]; }
    c[row * p.n + col] = ${out('gemm', 'v')};
  }
}`,
});

/** out[i] = table[ids[i]], rows of d floats. */
const embed = (format: WeightFormat): ShaderDef => ({
  name: weighted('embed', format),
  weights: format,
  params: [
    ['n', 'u32'],
    ['d', 'u32'],
  ],
  bindings: [
    ['table', 'read', weightStorage[format]],
    ['ids', 'read', 'i32'],
    ['out', 'read_write', 'f32'],
  ],
  workgroup: [64, 1],
  body: () => `${weightLoader('table', format)}

@compute @workgroup_size(64)
fn main(${builtins1d}) {
  ${linear(64)}
  if (idx >= p.n * p.d) { return; }
  let i = idx / p.d;
  out[idx] = weight(u32(ids[i]) * p.d + idx % p.d);
}`,
});

/** Threads of a `softmax_stats` workgroup: one workgroup per row. */
export const STATS_WG = 256;

/**
 * The softmax statistics of rows of logits (src/model/golden.ts softmaxStats), one workgroup per
 * row, the logit `exclude` left out: confidence, margin and entropy of row r at stats[3r..3r+2],
 * its most likely token as a float (exact below 2^24) at stats[3 rows + r]; the token -1 where the
 * row holds a logit that is not finite or none but the excluded one (src/backends/deviceStats.ts).
 * Each thread keeps the two largest logits of its strided share (the first index of equals), a
 * tree joins them, then each thread sums exp(l - max) and exp(l - max) (l - max) of its share and a
 * second tree adds those. Finiteness is read from the bits: WGSL lets a compiler assume there is
 * no NaN or infinity, so a comparison cannot be trusted to find one.
 */
const softmaxStats: ShaderDef = {
  name: 'softmax_stats',
  params: [
    ['rows', 'u32'],
    ['v', 'u32'],
    ['exclude', 'u32'], // a token index, or at least v for none
  ],
  bindings: [
    ['logits', 'read', 'f32'],
    ['stats', 'read_write', 'f32'],
  ],
  workgroup: [STATS_WG, 1],
  body: () => `const WG = ${STATS_WG}u;
const NONE = 0xffffffffu;
var<workgroup> top1: array<f32, WG>;
var<workgroup> top2: array<f32, WG>;
var<workgroup> at: array<u32, WG>;
var<workgroup> bad: array<u32, WG>;
var<workgroup> sums: array<f32, WG>;
var<workgroup> weighted: array<f32, WG>;

fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }

// The largest and second largest of two threads' (the largest at the lower index of equals; a
// thread that saw no logit holds NONE).
fn joinTop(t: u32, o: u32) {
  if (at[o] == NONE) { return; }
  if (at[t] == NONE) { top1[t] = top1[o]; top2[t] = top2[o]; at[t] = at[o]; return; }
  let first = top1[o] > top1[t] || (top1[o] == top1[t] && at[o] < at[t]);
  let low = select(top1[o], top1[t], first);
  top2[t] = max(low, max(top2[t], top2[o]));
  if (first) { top1[t] = top1[o]; at[t] = at[o]; }
}

@compute @workgroup_size(${STATS_WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let r = wg.x + wg.y * nwg.x;
  if (r >= p.rows) { return; }
  let t = lid.x;
  let base = r * p.v;
  var m1 = 0.0;
  var m2 = bitcast<f32>(0xff7fffffu); // the lowest finite f32
  var i1 = NONE;
  var b = 0u;
  for (var i = t; i < p.v; i += WG) {
    let x = logits[base + i];
    if (!finite(x)) { b = 1u; }
    if (i == p.exclude) { continue; }
    if (i1 == NONE || x > m1) { m2 = select(m2, m1, i1 != NONE); m1 = x; i1 = i; }
    else if (x > m2) { m2 = x; }
  }
  top1[t] = m1;
  top2[t] = m2;
  at[t] = i1;
  bad[t] = b;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { joinTop(t, t + s); bad[t] |= bad[t + s]; }
    workgroupBarrier();
  }
  let mx = top1[0];
  let second = top2[0];
  let arg = at[0];
  let broken = bad[0] != 0u || arg == NONE;
  workgroupBarrier();
  var sum = 0.0;
  var w = 0.0;
  if (!broken) {
    for (var i = t; i < p.v; i += WG) {
      if (i == p.exclude) { continue; }
      let z = logits[base + i] - mx;
      let e = exp(z);
      sum += e;
      w += e * z;
    }
  }
  sums[t] = sum;
  weighted[t] = w;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { sums[t] += sums[t + s]; weighted[t] += weighted[t + s]; }
    workgroupBarrier();
  }
  if (t != 0u) { return; }
  if (broken) {
    stats[3u * r] = 0.0;
    stats[3u * r + 1u] = 0.0;
    stats[3u * r + 2u] = 0.0;
    stats[3u * p.rows + r] = -1.0;
    return;
  }
  let total = sums[0];
  // 1 - exp(d) for the second largest: by its series near 0, where the difference would cancel.
  let d = second - mx;
  let gap = select(1.0 - exp(d), -d * (1.0 + d * (0.5 + d * (1.0 / 6.0 + d / 24.0))), d > -0.03125);
  stats[3u * r] = 1.0 / total;
  stats[3u * r + 1u] = gap / total;
  stats[3u * r + 2u] = log(total) - weighted[0] / total;
  stats[3u * p.rows + r] = f32(arg);
}`,
};

const formats: readonly WeightFormat[] = ['f32', 'bf16', 'f16'];

export const shaderDefs: readonly ShaderDef[] = [
  ...formats.map(gemm),
  ...formats.map(embed),
  {
    // Flash-style attention of nq rows over the keys kpos of canvas-sized K/V, online softmax.
    // One binding holds both per-row masks (the blocks, then from seq_at the sequence of each row),
    // which keeps the shader within 8 storage buffers.
    name: 'attention',
    params: [
      ['nq', 'u32'],
      ['nk', 'u32'],
      ['heads', 'u32'],
      ['kvh', 'u32'],
      ['hd', 'u32'],
      // 1: block-causal (blocks in mask), 2: sequences (seqs in mask from seq_at), 4: only the
      // heads of KV head flags >> 8 (the others get the partial of an empty key set)
      ['flags', 'u32'],
      ['scale', 'f32'],
      ['seq_at', 'u32'],
    ],
    bindings: [
      ['q', 'read', 'f32'],
      ['kc', 'read', 'f32'],
      ['vc', 'read', 'f32'],
      ['qpos', 'read', 'i32'],
      ['kpos', 'read', 'i32'],
      ['mask', 'read', 'i32'],
      ['o', 'read_write', 'f32'],
      ['lse', 'read_write', 'f32'],
    ],
    workgroup: [64, 1],
    body: (out) => `const MAX_HD = 256u;

@compute @workgroup_size(64)
fn main(${builtins1d}) {
  ${linear(64)}
  if (idx >= p.nq * p.heads || p.hd > MAX_HD) { return; }
  let i = idx / p.heads;
  let h = idx % p.heads;
  let g = h / (p.heads / p.kvh);
  let qo = idx * p.hd;
  let causal = (p.flags & 1u) != 0u;
  let batched = (p.flags & 2u) != 0u;
  if ((p.flags & 4u) != 0u && g != (p.flags >> 8u)) {
    for (var d = 0u; d < p.hd; d++) { o[qo + d] = 0.0; }
    lse[idx] = ${NEG_LSE.toExponential()};
    return;
  }
  var qb = 0;
  if (causal) { qb = mask[u32(qpos[i])]; }
  var qs = 0;
  if (batched) { qs = mask[p.seq_at + u32(qpos[i])]; }
  var acc: array<f32, MAX_HD>;
  for (var d = 0u; d < p.hd; d++) { acc[d] = 0.0; }
  var m = ${NEG_LSE.toExponential()};
  var l = 0.0;
  var seen = false;
  for (var j = 0u; j < p.nk; j++) {
    let kp = u32(kpos[j]);
    if (causal && mask[kp] > qb) { continue; }
    if (batched && mask[p.seq_at + kp] != qs) { continue; }
    seen = true;
    let ko = (kp * p.kvh + g) * p.hd;
    var sc = 0.0;
    for (var d = 0u; d < p.hd; d++) { sc += q[qo + d] * kc[ko + d]; }
    let s = sc * p.scale;
    if (s > m) {
      let corr = exp(m - s);
      l = l * corr + 1.0;
      for (var d = 0u; d < p.hd; d++) { acc[d] = acc[d] * corr + vc[ko + d]; }
      m = s;
    } else {
      let e = exp(s - m);
      l += e;
      for (var d = 0u; d < p.hd; d++) { acc[d] += e * vc[ko + d]; }
    }
  }
  if (!seen) {
    for (var d = 0u; d < p.hd; d++) { o[qo + d] = 0.0; }
    lse[idx] = ${NEG_LSE.toExponential()};
    return;
  }
  for (var d = 0u; d < p.hd; d++) { o[qo + d] = ${out('attention', 'acc[d] / l')}; }
  lse[idx] = m + log(l);
}`,
  },
  {
    // (o, lse) = merge((o1, lse1), (o2, lse2)) by the log-sum-exp rule, rows*heads pairs.
    name: 'merge',
    params: [
      ['pairs', 'u32'],
      ['hd', 'u32'],
    ],
    bindings: [
      ['o1', 'read', 'f32'],
      ['l1', 'read', 'f32'],
      ['o2', 'read', 'f32'],
      ['l2', 'read', 'f32'],
      ['o', 'read_write', 'f32'],
      ['lse', 'read_write', 'f32'],
    ],
    workgroup: [64, 1],
    body: () => `@compute @workgroup_size(64)
fn main(${builtins1d}) {
  ${linear(64)}
  if (idx >= p.pairs) { return; }
  let a1 = l1[idx];
  let a2 = l2[idx];
  let m = max(a1, a2);
  let base = idx * p.hd;
  if (m <= ${EMPTY_LSE.toExponential()}) {
    for (var d = 0u; d < p.hd; d++) { o[base + d] = 0.0; }
    lse[idx] = ${NEG_LSE.toExponential()};
    return;
  }
  let w1 = exp(a1 - m);
  let w2 = exp(a2 - m);
  let total = w1 + w2;
  let x = w1 / total;
  let y = w2 / total;
  for (var d = 0u; d < p.hd; d++) {
    var v = 0.0;
    if (x != 0.0) { v += x * o1[base + d]; }
    if (y != 0.0) { v += y * o2[base + d]; }
    o[base + d] = v;
  }
  lse[idx] = m + log(total);
}`,
  },
  {
    // out[i] = x[r(i)] * w / sqrt(mean(x[r(i)]^2) + eps); one workgroup of 64 per row.
    name: 'rmsnorm',
    params: [
      ['n', 'u32'],
      ['d', 'u32'],
      ['flags', 'u32'], // 1: indirect rows
      ['eps', 'f32'],
    ],
    bindings: [
      ['x', 'read', 'f32'],
      ['rows', 'read', 'i32'],
      ['w', 'read', 'f32'],
      ['out', 'read_write', 'f32'],
    ],
    workgroup: [64, 1],
    body: (out) => `var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = wg.x + wg.y * nwg.x;
  let live = i < p.n;
  var src = i;
  if (live && (p.flags & 1u) != 0u) { src = u32(rows[i]); }
  var ss = 0.0;
  if (live) {
    for (var j = lid.x; j < p.d; j += 64u) { let v = x[src * p.d + j]; ss += v * v; }
  }
  part[lid.x] = ss;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid.x < s) { part[lid.x] += part[lid.x + s]; }
    workgroupBarrier();
  }
  if (!live) { return; }
  let inv = 1.0 / sqrt(part[0] / f32(p.d) + p.eps);
  for (var j = lid.x; j < p.d; j += 64u) { out[i * p.d + j] = ${out('rmsnorm', 'x[src * p.d + j] * w[j] * inv')}; }
}`,
  },
  {
    // Rotate-half rotary embedding; cos/sin come from a host table [position][hd/2][2].
    name: 'rope',
    params: [
      ['n', 'u32'],
      ['heads', 'u32'],
      ['hd', 'u32'],
    ],
    bindings: [
      ['x', 'read', 'f32'],
      ['pos', 'read', 'i32'],
      ['table', 'read', 'f32'],
      ['out', 'read_write', 'f32'],
    ],
    workgroup: [64, 1],
    body: (out) => `@compute @workgroup_size(64)
fn main(${builtins1d}) {
  ${linear(64)}
  let hh = p.hd / 2u;
  if (idx >= p.n * p.heads * hh) { return; }
  let i = idx % hh;
  let rh = idx / hh;
  let r = rh / p.heads;
  let base = rh * p.hd;
  let t = (u32(pos[r]) * hh + i) * 2u;
  let c = table[t];
  let s = table[t + 1u];
  let lo = x[base + i];
  let hi = x[base + i + hh];
  out[base + i] = ${out('rope', 'lo * c - hi * s')};
  out[base + i + hh] = ${out('rope', 'hi * c + lo * s')};
}`,
  },
  {
    // out = silu(a) * b, n elements.
    name: 'swiglu',
    params: [['n', 'u32']],
    bindings: [
      ['a', 'read', 'f32'],
      ['b', 'read', 'f32'],
      ['out', 'read_write', 'f32'],
    ],
    workgroup: [64, 1],
    body: (out) => `@compute @workgroup_size(64)
fn main(${builtins1d}) {
  ${linear(64)}
  if (idx >= p.n) { return; }
  let x = a[idx];
  out[idx] = ${out('swiglu', 'x / (1.0 + exp(-x)) * b[idx]')};
}`,
  },
  softmaxStats,
  {
    // dst[dr(i)] = src[sr(i)], n rows of width floats.
    name: 'copy_rows',
    params: [
      ['n', 'u32'],
      ['width', 'u32'],
      ['flags', 'u32'], // 1: source rows, 2: destination rows
    ],
    bindings: [
      ['src', 'read', 'f32'],
      ['srows', 'read', 'i32'],
      ['dst', 'read_write', 'f32'],
      ['drows', 'read', 'i32'],
    ],
    workgroup: [64, 1],
    body: () => `@compute @workgroup_size(64)
fn main(${builtins1d}) {
  ${linear(64)}
  if (idx >= p.n * p.width) { return; }
  let i = idx / p.width;
  let c = idx % p.width;
  var s = i;
  var d = i;
  if ((p.flags & 1u) != 0u) { s = u32(srows[i]); }
  if ((p.flags & 2u) != 0u) { d = u32(drows[i]); }
  dst[d * p.width + c] = src[s * p.width + c];
}`,
  },
];

export type ShaderName =
  | WeightedShader
  | `${WeightedShader}_${Exclude<WeightFormat, 'f32'>}`
  | 'attention'
  | 'merge'
  | 'rmsnorm'
  | 'rope'
  | 'swiglu'
  | 'copy_rows'
  | 'softmax_stats'
  | `pointwise_${string}`;

const operand = (i: number) => `x${i}`;

/** The shader of a pointwise op of ./pointwise.ts: out = f(x0, x1, …) elementwise over n items. */
function pointwiseShader(op: string): ShaderDef {
  const spell = pointwise[op];
  if (!spell) throw new Error(`no shader pointwise_${op}: the WebGPU backend has no pointwise op '${op}'`);
  const { arity, attrs } = pointwiseSignature(op);
  const xs = Array.from({ length: arity }, (_, i) => operand(i));
  const expr = spell(
    xs.map((x) => `${x}[idx]`),
    Object.fromEntries(attrs.map((a) => [a, `p.${a}`])),
  );
  return {
    name: `pointwise_${op}`,
    params: [['n', 'u32'], ...attrs.map((a) => [a, 'f32'] as const)],
    bindings: [...xs.map((x) => [x, 'read', 'f32'] as const), ['out', 'read_write', 'f32']],
    workgroup: [64, 1],
    body: () => `@compute @workgroup_size(64)
fn main(${builtins1d}) {
  ${linear(64)}
  if (idx >= p.n) { return; }
  out[idx] = ${expr};
}`,
  };
}

export function shaderDef(name: ShaderName): ShaderDef {
  if (name.startsWith('pointwise_')) return pointwiseShader(name.slice('pointwise_'.length));
  const d = shaderDefs.find((s) => s.name === name);
  if (!d) throw new Error(`no shader ${name}`);
  return d;
}

/**
 * The complete WGSL module of a shader: header, uniform struct, bindings and body. With a fault
 * (test only), the outputs of the faulty primitive are scaled and the header says so; without one
 * the text is exactly the normal shader.
 */
export function wgslSource(def: ShaderDef, fault?: Fault): string {
  let injected = false;
  const body = def.body((primitive, value) => {
    if (fault?.primitive !== primitive) return value;
    injected = true;
    return `(${value}) * ${fault.factor.toExponential()}`;
  });
  const fields = def.params.map(([n, t]) => `  ${n}: ${t},`).join('\n');
  const binds = def.bindings
    .map(([n, access, t], i) => `@group(0) @binding(${i + 1}) var<storage, ${access}> ${n}: array<${t}>;`)
    .join('\n');
  const weights = def.weights && def.weights !== 'f32' ? `, ${def.weights} weights` : '';
  return [
    `// kvplan WebGPU primitive '${def.name}' (generated; f32${weights}).`,
    ...(injected && fault ? [`// FAULT INJECTED (test only): ${describeFault(fault)}.`] : []),
    ...(def.weights === 'f16' ? ['enable f16;'] : []),
    `struct Params {\n${fields}\n}`,
    '@group(0) @binding(0) var<uniform> p: Params;',
    binds,
    '',
    body,
    '',
  ].join('\n');
}

/** Bytes of a shader's uniform buffer (fields rounded up to 16 bytes). */
export const uniformBytes = (def: ShaderDef): number =>
  Math.max(16, Math.ceil((def.params.length * 4) / 16) * 16);

/** Converts LSEs read back from the GPU: the finite stand-in becomes -Infinity again. */
export function fromGpuLse(x: number): number {
  return x <= EMPTY_LSE ? Number.NEGATIVE_INFINITY : x;
}
