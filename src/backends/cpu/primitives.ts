/**
 * The CPU primitives (src/backends/cpu/c/kvplan_cpu.c) compiled with the system compiler and
 * loaded through koffi, behind typed wrappers that mirror kvplan_cpu.h one to one. Typed arrays
 * (and their subarray views) are passed to C as pointers, without copies. Every wrapper checks
 * sizes and indices first, so that a wrong argument is a RangeError, not a crash.
 */

import { readFileSync } from 'node:fs';
import type { Fault } from '../fault.ts';
import {
  type CompiledLibrary,
  type CompileOptions,
  compileLibrary,
  type LibraryHandle,
  openLibrary,
} from './compiler.ts';
import { faultDefine, maxHeadDim } from './render.ts';

export const PRIMITIVES_SOURCE = new URL('./c/kvplan_cpu.c', import.meta.url);

export function primitivesSource(): string {
  return readFileSync(PRIMITIVES_SOURCE, 'utf8');
}

/**
 * Compiles the primitives into their own cached library, once per source, compiler, flags and
 * target CPU, and per armed fault (test only: its define heads the unit, so a faulty library is
 * another cache entry). Plan libraries link against it (CompileOptions.against).
 */
export function compilePrimitives(opts: CompileOptions = {}, fault?: Fault): CompiledLibrary {
  const unit = fault ? [...faultDefine(fault), primitivesSource()].join('\n') : primitivesSource();
  return compileLibrary(unit, opts);
}

type Ints = Int32Array;
type Floats = Float32Array;
type Halves = Uint16Array;

/**
 * The dtype codes of kv_gemm16 (kvplan_cpu.h): bf16 and f16 weights with float32 activations
 * (exact weights, float32 accumulation); bf16Dot: bf16 weights packed as for bf16, with the
 * activations rounded to bf16 as well (vdpbf16ps where the CPU has AVX512_BF16).
 */
export const Dtype16 = { bf16: 1, f16: 2, bf16Dot: 3 } as const;
export type Dtype16 = (typeof Dtype16)[keyof typeof Dtype16];

/** One GEMM of a gemmMulti call: its weight (packed as the call's dtype asks), bias and output. */
export interface MultiGemm {
  readonly n: number;
  readonly packed: Floats | Halves;
  readonly bias: Floats | null;
  readonly c: Floats;
}

export interface Primitives {
  /** The koffi handle of the loaded library. */
  readonly lib: LibraryHandle;
  /** Path of the shared library. */
  readonly path: string;
  /** Threads used by every primitive; <= 0 means all cores. */
  setThreads(n: number): void;
  getThreads(): number;
  /** Floats of a packed [n][k] weight. */
  packedSize(n: number, k: number): number;
  /** Packs W [n][k] for gemm, into `out` when given (at least packedSize floats). */
  packWeight(n: number, k: number, w: Floats, out?: Floats): Floats;
  /** uint16 elements of a packed [n][k] 16-bit weight (kv_packed_size16). */
  packedSize16(n: number, k: number): number;
  /** Packs W [n][k], raw bf16/f16 bits, for gemm16, into `out` when given (at least packedSize16). */
  packWeight16(n: number, k: number, w: Halves, dtype: Dtype16, out?: Halves): Halves;
  /** gemm with a weight packed by packWeight16 with the same dtype (kv_gemm16). */
  gemm16(
    m: number,
    n: number,
    k: number,
    a: Floats,
    lda: number,
    arows: Ints | null,
    packed: Halves,
    dtype: Dtype16,
    bias: Floats | null,
    c: Floats,
    ldc: number,
    accumulate: boolean,
  ): void;
  /**
   * gemm without accumulate of several weights over one A (ldc = n each), in one call that packs A
   * once (kv_gemm_multi); with `dtype`, of 16-bit weights packed by packWeight16 (kv_gemm16_multi).
   */
  gemmMulti(
    m: number,
    k: number,
    a: Floats,
    lda: number,
    arows: Ints | null,
    gemms: readonly MultiGemm[],
    dtype?: Dtype16,
  ): void;
  /** The code path gemm16 takes for dtype in this build, in words (kv_gemm16_path). */
  gemm16Path(dtype: Dtype16): string;
  /** C[i][j] = (accumulate ? C[i][j] : 0) + sum_k A[r(i)][k] W[j][k] + bias[j], r(i) = arows ? arows[i] : i. */
  gemm(
    m: number,
    n: number,
    k: number,
    a: Floats,
    lda: number,
    arows: Ints | null,
    packed: Floats,
    bias: Floats | null,
    c: Floats,
    ldc: number,
    accumulate: boolean,
  ): void;
  /**
   * Attention over keys gathered through kpos from canvas K/V [L][kvh][hd]; writes o [nq][heads][hd],
   * lse [nq][heads]. Masks by block (blocks) and by sequence (seqs) when given.
   */
  attention(
    nq: number,
    nk: number,
    heads: number,
    kvh: number,
    hd: number,
    scale: number,
    q: Floats,
    kcanvas: Floats,
    vcanvas: Floats,
    qpos: Ints,
    kpos: Ints,
    blocks: Ints | null,
    o: Floats,
    lse: Floats,
    seqs?: Ints | null,
  ): void;
  /**
   * The softmax probability each of the nk keys receives, summed over the query rows and heads,
   * into mass (float64); same visibility rules as attention.
   */
  attentionMass(
    nq: number,
    nk: number,
    heads: number,
    kvh: number,
    hd: number,
    scale: number,
    q: Floats,
    kcanvas: Floats,
    qpos: Ints,
    kpos: Ints,
    blocks: Ints | null,
    mass: Float64Array,
  ): void;
  /** In place: (o1, lse1) = merge((o1, lse1), (o2, lse2)). */
  merge(rows: number, heads: number, hd: number, o1: Floats, lse1: Floats, o2: Floats, lse2: Floats): void;
  rmsnorm(n: number, d: number, x: Floats, rows: Ints | null, w: Floats, eps: number, out: Floats): void;
  /** In place rotary embedding of x [n][heads][hd] at positions pos [n]. */
  rope(n: number, heads: number, hd: number, x: Floats, pos: Ints, theta: number): void;
  swiglu(n: number, gate: Floats, up: Floats, out: Floats): void;
  /** Rows of a table of floats, or of 16-bit weights of a Dtype16 dtype. */
  embed(n: number, d: number, table: Floats | Halves, dtype: number, ids: Ints, out: Floats): void;
  copyRows(
    n: number,
    width: number,
    src: Floats,
    srcRows: Ints | null,
    dst: Floats,
    dstRows: Ints | null,
  ): void;
  /**
   * out[i] = 1 - cos(a_i, b_i) over columns [from, to) of n rows of width floats (in double); 1
   * where b's slice starts with NaN (a cache row never written).
   */
  rowDrift(n: number, width: number, from: number, to: number, a: Floats, b: Floats, out: Float64Array): void;
  /**
   * The rows of `a` (n rows of width floats) whose bytes differ from `kept`'s, in order into
   * `changed`, each copied into `kept`; returns how many.
   */
  rowsChanged(n: number, width: number, a: Floats, kept: Floats, changed: Int32Array): number;
  /**
   * Softmax statistics of `rows` rows of v logits, logit `exclude` left out (-1: none):
   * stats[3r..3r+2] = confidence, margin, entropy (as src/model/golden.ts softmaxStats); argmax[r],
   * or -1 where the row holds a NaN or an infinity (its stats NaN).
   */
  softmaxStats(
    rows: number,
    v: number,
    logits: Floats,
    exclude: number,
    stats: Float64Array,
    argmax: Int32Array,
  ): void;
}

function nonNegInt(name: string, x: number): void {
  if (!Number.isInteger(x) || x < 0 || x > 0x7fffffff)
    throw new RangeError(`${name} must be a non-negative int32, got ${x}`);
}

function need(name: string, arr: { length: number }, count: number): void {
  if (arr.length < count) throw new RangeError(`${name} has ${arr.length} elements, needs at least ${count}`);
}

/** Checks that the first n entries of idx lie in [0, limit); returns their maximum (-1 when n = 0). */
function indices(name: string, idx: Ints, n: number, limit: number): number {
  need(name, idx, n);
  let max = -1;
  for (let i = 0; i < n; i++) {
    const v = idx[i] as number;
    if (v < 0 || v >= limit) throw new RangeError(`${name}[${i}] = ${v} is outside [0, ${limit})`);
    if (v > max) max = v;
  }
  return max;
}

/** Floats needed by `rows` rows of `width` at stride `ld`. */
function span(rows: number, width: number, ld: number): number {
  return rows <= 0 || width <= 0 ? 0 : (rows - 1) * ld + width;
}

/** The argument checks shared by attention and attentionMass (a no-op for nq = 0 beyond the counts). */
function checkAttention(
  nq: number,
  nk: number,
  heads: number,
  kvh: number,
  hd: number,
  q: Floats,
  kFloats: number,
  qpos: Ints,
  kpos: Ints,
  tables: readonly (Ints | null)[],
): void {
  for (const [name, x] of [
    ['nq', nq],
    ['nk', nk],
    ['heads', heads],
    ['kvh', kvh],
    ['hd', hd],
  ] as const)
    nonNegInt(name, x);
  if (hd > maxHeadDim) throw new RangeError(`hd ${hd} exceeds the maximum head dimension ${maxHeadDim}`);
  if (nq === 0) return;
  if (!(kvh > 0 && heads % kvh === 0))
    throw new RangeError(`${heads} query heads cannot share ${kvh} kv heads`);
  need('q', q, nq * heads * hd);
  const row = kvh * hd;
  const canvas = row > 0 ? Math.floor(kFloats / row) : 0x7fffffff;
  const given = tables.filter((t): t is Ints => t !== null);
  const rows = Math.min(...given.map((t) => t.length));
  indices('kpos', kpos, nk, Math.min(canvas, rows));
  if (given.length > 0) indices('qpos', qpos, nq, rows);
}

const loaded = new Map<string, Primitives>();

/** Functions every library with the primitives defines (a corrupt one is rebuilt on load). */
const PRIMITIVE_SYMBOLS = ['kv_set_threads', 'kv_gemm', 'kv_attention', 'kv_rmsnorm', 'kv_copy_rows'];

/** Binds the primitives of an already compiled library. */
export function bindPrimitives(compiled: CompiledLibrary): Primitives {
  const { path } = compiled;
  const known = loaded.get(path);
  if (known) return known;
  const lib = openLibrary(compiled, PRIMITIVE_SYMBOLS);
  const f = {
    setThreads: lib.func('void kv_set_threads(int n)'),
    getThreads: lib.func('int kv_get_threads(void)'),
    packedSize: lib.func('int64_t kv_packed_size(int n, int k)'),
    packWeight: lib.func('void kv_pack_weight(int n, int k, const float *w, float *packed)'),
    gemm: lib.func(
      'void kv_gemm(int m, int n, int k, const float *a, int lda, const int32_t *arows, const float *packed, ' +
        'const float *bias, float *c, int ldc, int accumulate)',
    ),
    attention: lib.func(
      'void kv_attention(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q, ' +
        'const float *kcanvas, const float *vcanvas, const int32_t *qpos, const int32_t *kpos, ' +
        'const int32_t *blocks, const int32_t *seqs, float *o, float *lse)',
    ),
    attentionMass: lib.func(
      'void kv_attention_mass(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q, ' +
        'const float *kcanvas, const int32_t *qpos, const int32_t *kpos, const int32_t *blocks, ' +
        'const int32_t *seqs, double *mass)',
    ),
    merge: lib.func(
      'void kv_merge(int rows, int heads, int hd, float *o1, float *lse1, const float *o2, const float *lse2)',
    ),
    rmsnorm: lib.func(
      'void kv_rmsnorm(int n, int d, const float *x, const int32_t *rows, const float *w, float eps, float *out)',
    ),
    rope: lib.func('void kv_rope(int n, int heads, int hd, float *x, const int32_t *pos, float theta)'),
    swiglu: lib.func('void kv_swiglu(int64_t n, const float *gate, const float *up, float *out)'),
    embed: lib.func(
      'void kv_embed(int n, int d, const void *table, int dtype, const int32_t *ids, float *out)',
    ),
    copyRows: lib.func(
      'void kv_copy_rows(int n, int width, const float *src, const int32_t *src_rows, float *dst, const int32_t *dst_rows)',
    ),
    rowDrift: lib.func(
      'void kv_row_drift(int n, int width, int from, int to, const float *a, const float *b, double *out)',
    ),
    rowsChanged: lib.func(
      'int kv_rows_changed(int n, int width, const float *a, float *kept, int32_t *changed)',
    ),
    softmaxStats: lib.func(
      'void kv_softmax_stats(int rows, int v, const float *logits, int exclude, double *stats, int32_t *argmax)',
    ),
  };
  // The 16-bit GEMM is bound on first use, so that a library without it still binds.
  let f16: {
    packedSize: (n: number, k: number) => number | bigint;
    pack: (n: number, k: number, w: Halves, dtype: number, packed: Halves) => void;
    gemm: (...args: unknown[]) => void;
    path: (dtype: number) => string;
  } | null = null;
  let multi32: ((...args: unknown[]) => void) | undefined;
  let multi16: ((...args: unknown[]) => void) | undefined;
  const g16 = () => {
    f16 ??= {
      packedSize: lib.func('int64_t kv_packed_size16(int n, int k)'),
      pack: lib.func('void kv_pack_weight16(int n, int k, const uint16_t *w, int dtype, uint16_t *packed)'),
      gemm: lib.func(
        'void kv_gemm16(int m, int n, int k, const float *a, int lda, const int32_t *arows, ' +
          'const uint16_t *packed, int dtype, const float *bias, float *c, int ldc, int accumulate)',
      ),
      path: lib.func('const char *kv_gemm16_path(int dtype)'),
    };
    return f16;
  };
  const dtype16 = (dtype: number): void => {
    if (dtype !== Dtype16.bf16 && dtype !== Dtype16.f16 && dtype !== Dtype16.bf16Dot)
      throw new RangeError(`dtype must be 1 (bf16), 2 (f16) or 3 (bf16 dot), got ${dtype}`);
  };
  const packedSize16 = (n: number, k: number): number => {
    nonNegInt('n', n);
    nonNegInt('k', k);
    return Number(g16().packedSize(n, k));
  };
  /** The checks shared by gemm and gemm16 (false: nothing to compute). */
  const checkGemm = (
    m: number,
    n: number,
    k: number,
    a: Floats,
    lda: number,
    arows: Ints | null,
    packed: { length: number },
    packedLength: (n: number, k: number) => number,
    bias: Floats | null,
    c: Floats,
    ldc: number,
  ): boolean => {
    for (const [name, x] of [
      ['m', m],
      ['n', n],
      ['k', k],
      ['lda', lda],
      ['ldc', ldc],
    ] as const)
      nonNegInt(name, x);
    if (m === 0 || n === 0) return false;
    if (ldc < n) throw new RangeError(`ldc ${ldc} < n ${n}`);
    if (k > 0 && lda < k) throw new RangeError(`lda ${lda} < k ${k}`);
    if (arows) {
      // Rows of A that exist: the last one needs k floats, the others lda.
      const available = k > 0 ? (a.length >= k ? Math.floor((a.length - k) / lda) + 1 : 0) : 0x7fffffff;
      indices('arows', arows, m, available);
    } else if (k > 0) need('a', a, span(m, k, lda));
    need('packed', packed, packedLength(n, k));
    if (bias) need('bias', bias, n);
    need('c', c, span(m, n, ldc));
    return true;
  };
  const packedSize = (n: number, k: number): number => {
    nonNegInt('n', n);
    nonNegInt('k', k);
    return Number(f.packedSize(n, k));
  };
  const p: Primitives = {
    lib,
    path,
    setThreads: (n) => {
      if (!Number.isInteger(n)) throw new RangeError(`threads must be an integer, got ${n}`);
      f.setThreads(n);
    },
    getThreads: () => f.getThreads() as number,
    packedSize,
    packWeight(n, k, w, out) {
      const size = packedSize(n, k);
      need('w', w, n * k);
      const dst = out ?? new Float32Array(size);
      need('packed', dst, size);
      if (size > 0) f.packWeight(n, k, w, dst);
      return dst;
    },
    gemm(m, n, k, a, lda, arows, packed, bias, c, ldc, accumulate) {
      if (!checkGemm(m, n, k, a, lda, arows, packed, packedSize, bias, c, ldc)) return;
      f.gemm(m, n, k, a, lda, arows, packed, bias, c, ldc, accumulate ? 1 : 0);
    },
    packedSize16,
    packWeight16(n, k, w, dtype, out) {
      dtype16(dtype);
      const size = packedSize16(n, k);
      need('w', w, n * k);
      const dst = out ?? new Uint16Array(size);
      need('packed', dst, size);
      if (size > 0) g16().pack(n, k, w, dtype, dst);
      return dst;
    },
    gemm16(m, n, k, a, lda, arows, packed, dtype, bias, c, ldc, accumulate) {
      dtype16(dtype);
      if (!checkGemm(m, n, k, a, lda, arows, packed, packedSize16, bias, c, ldc)) return;
      g16().gemm(m, n, k, a, lda, arows, packed, dtype, bias, c, ldc, accumulate ? 1 : 0);
    },
    gemmMulti(m, k, a, lda, arows, gemms, dtype) {
      if (dtype !== undefined) dtype16(dtype);
      const size = dtype === undefined ? packedSize : packedSize16;
      const live = gemms.filter((g) => checkGemm(m, g.n, k, a, lda, arows, g.packed, size, g.bias, g.c, g.n));
      if (live.length === 0) return;
      const ns = Int32Array.from(live, (g) => g.n);
      const [packed, bias, c] = [live.map((g) => g.packed), live.map((g) => g.bias), live.map((g) => g.c)];
      if (dtype === undefined) {
        // Bound when first called, so that bench/ab.ts can load the primitives of a revision without it.
        multi32 ??= lib.func(
          'void kv_gemm_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, ' +
            'const int *n, const float **packed, const float **bias, float **c, const int *ldc)',
        );
        multi32(live.length, m, k, a, lda, arows, ns, packed, bias, c, ns);
      } else {
        multi16 ??= lib.func(
          'void kv_gemm16_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, ' +
            'const int *n, const uint16_t **packed, int dtype, const float **bias, float **c, const int *ldc)',
        );
        multi16(live.length, m, k, a, lda, arows, ns, packed, dtype, bias, c, ns);
      }
    },
    gemm16Path(dtype) {
      dtype16(dtype);
      return g16().path(dtype);
    },
    attention(nq, nk, heads, kvh, hd, scale, q, kcanvas, vcanvas, qpos, kpos, blocks, o, lse, seqs = null) {
      checkAttention(nq, nk, heads, kvh, hd, q, Math.min(kcanvas.length, vcanvas.length), qpos, kpos, [
        blocks,
        seqs,
      ]);
      if (nq === 0) return;
      need('o', o, nq * heads * hd);
      need('lse', lse, nq * heads);
      f.attention(nq, nk, heads, kvh, hd, scale, q, kcanvas, vcanvas, qpos, kpos, blocks, seqs, o, lse);
    },
    attentionMass(nq, nk, heads, kvh, hd, scale, q, kcanvas, qpos, kpos, blocks, mass) {
      need('mass', mass, nk);
      checkAttention(nq, nk, heads, kvh, hd, q, kcanvas.length, qpos, kpos, [blocks]);
      if (nk > 0) f.attentionMass(nq, nk, heads, kvh, hd, scale, q, kcanvas, qpos, kpos, blocks, null, mass);
    },
    merge(rows, heads, hd, o1, lse1, o2, lse2) {
      for (const [name, x] of [
        ['rows', rows],
        ['heads', heads],
        ['hd', hd],
      ] as const)
        nonNegInt(name, x);
      const pairs = rows * heads;
      need('o1', o1, pairs * hd);
      need('o2', o2, pairs * hd);
      need('lse1', lse1, pairs);
      need('lse2', lse2, pairs);
      if (pairs > 0) f.merge(rows, heads, hd, o1, lse1, o2, lse2);
    },
    rmsnorm(n, d, x, rows, w, eps, out) {
      nonNegInt('n', n);
      nonNegInt('d', d);
      if (n === 0 || d === 0) return;
      if (rows) indices('rows', rows, n, Math.floor(x.length / d));
      else need('x', x, n * d);
      need('w', w, d);
      need('out', out, n * d);
      f.rmsnorm(n, d, x, rows, w, eps, out);
    },
    rope(n, heads, hd, x, pos, theta) {
      for (const [name, v] of [
        ['n', n],
        ['heads', heads],
        ['hd', hd],
      ] as const)
        nonNegInt(name, v);
      if (hd % 2 !== 0) throw new RangeError(`rope needs an even head dimension, got ${hd}`);
      need('x', x, n * heads * hd);
      need('pos', pos, n);
      if (n > 0) f.rope(n, heads, hd, x, pos, theta);
    },
    swiglu(n, gate, up, out) {
      if (!Number.isSafeInteger(n) || n < 0)
        throw new RangeError(`n must be a non-negative integer, got ${n}`);
      need('gate', gate, n);
      need('up', up, n);
      need('out', out, n);
      if (n > 0) f.swiglu(n, gate, up, out);
    },
    embed(n, d, table, dtype, ids, out) {
      nonNegInt('n', n);
      nonNegInt('d', d);
      if (table instanceof Float32Array !== (dtype === 0))
        throw new TypeError(`embed: a ${table.constructor.name} table with dtype ${dtype}`);
      if (n === 0 || d === 0) return;
      indices('ids', ids, n, Math.floor(table.length / d));
      need('out', out, n * d);
      f.embed(n, d, table, dtype, ids, out);
    },
    copyRows(n, width, src, srcRows, dst, dstRows) {
      nonNegInt('n', n);
      nonNegInt('width', width);
      if (n === 0 || width === 0) return;
      if (srcRows) indices('srcRows', srcRows, n, Math.floor(src.length / width));
      else need('src', src, n * width);
      if (dstRows) indices('dstRows', dstRows, n, Math.floor(dst.length / width));
      else need('dst', dst, n * width);
      f.copyRows(n, width, src, srcRows, dst, dstRows);
    },
    rowDrift(n, width, from, to, a, b, out) {
      for (const [name, x] of [
        ['n', n],
        ['width', width],
        ['from', from],
        ['to', to],
      ] as const)
        nonNegInt(name, x);
      if (from > to || to > width)
        throw new RangeError(`columns [${from}, ${to}) are not within a row of ${width}`);
      need('a', a, n * width);
      need('b', b, n * width);
      need('out', out, n);
      if (n > 0) f.rowDrift(n, width, from, to, a, b, out);
    },
    rowsChanged(n, width, a, kept, changed) {
      nonNegInt('n', n);
      nonNegInt('width', width);
      need('a', a, n * width);
      need('kept', kept, n * width);
      need('changed', changed, n);
      return n > 0 && width > 0 ? (f.rowsChanged(n, width, a, kept, changed) as number) : 0;
    },
    softmaxStats(rows, v, logits, exclude, stats, argmax) {
      nonNegInt('rows', rows);
      nonNegInt('v', v);
      if (!Number.isInteger(exclude) || exclude < -1 || exclude >= v)
        throw new RangeError(`exclude must be -1 or a logit index below ${v}, got ${exclude}`);
      need('logits', logits, rows * v);
      need('stats', stats, 3 * rows);
      need('argmax', argmax, rows);
      if (rows > 0 && v > 0) f.softmaxStats(rows, v, logits, exclude, stats, argmax);
    },
  };
  loaded.set(path, p);
  return p;
}

/**
 * Compiles kvplan_cpu.c (through the cache) and loads it. Options go to compileLibrary, e.g.
 * flags to build the AVX2 or portable variant.
 */
export async function loadPrimitives(opts: CompileOptions = {}): Promise<Primitives> {
  return bindPrimitives(compilePrimitives(opts));
}
