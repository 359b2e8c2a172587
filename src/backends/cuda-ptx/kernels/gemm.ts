/**
 * Tiled GEMM, C[m][n] = sum_k A[r(m)][k] * W[k][n] + bias[n], r(m) = arows ? arows[m] : m.
 *
 * W is the weight in the `k-major` layout the layout pass picks for PTX: [K][N], row stride N
 * (the transpose of the model's [out][in]), so that a tile of W is a coalesced, 16-byte aligned
 * block of rows. M, N, K are runtime parameters; the kernels require N, K, lda and ldc to be
 * multiples of 4 (16-byte vectors) and every pointer 16-byte aligned (cuMemAlloc gives 256).
 *
 * Two paths:
 * - `fma`: f32 throughout. 64x64 CTA tile, BK = 16, 128 threads, each thread an 8x4 micro-tile
 *   held in 32 registers; A is loaded with 16-byte loads and stored transposed to shared memory,
 *   W tiles are copied global→shared by `cp.async.cg` (16 bytes, zero-filled out of range);
 *   shared tiles are double-buffered, one barrier per k-step.
 * - `mma-f16` / `mma-bf16`: tensor cores, `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}` with
 *   f32 accumulation. 64x64 CTA tile, BK = 32, 4 warps in 2x2, each warp 32x32 (2x4 mma tiles,
 *   32 accumulator registers). Inputs are converted from f32 while being stored to shared memory
 *   (A row-major [m][k], W transposed to [n][k] so that both fragments are 32-bit loads), with
 *   rows padded to 40 halves (conflict-free fragment loads). The next tile is prefetched into
 *   registers while the current one is multiplied.
 * - `gemm16` (`kvp_gemm16_f16`, `kvp_gemm16_bf16`): the tensor-core path for a weight stored in 16
 *   bits (a checkpoint's bf16 / f16): W is read as those bits (8-byte loads of 4 halves, half the
 *   traffic of f32) and stored to shared memory unchanged; A is converted as above; the mma dtype
 *   is the weight's.
 */
import { type Arch, type GeneratedKernel, type KernelParam, Ptx } from './ptx.ts';

export type GemmPath = 'fma' | 'mma-f16' | 'mma-bf16';
/** The 16-bit formats of the tensor-core paths, which are also the stored dtypes of 16-bit weights. */
export type MmaDtype = 'f16' | 'bf16';
export const MMA_DTYPES: readonly MmaDtype[] = ['f16', 'bf16'];
export const GEMM_PATHS: readonly GemmPath[] = ['fma', 'mma-f16', 'mma-bf16'];
/** The dtype a path rounds GEMM inputs to; none for `fma`. */
export const pathDtype = (path: GemmPath): MmaDtype | undefined =>
  path === 'fma' ? undefined : path === 'mma-f16' ? 'f16' : 'bf16';

export const GEMM_TILE = { bm: 64, bn: 64, threads: 128 } as const;

/**
 * Split-K. At the row counts of cached steps (one 64-row tile) a grid of ceil(N/64) CTAs leaves
 * most of a GPU idle, each CTA waiting on one tile's loads per k-step: on an H200 a 2048 x 6144
 * bf16 weight (25 MB) took 100 us, 250 GB/s (docs/perf.md). Splitting K over grid.z multiplies the
 * loads in flight; each split writes its partial to a scratch buffer and `kvp_splitk_reduce` sums
 * them in split order (deterministic) and adds the bias. `ctas`: about 4 per multiprocessor of a
 * 132-SM H100/H200 at one row tile; `minK`: at least 8 k-steps a split; `scratchBytes`: the most
 * scratch one GEMM may take (partials of its largest M).
 */
export interface GemmSplitPolicy {
  readonly ctas: number;
  readonly minK: number;
  readonly scratchBytes: number;
}
export const GEMM_SPLIT: GemmSplitPolicy = { ctas: 528, minK: 256, scratchBytes: 256 * 2 ** 20 };

export interface GemmSplit {
  readonly splits: number;
  /** The k-range of a split, a multiple of every path's k-step (32). */
  readonly kchunk: number;
}

/** How a GEMM of N columns and depth K, of at most maxRows rows, splits K. */
export function gemmSplit(n: number, k: number, maxRows: number, policy = GEMM_SPLIT): GemmSplit {
  const tiles = Math.ceil(n / GEMM_TILE.bn);
  const want = Math.min(
    Math.floor(policy.ctas / tiles),
    Math.floor(k / policy.minK),
    Math.floor(policy.scratchBytes / (Math.max(maxRows, 1) * n * 4)),
  );
  if (want < 2) return { splits: 1, kchunk: k };
  const kchunk = Math.ceil(k / want / 32) * 32;
  return { splits: Math.ceil(k / kchunk), kchunk };
}

/**
 * The split-K scratch a program of these GEMMs ([N, K] each) allocates at a canvas of maxRows
 * rows: one slot, sized for the largest split GEMM's partials (the renderer's `scratch`).
 */
export function splitScratchBytes(
  gemms: readonly (readonly [number, number])[],
  maxRows: number,
  policy = GEMM_SPLIT,
): number {
  let bytes = 0;
  for (const [n, k] of gemms) {
    const { splits } = gemmSplit(n, k, maxRows, policy);
    if (splits > 1) bytes = Math.max(bytes, splits * maxRows * n * 4);
  }
  return bytes;
}

const params: readonly KernelParam[] = [
  { name: 'p_c', type: 'u64' },
  { name: 'p_a', type: 'u64' },
  { name: 'p_arows', type: 'u64', nullable: true },
  { name: 'p_w', type: 'u64' },
  { name: 'p_bias', type: 'u64', nullable: true },
  { name: 'p_m', type: 'u32' },
  { name: 'p_n', type: 'u32' },
  { name: 'p_k', type: 'u32' },
  { name: 'p_lda', type: 'u32' },
  { name: 'p_ldc', type: 'u32' },
  { name: 'p_kchunk', type: 'u32' },
  { name: 'p_zstride', type: 'u32' },
];

interface Common {
  t: string;
  m0: string;
  n0: string;
  C: string;
  A: string;
  W: string;
  arows: string;
  noRows: string;
  bias: string;
  noBias: string;
  M: string;
  N: string;
  K: string;
  lda: string;
  ldc: string;
  smem: string;
  /** The first k of this CTA's split and the end of its range (K bounds every load anyway). */
  k0: string;
  kEnd: string;
}

function prologue(x: Ptx): Common {
  const t = x.special('%tid.x');
  const bx = x.special('%ctaid.x');
  const by = x.special('%ctaid.y');
  const n0 = x.r();
  const m0 = x.r();
  x.i(`shl.b32 ${n0}, ${bx}, 6`);
  x.i(`shl.b32 ${m0}, ${by}, 6`);
  const C = x.gptr('p_c');
  const A = x.gptr('p_a');
  const W = x.gptr('p_w');
  const rows = x.isNull('p_arows');
  const arows = x.rd();
  x.i(`cvta.to.global.u64 ${arows}, ${rows.raw}`);
  const b = x.isNull('p_bias');
  const bias = x.rd();
  x.i(`cvta.to.global.u64 ${bias}, ${b.raw}`);
  const M = x.param('p_m', 'u32');
  const N = x.param('p_n', 'u32');
  const K = x.param('p_k', 'u32');
  const lda = x.param('p_lda', 'u32');
  const ldc = x.param('p_ldc', 'u32');
  const smem = x.r();
  x.i(`mov.u32 ${smem}, kvp_smem`);
  // Split-K: CTA z sums k in [z * kchunk, (z + 1) * kchunk) and writes its partial zstride floats
  // further on; one split (kchunk >= K, z = 0) is the whole product.
  const z = x.special('%ctaid.z');
  const kchunk = x.param('p_kchunk', 'u32');
  const zstride = x.param('p_zstride', 'u32');
  const k0 = x.r();
  x.i(`mul.lo.s32 ${k0}, ${z}, ${kchunk}`);
  const kEnd = x.r();
  x.i(`add.s32 ${kEnd}, ${k0}, ${kchunk}`);
  const zoff = x.rd();
  x.i(`mul.wide.u32 ${zoff}, ${z}, ${zstride}`);
  x.i(`shl.b64 ${zoff}, ${zoff}, 2`);
  x.i(`add.s64 ${C}, ${C}, ${zoff}`);
  return {
    t,
    m0,
    n0,
    C,
    A,
    W,
    arows,
    noRows: rows.pred,
    bias,
    noBias: b.pred,
    M,
    N,
    K,
    lda,
    ldc,
    smem,
    k0,
    kEnd,
  };
}

/**
 * The global address of A's row `rowL` of the tile at column `col` (k offset 0): the row goes
 * through the index list when there is one. Returns the address and the row-in-range predicate.
 */
function aRowPointer(x: Ptx, c: Common, rowL: string, col: string): { ptr: string; ok: string } {
  const row = x.r();
  x.i(`add.s32 ${row}, ${c.m0}, ${rowL}`);
  const ok = x.p();
  x.i(`setp.lt.u32 ${ok}, ${row}, ${c.M}`);
  const viaList = x.p();
  x.i(`not.pred ${viaList}, ${c.noRows}`);
  x.i(`and.pred ${viaList}, ${viaList}, ${ok}`);
  const ridx = x.r();
  x.i(`mov.u32 ${ridx}, ${row}`);
  x.at(viaList, `ld.global.nc.u32 ${ridx}, [${x.addr(c.arows, row, 4)}]`);
  const elem = x.rd();
  x.i(`mul.wide.u32 ${elem}, ${ridx}, ${c.lda}`);
  const colw = x.rd();
  x.i(`cvt.u64.u32 ${colw}, ${col}`);
  x.i(`add.s64 ${elem}, ${elem}, ${colw}`);
  x.i(`shl.b64 ${elem}, ${elem}, 2`);
  const ptr = x.rd();
  x.i(`add.s64 ${ptr}, ${c.A}, ${elem}`);
  return { ptr, ok };
}

/** Loads a 4-float vector of A at k offset k0 (+ the thread's column), zero when out of range. */
function loadA(x: Ptx, c: Common, a: { ptr: string; ok: string }, col: string, k0: string, regs: string[]) {
  const kk = x.r();
  x.i(`add.s32 ${kk}, ${k0}, ${col}`);
  const ok = x.p();
  x.i(`setp.lt.and.u32 ${ok}, ${kk}, ${c.K}, ${a.ok}`);
  for (const r of regs) x.i(`mov.f32 ${r}, 0f00000000`);
  const ptr = x.addr(a.ptr, k0, 4);
  x.at(ok, `ld.global.nc.v4.f32 {${regs.join(', ')}}, [${ptr}]`);
}

/**
 * The global address of W[k0 + kL][n0 + nL] (k-major, row stride N, elements of 2^shift bytes) and
 * its in-range predicate.
 */
function wPointer(
  x: Ptx,
  c: Common,
  k0: string,
  kL: string,
  nL: string,
  shift: number,
): { ptr: string; ok: string } {
  const k = x.r();
  x.i(`add.s32 ${k}, ${k0}, ${kL}`);
  const n = x.r();
  x.i(`add.s32 ${n}, ${c.n0}, ${nL}`);
  const okn = x.p();
  x.i(`setp.lt.u32 ${okn}, ${n}, ${c.N}`);
  const ok = x.p();
  x.i(`setp.lt.and.u32 ${ok}, ${k}, ${c.K}, ${okn}`);
  const elem = x.rd();
  x.i(`mul.wide.u32 ${elem}, ${k}, ${c.N}`);
  const nw = x.rd();
  x.i(`cvt.u64.u32 ${nw}, ${n}`);
  x.i(`add.s64 ${elem}, ${elem}, ${nw}`);
  x.i(`shl.b64 ${elem}, ${elem}, ${shift}`);
  const ptr = x.rd();
  x.i(`add.s64 ${ptr}, ${c.W}, ${elem}`);
  return { ptr, ok };
}

function gemmFma(arch: Arch, name: string): GeneratedKernel {
  const x = new Ptx();
  const c = prologue(x);
  const AS = 16 * 68 * 4; // one A buffer: [BK=16][BM+4=68] f32, transposed
  const BS = 16 * 64 * 4; // one W buffer: [BK=16][BN=64] f32
  const ty = x.r();
  const tx = x.r();
  x.i(`shr.u32 ${ty}, ${c.t}, 4`);
  x.i(`and.b32 ${tx}, ${c.t}, 15`);
  // A staging: 2 passes of 32 rows, 4 columns per thread.
  const colA = x.r();
  x.i(`and.b32 ${colA}, ${c.t}, 3`);
  x.i(`shl.b32 ${colA}, ${colA}, 2`);
  const q = x.r();
  x.i(`shr.u32 ${q}, ${c.t}, 2`);
  const aRows: { ptr: string; ok: string }[] = [];
  const aSt: string[] = [];
  for (let p = 0; p < 2; p++) {
    const rowL = x.r();
    x.i(`add.s32 ${rowL}, ${q}, ${p * 32}`);
    aRows.push(aRowPointer(x, c, rowL, colA));
    const st = x.r(); // byte offset of (colA, rowL) in the transposed tile
    x.i(`mad.lo.s32 ${st}, ${colA}, 68, ${rowL}`);
    x.i(`shl.b32 ${st}, ${st}, 2`);
    aSt.push(st);
  }
  // W staging: 2 passes of 8 k-rows, 16 threads per row, 4 columns each.
  const nB = x.r();
  x.i(`and.b32 ${nB}, ${c.t}, 15`);
  x.i(`shl.b32 ${nB}, ${nB}, 2`);
  const kq = x.r();
  x.i(`shr.u32 ${kq}, ${c.t}, 4`);
  const kBL: string[] = [];
  const bSt: string[] = [];
  for (let p = 0; p < 2; p++) {
    const k = x.r();
    x.i(`add.s32 ${k}, ${kq}, ${p * 8}`);
    kBL.push(k);
    const st = x.r();
    x.i(`shl.b32 ${st}, ${k}, 6`);
    x.i(`add.s32 ${st}, ${st}, ${nB}`);
    x.i(`shl.b32 ${st}, ${st}, 2`);
    bSt.push(st);
  }
  const stage = x.fs(8);
  const issueW = (k0: string, buf: string) => {
    const base = x.r();
    x.i(`mad.lo.s32 ${base}, ${buf}, ${BS}, ${c.smem}`);
    x.i(`add.s32 ${base}, ${base}, ${2 * AS}`);
    for (let p = 0; p < 2; p++) {
      const w = wPointer(x, c, k0, kBL[p] as string, nB, 2);
      const size = x.r();
      x.i(`selp.u32 ${size}, 16, 0, ${w.ok}`);
      const src = x.rd();
      x.i(`selp.b64 ${src}, ${w.ptr}, ${c.W}, ${w.ok}`);
      const dst = x.r();
      x.i(`add.s32 ${dst}, ${base}, ${bSt[p]}`);
      x.i(`cp.async.cg.shared.global [${dst}], [${src}], 16, ${size}`);
    }
    x.i('cp.async.commit_group');
  };
  const loadAll = (k0: string) => {
    for (let p = 0; p < 2; p++) loadA(x, c, aRows[p] as never, colA, k0, stage.slice(p * 4, p * 4 + 4));
  };
  const storeA = (buf: string) => {
    const base = x.r();
    x.i(`mad.lo.s32 ${base}, ${buf}, ${AS}, ${c.smem}`);
    for (let p = 0; p < 2; p++) {
      const a = x.r();
      x.i(`add.s32 ${a}, ${base}, ${aSt[p]}`);
      for (let i = 0; i < 4; i++) x.i(`st.shared.f32 [${a}+${i * 68 * 4}], ${stage[p * 4 + i]}`);
    }
  };
  const acc = x.fs(32);
  for (const a of acc) x.i(`mov.f32 ${a}, 0f00000000`);
  const k0 = c.k0;
  const buf = x.r();
  x.i(`mov.u32 ${buf}, 0`);
  x.comment('prologue: tile 0 into buffer 0');
  issueW(k0, buf);
  loadAll(k0);
  storeA(buf);
  x.i('cp.async.wait_all');
  x.i('bar.sync 0');
  const loop = x.label('k');
  x.place(loop);
  const k1 = x.r();
  x.i(`add.s32 ${k1}, ${k0}, 16`);
  const nb = x.r();
  x.i(`xor.b32 ${nb}, ${buf}, 1`);
  x.comment('next tile in flight: W by cp.async into the other buffer, A into registers');
  issueW(k1, nb);
  loadAll(k1);
  x.comment('8x4 micro-tile over BK = 16');
  const aB = x.r();
  x.i(`mad.lo.s32 ${aB}, ${buf}, ${AS}, ${c.smem}`);
  x.i(`shl.b32 ${q}, ${ty}, 4`);
  x.i(`add.s32 ${aB}, ${aB}, ${q}`);
  const bB = x.r();
  x.i(`mad.lo.s32 ${bB}, ${buf}, ${BS}, ${c.smem}`);
  x.i(`add.s32 ${bB}, ${bB}, ${2 * AS}`);
  x.i(`shl.b32 ${q}, ${tx}, 4`);
  x.i(`add.s32 ${bB}, ${bB}, ${q}`);
  const av = x.fs(8);
  const bv = x.fs(4);
  for (let kk = 0; kk < 16; kk++) {
    x.i(`ld.shared.v4.f32 {${av.slice(0, 4).join(', ')}}, [${aB}+${kk * 272}]`);
    x.i(`ld.shared.v4.f32 {${av.slice(4, 8).join(', ')}}, [${aB}+${kk * 272 + 128}]`);
    x.i(`ld.shared.v4.f32 {${bv.join(', ')}}, [${bB}+${kk * 256}]`);
    for (let i = 0; i < 8; i++)
      for (let j = 0; j < 4; j++) {
        const a = acc[i * 4 + j] as string;
        x.i(`fma.rn.f32 ${a}, ${av[i]}, ${bv[j]}, ${a}`);
      }
  }
  storeA(nb);
  x.i('cp.async.wait_all');
  x.i('bar.sync 0');
  x.i(`mov.u32 ${buf}, ${nb}`);
  x.i(`mov.u32 ${k0}, ${k1}`);
  const more = x.p();
  x.i(`setp.lt.u32 ${more}, ${k0}, ${c.K}`);
  x.i(`setp.lt.and.u32 ${more}, ${k0}, ${c.kEnd}, ${more}`);
  x.at(more, `bra.uni ${loop}`);
  x.comment('epilogue: + bias, 16-byte stores');
  const col = x.r();
  x.i(`shl.b32 ${col}, ${tx}, 2`);
  x.i(`add.s32 ${col}, ${col}, ${c.n0}`);
  const okc = x.p();
  x.i(`setp.lt.u32 ${okc}, ${col}, ${c.N}`);
  const bvals = x.fs(4);
  for (const b of bvals) x.i(`mov.f32 ${b}, 0f00000000`);
  const lb = x.p();
  x.i(`not.pred ${lb}, ${c.noBias}`);
  x.i(`and.pred ${lb}, ${lb}, ${okc}`);
  x.at(lb, `ld.global.nc.v4.f32 {${bvals.join(', ')}}, [${x.addr(c.bias, col, 4)}]`);
  for (let i = 0; i < 8; i++) {
    const row = x.r();
    x.i(`shl.b32 ${row}, ${ty}, 2`);
    x.i(`add.s32 ${row}, ${row}, ${c.m0}`);
    x.i(`add.s32 ${row}, ${row}, ${(i < 4 ? 0 : 32) + (i % 4)}`);
    const ok = x.p();
    x.i(`setp.lt.and.u32 ${ok}, ${row}, ${c.M}, ${okc}`);
    const e = x.rd();
    x.i(`mul.wide.u32 ${e}, ${row}, ${c.ldc}`);
    const cw = x.rd();
    x.i(`cvt.u64.u32 ${cw}, ${col}`);
    x.i(`add.s64 ${e}, ${e}, ${cw}`);
    x.i(`shl.b64 ${e}, ${e}, 2`);
    x.i(`add.s64 ${e}, ${e}, ${c.C}`);
    const out = x.fs(4);
    for (let j = 0; j < 4; j++) x.i(`add.f32 ${out[j]}, ${acc[i * 4 + j]}, ${bvals[j]}`);
    x.at(ok, `st.global.v4.f32 [${e}], {${out.join(', ')}}`);
  }
  const sharedBytes = 2 * AS + 2 * BS;
  return {
    name,
    kind: 'gemm',
    params,
    block: GEMM_TILE.threads,
    sharedBytes,
    ptx: x.module({
      arch,
      entry: name,
      params,
      maxThreads: GEMM_TILE.threads,
      dynamicShared: true,
      doc: 'C = A[rows]·W + bias, f32 FMA path: 64x64 tile, 8x4 per thread, cp.async W tiles, double-buffered.',
    }),
  };
}

/**
 * The tensor-core GEMM. `w16`: W is stored in global memory as `dtype` bits (the checkpoint's
 * stored dtype), read with 8-byte loads and stored to shared memory as it is; otherwise W is f32 and
 * converted like A.
 */
function gemmMma(arch: Arch, name: string, dtype: MmaDtype, w16: boolean): GeneratedKernel {
  const x = new Ptx();
  const c = prologue(x);
  const STRIDE = 40; // halves per shared row (32 + 8 padding)
  const AS = 64 * STRIDE * 2;
  const sA = c.smem;
  const sB = x.r();
  x.i(`add.s32 ${sB}, ${c.smem}, ${AS}`);
  // A staging: 4 passes of 16 rows, 8 threads per row, 4 columns each.
  const colA = x.r();
  x.i(`and.b32 ${colA}, ${c.t}, 7`);
  x.i(`shl.b32 ${colA}, ${colA}, 2`);
  const q = x.r();
  x.i(`shr.u32 ${q}, ${c.t}, 3`);
  const aRows: { ptr: string; ok: string }[] = [];
  const aSt: string[] = [];
  for (let p = 0; p < 4; p++) {
    const rowL = x.r();
    x.i(`add.s32 ${rowL}, ${q}, ${p * 16}`);
    aRows.push(aRowPointer(x, c, rowL, colA));
    const st = x.r();
    x.i(`mad.lo.s32 ${st}, ${rowL}, ${STRIDE}, ${colA}`);
    x.i(`shl.b32 ${st}, ${st}, 1`);
    x.i(`add.s32 ${st}, ${st}, ${sA}`);
    aSt.push(st);
  }
  // W staging: 4 passes of 8 k-rows, 16 threads per row, 4 columns each; stored transposed.
  const nB = x.r();
  x.i(`and.b32 ${nB}, ${c.t}, 15`);
  x.i(`shl.b32 ${nB}, ${nB}, 2`);
  const kq = x.r();
  x.i(`shr.u32 ${kq}, ${c.t}, 4`);
  const kBL: string[] = [];
  const bSt: string[] = [];
  for (let p = 0; p < 4; p++) {
    const k = x.r();
    x.i(`add.s32 ${k}, ${kq}, ${p * 8}`);
    kBL.push(k);
    const st = x.r();
    x.i(`mad.lo.s32 ${st}, ${nB}, ${STRIDE}, ${k}`);
    x.i(`shl.b32 ${st}, ${st}, 1`);
    x.i(`add.s32 ${st}, ${st}, ${sB}`);
    bSt.push(st);
  }
  const ra = x.fs(16);
  // Per pass, 4 consecutive W values of a k-row: 4 f32, or 2 b32 holding 2 halves each (the lower
  // half the lower column, as in memory).
  const rb = w16 ? x.rs(8) : x.fs(16);
  const wPer = w16 ? 2 : 4;
  const loadTile = (k0: string) => {
    for (let p = 0; p < 4; p++) loadA(x, c, aRows[p] as never, colA, k0, ra.slice(p * 4, p * 4 + 4));
    for (let p = 0; p < 4; p++) {
      const w = wPointer(x, c, k0, kBL[p] as string, nB, w16 ? 1 : 2);
      const regs = rb.slice(p * wPer, (p + 1) * wPer);
      for (const r of regs) x.i(w16 ? `mov.b32 ${r}, 0` : `mov.f32 ${r}, 0f00000000`);
      x.at(w.ok, `ld.global.nc.v${wPer}.${w16 ? 'b32' : 'f32'} {${regs.join(', ')}}, [${w.ptr}]`);
    }
  };
  const pair = x.rs(2);
  const halves = [x.h(), x.h()];
  const storeTile = () => {
    for (let p = 0; p < 4; p++) {
      const v = ra.slice(p * 4, p * 4 + 4);
      x.i(`cvt.rn.${dtype}x2.f32 ${pair[0]}, ${v[1]}, ${v[0]}`);
      x.i(`cvt.rn.${dtype}x2.f32 ${pair[1]}, ${v[3]}, ${v[2]}`);
      x.i(`st.shared.v2.b32 [${aSt[p]}], {${pair[0]}, ${pair[1]}}`);
    }
    for (let p = 0; p < 4; p++)
      for (let i = 0; i < 4; i++) {
        const h = halves[i % 2] as string;
        if (!w16) x.i(`cvt.rn.${dtype}.f32 ${h}, ${rb[p * 4 + i]}`);
        else if (i % 2 === 0) x.i(`mov.b32 {${halves.join(', ')}}, ${rb[p * 2 + i / 2]}`);
        x.i(`st.shared.b16 [${bSt[p]}+${i * STRIDE * 2}], ${h}`);
      }
  };
  // Warp tiling: 2x2 warps, 32x32 each.
  const warp = x.r();
  x.i(`shr.u32 ${warp}, ${c.t}, 5`);
  const lane = x.r();
  x.i(`and.b32 ${lane}, ${c.t}, 31`);
  const g = x.r();
  x.i(`shr.u32 ${g}, ${lane}, 2`);
  const tig = x.r();
  x.i(`and.b32 ${tig}, ${lane}, 3`);
  const wm = x.r();
  x.i(`shr.u32 ${wm}, ${warp}, 1`);
  const wn = x.r();
  x.i(`and.b32 ${wn}, ${warp}, 1`);
  const aF = x.r();
  x.i(`mad.lo.s32 ${aF}, ${wm}, 32, ${g}`);
  x.i(`mul.lo.s32 ${aF}, ${aF}, ${STRIDE}`);
  x.i(`mad.lo.s32 ${aF}, ${tig}, 2, ${aF}`);
  x.i(`shl.b32 ${aF}, ${aF}, 1`);
  x.i(`add.s32 ${aF}, ${aF}, ${sA}`);
  const bF = x.r();
  x.i(`mad.lo.s32 ${bF}, ${wn}, 32, ${g}`);
  x.i(`mul.lo.s32 ${bF}, ${bF}, ${STRIDE}`);
  x.i(`mad.lo.s32 ${bF}, ${tig}, 2, ${bF}`);
  x.i(`shl.b32 ${bF}, ${bF}, 1`);
  x.i(`add.s32 ${bF}, ${bF}, ${sB}`);
  const acc = x.fs(32); // [mi][ni][4]
  for (const a of acc) x.i(`mov.f32 ${a}, 0f00000000`);
  const fa = x.rs(8);
  const fb = x.rs(8);
  const k0 = c.k0;
  x.comment('prologue: tile 0 into registers');
  loadTile(k0);
  const loop = x.label('k');
  x.place(loop);
  storeTile();
  x.i('bar.sync 0');
  const k1 = x.r();
  x.i(`add.s32 ${k1}, ${k0}, 32`);
  x.comment('prefetch the next tile into registers while the tensor cores work');
  loadTile(k1);
  const row = STRIDE * 2; // bytes per shared row
  for (let ks = 0; ks < 32; ks += 16) {
    for (let mi = 0; mi < 2; mi++) {
      const base = mi * 16 * row + ks * 2;
      const offs = [base, base + 8 * row, base + 16, base + 8 * row + 16];
      offs.forEach((o, j) => {
        x.i(`ld.shared.b32 ${fa[mi * 4 + j]}, [${aF}+${o}]`);
      });
    }
    for (let ni = 0; ni < 4; ni++) {
      const base = ni * 8 * row + ks * 2;
      x.i(`ld.shared.b32 ${fb[ni * 2]}, [${bF}+${base}]`);
      x.i(`ld.shared.b32 ${fb[ni * 2 + 1]}, [${bF}+${base + 16}]`);
    }
    for (let mi = 0; mi < 2; mi++)
      for (let ni = 0; ni < 4; ni++) {
        const d = acc.slice((mi * 4 + ni) * 4, (mi * 4 + ni) * 4 + 4).join(', ');
        const a = fa.slice(mi * 4, mi * 4 + 4).join(', ');
        const b = fb.slice(ni * 2, ni * 2 + 2).join(', ');
        x.i(`mma.sync.aligned.m16n8k16.row.col.f32.${dtype}.${dtype}.f32 {${d}}, {${a}}, {${b}}, {${d}}`);
      }
  }
  x.i('bar.sync 0');
  x.i(`mov.u32 ${k0}, ${k1}`);
  const more = x.p();
  x.i(`setp.lt.u32 ${more}, ${k0}, ${c.K}`);
  x.i(`setp.lt.and.u32 ${more}, ${k0}, ${c.kEnd}, ${more}`);
  x.at(more, `bra.uni ${loop}`);
  x.comment('epilogue: accumulator fragments (+ bias) to C, 8-byte stores');
  for (let ni = 0; ni < 4; ni++) {
    const col = x.r();
    x.i(`mad.lo.s32 ${col}, ${wn}, 32, ${c.n0}`);
    x.i(`add.s32 ${col}, ${col}, ${ni * 8}`);
    x.i(`mad.lo.s32 ${col}, ${tig}, 2, ${col}`);
    const okc = x.p();
    x.i(`setp.lt.u32 ${okc}, ${col}, ${c.N}`);
    const bv = x.fs(2);
    for (const b of bv) x.i(`mov.f32 ${b}, 0f00000000`);
    const lb = x.p();
    x.i(`not.pred ${lb}, ${c.noBias}`);
    x.i(`and.pred ${lb}, ${lb}, ${okc}`);
    x.at(lb, `ld.global.nc.v2.f32 {${bv.join(', ')}}, [${x.addr(c.bias, col, 4)}]`);
    for (let mi = 0; mi < 2; mi++)
      for (let hlf = 0; hlf < 2; hlf++) {
        const r = x.r();
        x.i(`mad.lo.s32 ${r}, ${wm}, 32, ${c.m0}`);
        x.i(`add.s32 ${r}, ${r}, ${mi * 16 + hlf * 8}`);
        x.i(`add.s32 ${r}, ${r}, ${g}`);
        const ok = x.p();
        x.i(`setp.lt.and.u32 ${ok}, ${r}, ${c.M}, ${okc}`);
        const e = x.rd();
        x.i(`mul.wide.u32 ${e}, ${r}, ${c.ldc}`);
        const cw = x.rd();
        x.i(`cvt.u64.u32 ${cw}, ${col}`);
        x.i(`add.s64 ${e}, ${e}, ${cw}`);
        x.i(`shl.b64 ${e}, ${e}, 2`);
        x.i(`add.s64 ${e}, ${e}, ${c.C}`);
        const base = (mi * 4 + ni) * 4 + hlf * 2;
        const out = x.fs(2);
        x.i(`add.f32 ${out[0]}, ${acc[base]}, ${bv[0]}`);
        x.i(`add.f32 ${out[1]}, ${acc[base + 1]}, ${bv[1]}`);
        x.at(ok, `st.global.v2.f32 [${e}], {${out.join(', ')}}`);
      }
  }
  return {
    name,
    kind: 'gemm',
    params,
    block: GEMM_TILE.threads,
    sharedBytes: 2 * AS,
    ptx: x.module({
      arch,
      entry: name,
      params,
      maxThreads: GEMM_TILE.threads,
      dynamicShared: true,
      doc: `C = A[rows]·W + bias on tensor cores: mma.sync m16n8k16 ${dtype} inputs${w16 ? ` (W stored as ${dtype})` : ''}, f32 accumulation; 64x64 tile, BK 32.`,
    }),
  };
}

/** The GEMM kernel for a path. Launch: grid (ceil(N/64), ceil(M/64)), 128 threads. */
export function gemmKernel(arch: Arch, path: GemmPath): GeneratedKernel {
  const name = `kvp_gemm_${path.replace('-', '_')}`;
  const dtype = pathDtype(path);
  return dtype ? gemmMma(arch, name, dtype, false) : gemmFma(arch, name);
}

/**
 * The GEMM of a weight stored in 16 bits (`kvp_gemm16_<dtype>`): W [K][N] read as `dtype` bits,
 * A converted to `dtype`, mma.sync in that dtype, f32 accumulation. Launched as `gemmKernel`.
 */
export const gemm16Kernel = (arch: Arch, dtype: MmaDtype): GeneratedKernel =>
  gemmMma(arch, `kvp_gemm16_${dtype}`, dtype, true);
