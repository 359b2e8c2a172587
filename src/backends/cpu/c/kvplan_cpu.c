/*
 * kvplan CPU primitives (see kvplan_cpu.h for the ABI and docs/cpu-backend.md for the design).
 *
 * C11 + OpenMP. The hot loops are written once over a vector type `kvi_vf` of KV_VL floats (GCC vector
 * extensions) and specialised by the target the compiler sees:
 *   AVX-512  KV_VL = 16, GEMM micro-tile  8 rows x 32 columns (16 zmm accumulators)
 *   AVX2     KV_VL =  8, GEMM micro-tile  6 rows x 16 columns (12 ymm accumulators)
 *   other    KV_VL =  1 (plain float), micro-tile 4 x 4; portable scalar C.
 * The packed weight layout depends on the micro-tile width, so a buffer packed by one build of
 * this library must be used with the same build (kv_packed_size says how large it is).
 */
#include "kvplan_cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define KV_VL 16
#define KV_GEMM_MR 8
#define KV_GEMM_NV 2
#elif defined(__AVX2__)
#define KV_VL 8
#define KV_GEMM_MR 6
#define KV_GEMM_NV 2
#else
#define KV_VL 1
#define KV_GEMM_MR 4
#define KV_GEMM_NV 4
#endif

#define KV_GEMM_NR (KV_GEMM_NV * KV_VL) /* columns of one packed panel / micro-tile */
/* The most rows of a partial last micro-panel that the micro-panel before it takes into its own
   pass (KV_GEMM_MR + 6 rows of 2 vectors are 28 of AVX-512's 32 registers); 0: never. */
#if defined(__AVX512F__)
#define KV_GEMM_MERGE 6
#else
#define KV_GEMM_MERGE 0
#endif
#define KV_GEMM_KC 256            /* k-block: A micro-panel MR x KC stays in L1 */
#define KV_GEMM_MC (KV_GEMM_MR * 8)  /* rows per work unit */
#define KV_GEMM_NC 256            /* columns per work unit (rounded to whole panels) */
/*
 * A GEMM of few rows streams each weight panel from memory once, k-block slice after slice, and
 * the micro-panels of A then read the slice again from cache. The slice after it is prefetched
 * while the current one is computed, spread evenly over all the micro-panels' passes
 * (kvi_prefetch_from, KVI_PREFETCH_STEP): prefetched only by the first pass, 8 KiB ahead, the
 * memory stream stalled while the other passes ran, and at 16-32 rows the weight traffic and the
 * FMAs added up instead of overlapping. The float32 GEMM's hint is non-temporal (prefetchnta): into
 * L2 (prefetcht1), 1-8 rows lost 10-37% and 16 rows their gain (bench/gemm-ab.ts, on the first
 * host), but for rows of two micro-panels it is L2 (see `l2` in kvi_gemm_multi); the 16-bit
 * GEMM's is L2, where nta lost its 3-18% gain. A single micro-panel (1-8 rows, memory-bound) reads
 * the slice once: it prefetches KV_GEMM_PF_ONE bytes ahead of what it reads, as before (one slice
 * ahead read 5-9% slower on one thread). A GEMM of several row units (65 rows and more) prefetches
 * the same way, each unit's passes over a k-block slice fetching the panel's next one: its weights
 * are cold too when a model's layers do not fit in the caches (nta here measured 1.03-1.07x faster
 * than an L2 hint at 65-256 rows).
 */
#define KV_GEMM_PF_ONE 8192
/*
 * Whether the weights a GEMM of few rows streams are prefetched into L2 where the comments below
 * say so (the float32 GEMM's rows of two micro-panels, every 16-bit GEMM), or non-temporally there
 * too. Which is faster depends on the core: on Zen 4 (AMD family 19h) the L2 hint gained 14-19% at
 * 16-17 float32 rows and 3-18% in 16 bits; on Zen 5 (family 1Ah) the non-temporal hint runs 16-20
 * float32 rows 1.00-1.24x (median 1.05) and 16-32 bf16 rows 1.01-1.09x (bench/gemm-ab.ts, 1 and
 * 2 threads, four to seven runs; docs/perf.md). Other cores keep the L2 hint, the one measured
 * first. Read once, when the library loads; a hint changes no value.
 */
static int kvi_l2_streams = 1;
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
__attribute__((constructor)) static void kvi_detect_streams(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return;
  const int amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* "AuthenticAMD" */
  if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return;
  const unsigned family = ((a >> 8) & 0xfu) + (((a >> 8) & 0xfu) == 0xfu ? (a >> 20) & 0xffu : 0u);
  if (family == 0x1a) kvi_l2_streams = 0;
}
#endif
/*
 * Prefetches the `step` bytes of the stream at address pf (at least one line) with locality `hint`
 * (__builtin_prefetch's: 0 non-temporal, 2 into L2), then advances pf.
 * An address, not a pointer: the stream runs past the end of the weights at the last slice, and a
 * prefetch never faults.
 */
/*
 * Where pass `pass` of `passes` (one per micro-panel of A) over a weight slice of `bytes` bytes at
 * `slice`, read in `steps` steps of the micro-kernel's loop, starts prefetching, and in *step the
 * bytes it prefetches a step: an even share of the next slice, or with one pass KV_GEMM_PF_ONE
 * bytes ahead of what it reads.
 */
static inline uintptr_t kvi_prefetch_from(const void *slice, int64_t bytes, int steps, int passes, int pass,
                                          int *step) {
  *step = (int)(bytes / steps / passes);
  if (passes == 1) return (uintptr_t)slice + KV_GEMM_PF_ONE;
  return (uintptr_t)slice + (uintptr_t)bytes + (uintptr_t)pass * steps * *step;
}
#define KVI_PREFETCH_STEP(pf, step, hint)                                                          \
  do {                                                                                             \
    for (int kvi_o = 0; kvi_o < (step); kvi_o += 64) __builtin_prefetch((const void *)((pf) + kvi_o), 0, hint); \
    (pf) += (step);                                                                                \
  } while (0)
/* KVI_PREFETCH_STEP into L2 (l2) or non-temporally: the hint must be a constant. */
#define KVI_PREFETCH_STEP_TO(pf, step, l2)                                                         \
  do {                                                                                             \
    if (l2)                                                                                        \
      KVI_PREFETCH_STEP(pf, step, 2);                                                              \
    else                                                                                           \
      KVI_PREFETCH_STEP(pf, step, 0);                                                              \
  } while (0)
#define KV_GEMM_APACK_KEPT (4 << 20) /* floats: the largest A a kv_gemm thread packs whole (16 MiB) */

#if KV_VL > 1
#include <immintrin.h>
#endif

#if KV_VL > 1
typedef float kvi_vf __attribute__((vector_size(KV_VL * 4)));
typedef int32_t kvi_vi __attribute__((vector_size(KV_VL * 4)));
/* Unaligned, aliasing-safe views for loads and stores. */
typedef float kvi_vfu __attribute__((vector_size(KV_VL * 4), aligned(4), may_alias));
typedef int32_t kvi_viu __attribute__((vector_size(KV_VL * 4), aligned(4), may_alias));

static inline kvi_vf kvi_vload(const float *p) { return *(const kvi_vfu *)p; }
static inline void kvi_vstore(float *p, kvi_vf x) { *(kvi_vfu *)p = x; }
static inline kvi_vf kvi_vsplat(float x) { return (kvi_vf){0} + x; }
static inline kvi_vf kvi_vselect(kvi_vi mask, kvi_vf a, kvi_vf b) { return (kvi_vf)(((kvi_vi)a & mask) | ((kvi_vi)b & ~mask)); }
/* b where either lane is NaN, as vmaxps does (a > b is false for NaN). */
#if KV_VL == 16
static inline kvi_vf kvi_vmax(kvi_vf a, kvi_vf b) { return (kvi_vf)_mm512_max_ps((__m512)a, (__m512)b); }
#else
static inline kvi_vf kvi_vmax(kvi_vf a, kvi_vf b) { return kvi_vselect(a > b, a, b); }
#endif
static inline float kvi_vhsum(kvi_vf x) {
  float s = 0.0f;
  for (int i = 0; i < KV_VL; i++) s += x[i];
  return s;
}
static inline float kvi_vhmax(kvi_vf x) {
  float m = x[0];
  for (int i = 1; i < KV_VL; i++) m = x[i] > m ? x[i] : m;
  return m;
}

/*
 * exp(x) for float lanes, about 1 ulp (Cephes expf): x = n ln2 + r, |r| <= ln2/2, degree-6
 * polynomial, scaled by 2^n through the exponent bits. Lanes below ln(FLT_MIN) (and -inf, NaN)
 * give 0; lanes are clamped above at 88.
 */
static inline kvi_vf kvi_vexp(kvi_vf x) {
  const kvi_vi keep = x >= kvi_vsplat(-87.33654475f);
  x = kvi_vselect(x > kvi_vsplat(88.0f), kvi_vsplat(88.0f), x);
  x = kvi_vselect(keep, x, kvi_vsplat(0.0f));
  const kvi_vf magic = kvi_vsplat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
  const kvi_vf n = (x * 1.44269504088896341f + magic) - magic;
  kvi_vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  kvi_vf y = kvi_vsplat(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const kvi_vi e = (__builtin_convertvector(n, kvi_vi) + 127) << 23;
  y = y * (kvi_vf)e;
  return (kvi_vf)((kvi_vi)y & keep);
}
#else
typedef float kvi_vf;
static inline kvi_vf kvi_vload(const float *p) { return *p; }
static inline void kvi_vstore(float *p, kvi_vf x) { *p = x; }
static inline kvi_vf kvi_vsplat(float x) { return x; }
static inline kvi_vf kvi_vmax(kvi_vf a, kvi_vf b) { return a > b ? a : b; }
static inline float kvi_vhsum(kvi_vf x) { return x; }
static inline float kvi_vhmax(kvi_vf x) { return x; }
static inline kvi_vf kvi_vexp(kvi_vf x) { return x >= -87.33654475f ? expf(x) : 0.0f; } /* -inf, NaN -> 0 */
#endif

/* x in every lane (kvi_vsplat adds to zero, which the compiler must keep for x = -0). */
#if KV_VL == 16
static inline kvi_vf kvi_vbcast(float x) { return (kvi_vf)_mm512_set1_ps(x); }
#elif KV_VL == 8
static inline kvi_vf kvi_vbcast(float x) { return (kvi_vf)_mm256_set1_ps(x); }
#elif KV_VL > 1
static inline kvi_vf kvi_vbcast(float x) {
  kvi_vf v;
  for (int i = 0; i < KV_VL; i++) v[i] = x;
  return v;
}
#else
static inline kvi_vf kvi_vbcast(float x) { return x; }
#endif

/* acc + a * b, as one fused multiply-add where the target has one: -std=c11 turns off GCC's
   contraction of a * b + c, which would otherwise leave the hot loops one multiply and one add. */
#if KV_VL == 16
static inline kvi_vf kvi_vfma(kvi_vf acc, kvi_vf a, kvi_vf b) {
  return (kvi_vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
}
#elif KV_VL == 8 && defined(__FMA__)
static inline kvi_vf kvi_vfma(kvi_vf acc, kvi_vf a, kvi_vf b) {
  return (kvi_vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
}
#else
static inline kvi_vf kvi_vfma(kvi_vf acc, kvi_vf a, kvi_vf b) { return acc + a * b; }
#endif

static inline int kvi_imin(int a, int b) { return a < b ? a : b; }
static inline int64_t kvi_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void *kvi_aligned_buffer(size_t floats) {
  size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
  return aligned_alloc(64, bytes ? bytes : 64);
}

/*
 * A buffer of at least `floats` floats that the calling thread keeps from call to call (grown,
 * never shrunk): allocated afresh on every call, a buffer of megabytes comes back from the kernel
 * as new zeroed pages each time, and the page faults cost as much as the packing they serve (on a
 * virtual machine, about 10 us a page: a probe's 800 KB of transposed keys took 2-5 ms to fault in,
 * ten times its arithmetic). One buffer per thread: a primitive holds it for the duration of a
 * call and calls no other primitive that takes it. NULL when it cannot be allocated.
 */
static float *kvi_thread_buffer(size_t floats) {
  static _Thread_local float *buffer;
  static _Thread_local size_t capacity;
  if (floats > capacity) {
    free(buffer);
    buffer = kvi_aligned_buffer(floats);
    capacity = buffer ? floats : 0;
  }
  return buffer;
}
/* Floats rounded up to whole cache lines. */
static inline size_t kvi_lines(size_t floats) { return (floats + 15) / 16 * 16; }
/* The offset of the next piece of n floats of a buffer laid out in line-aligned pieces. */
static inline size_t kvi_piece(size_t *end, size_t n) {
  const size_t at = *end;
  *end += kvi_lines(n);
  return at;
}

/*
 * Fault injection, for the mutation test only (src/backends/fault.ts): a translation unit that
 * defines KV_FAULT_<PRIMITIVE> to a factor gets that primitive's outputs multiplied by it, so that
 * `kvplan verify` can be shown to fail. The generated unit defines one only when the fault is
 * armed; the primitives compiled on their own never do.
 */
#define KVI_FAULT(factor, x, rows, width, ld)                                                      \
  for (int64_t kvi_r = 0; kvi_r < (int64_t)(rows); kvi_r++)                                         \
    for (int64_t kvi_c = 0; kvi_c < (int64_t)(width); kvi_c++) (x)[kvi_r * (int64_t)(ld) + kvi_c] *= (factor)

/* ---------------------------------------------------------------------------------------------
 * Threads
 */

void kv_set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
#else
  (void)n;
#endif
}

int kv_get_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

#ifdef _OPENMP
#define KV_PAR_MIN_WORK 65536.0 /* below this many flops a primitive runs on one thread */
#define KV_COPY_PAR_FLOATS 65536.0 /* below this many floats kv_copy_rows runs on one thread */
#endif

/* ---------------------------------------------------------------------------------------------
 * GEMM
 *
 * Packed weight: panels of KV_GEMM_NR output columns (the last one zero-padded), each stored
 * k-major: packed[p][kk][jr] = W[p * NR + jr][kk]. A k-block of a panel is then one contiguous
 * [kc][NR] slice. A is packed per work unit into micro-panels [kc][MR] (rows gathered through
 * arows, zero-padded), so the micro-kernel reads both operands sequentially: per kk it loads
 * NV vectors of W and broadcasts MR scalars of A into MR x NV FMAs on register accumulators.
 */

int64_t kv_packed_size(int n, int k) {
  if (n <= 0 || k <= 0) return 0;
  return kvi_ceil_div(n, KV_GEMM_NR) * KV_GEMM_NR * (int64_t)k;
}

void kv_pack_weight(int n, int k, const float *w, float *packed) {
  if (n <= 0 || k <= 0) return;
  const int64_t panels = kvi_ceil_div(n, KV_GEMM_NR);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)n * k > KV_PAR_MIN_WORK)
#endif
  for (int64_t p = 0; p < panels; p++) {
    float *dst = packed + p * KV_GEMM_NR * (int64_t)k;
    const int j0 = (int)(p * KV_GEMM_NR);
    const int nr = kvi_imin(KV_GEMM_NR, n - j0);
    for (int jr = 0; jr < KV_GEMM_NR; jr++) {
      if (jr < nr) {
        const float *src = w + (int64_t)(j0 + jr) * k;
        for (int kk = 0; kk < k; kk++) dst[(int64_t)kk * KV_GEMM_NR + jr] = src[kk];
      } else {
        for (int kk = 0; kk < k; kk++) dst[(int64_t)kk * KV_GEMM_NR + jr] = 0.0f;
      }
    }
  }
}

/*
 * The micro-kernel: acc[rows][NR] = sum_kk ap[kk][:rows] (x) bp[kk][:], then c = acc (add == 0) or
 * c += acc (add != 0) for the rows x NR tile at c (row stride ldc); rows <= MR, a constant where it
 * is inlined. With pf, pfstep bytes of the stream at pf are prefetched per kk (the compiler
 * unswitches the loop on it).
 */
static inline __attribute__((always_inline)) void kvi_micro_kernel(int rows, int kc, const float *restrict ap,
                                                              const float *restrict bp, float *c,
                                                              int64_t ldc, int add, uintptr_t pf,
                                                              int pfstep, int l2) {
  kvi_vf acc[KV_GEMM_MR][KV_GEMM_NV];
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < KV_GEMM_NV; v++) acc[r][v] = kvi_vsplat(0.0f);
  for (int kk = 0; kk < kc; kk++) {
    kvi_vf b[KV_GEMM_NV];
    for (int v = 0; v < KV_GEMM_NV; v++) b[v] = kvi_vload(bp + v * KV_VL);
    if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
    for (int r = 0; r < rows; r++) {
      const float a = ap[r];
      for (int v = 0; v < KV_GEMM_NV; v++) acc[r][v] = kvi_vfma(acc[r][v], kvi_vbcast(a), b[v]);
    }
    ap += KV_GEMM_MR;
    bp += KV_GEMM_NR;
  }
  if (add) {
    for (int r = 0; r < rows; r++)
      for (int v = 0; v < KV_GEMM_NV; v++) kvi_vstore(c + r * ldc + v * KV_VL, kvi_vload(c + r * ldc + v * KV_VL) + acc[r][v]);
  } else {
    for (int r = 0; r < rows; r++)
      for (int v = 0; v < KV_GEMM_NV; v++) kvi_vstore(c + r * ldc + v * KV_VL, acc[r][v]);
  }
}

static void kvi_micro_store(int kc, const float *ap, const float *bp, float *c, int64_t ldc, uintptr_t pf,
                            int pfstep, int l2) {
  kvi_micro_kernel(KV_GEMM_MR, kc, ap, bp, c, ldc, 0, pf, pfstep, l2);
}
static void kvi_micro_add(int kc, const float *ap, const float *bp, float *c, int64_t ldc, uintptr_t pf,
                          int pfstep, int l2) {
  kvi_micro_kernel(KV_GEMM_MR, kc, ap, bp, c, ldc, 1, pf, pfstep, l2);
}
/*
 * The first mr rows of a micro-tile into tile (row stride NR). A partial micro-panel multiplies
 * only its rows, not its zero padding (17 rows cost 24 before), with the same FMAs per row as a
 * full one, so a row's result does not depend on m.
 */
static void kvi_micro_rows(int mr, int kc, const float *ap, const float *bp, float *tile, uintptr_t pf, int pfstep,
                           int l2) {
  switch (mr) {
#define KVI_ROWS(r)                                                                                \
  case r:                                                                                          \
    kvi_micro_kernel(r, kc, ap, bp, tile, KV_GEMM_NR, 0, pf, pfstep, l2);                          \
    break;
    KVI_ROWS(1)
    KVI_ROWS(2)
    KVI_ROWS(3)
#if KV_GEMM_MR > 5
    KVI_ROWS(4)
    KVI_ROWS(5)
#endif
#if KV_GEMM_MR > 7
    KVI_ROWS(6)
    KVI_ROWS(7)
#endif
#undef KVI_ROWS
  default:
    kvi_micro_kernel(KV_GEMM_MR, kc, ap, bp, tile, KV_GEMM_NR, 0, pf, pfstep, l2);
  }
}

#if KV_GEMM_MERGE > 0
/*
 * A full micro-panel ap and the first rows2 rows of the partial one after it (ap2) in one pass over
 * the weight slice: the full rows go to c as kvi_micro_kernel writes them, the partial rows into
 * tile (row stride NR). At 17 rows the third pass, for one row, read the whole slice again from L2
 * for a 32% longer GEMM than at 16. Every row gets the same FMAs in the same order as on its own.
 */
static inline __attribute__((always_inline)) void kvi_micro_merged_kernel(int rows2, int kc, const float *restrict ap,
                                                                     const float *restrict ap2,
                                                                     const float *restrict bp, float *c, int64_t ldc,
                                                                     int add, float *tile, uintptr_t pf, int pfstep,
                                                                     int l2) {
  kvi_vf acc[KV_GEMM_MR][KV_GEMM_NV];
  kvi_vf acc2[KV_GEMM_MERGE][KV_GEMM_NV];
  for (int r = 0; r < KV_GEMM_MR; r++)
    for (int v = 0; v < KV_GEMM_NV; v++) acc[r][v] = kvi_vsplat(0.0f);
  for (int r = 0; r < rows2; r++)
    for (int v = 0; v < KV_GEMM_NV; v++) acc2[r][v] = kvi_vsplat(0.0f);
  for (int kk = 0; kk < kc; kk++) {
    kvi_vf b[KV_GEMM_NV];
    for (int v = 0; v < KV_GEMM_NV; v++) b[v] = kvi_vload(bp + v * KV_VL);
    if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
    for (int r = 0; r < KV_GEMM_MR; r++) {
      const float a = ap[r];
      for (int v = 0; v < KV_GEMM_NV; v++) acc[r][v] = kvi_vfma(acc[r][v], kvi_vbcast(a), b[v]);
    }
    for (int r = 0; r < rows2; r++) {
      const float a = ap2[r];
      for (int v = 0; v < KV_GEMM_NV; v++) acc2[r][v] = kvi_vfma(acc2[r][v], kvi_vbcast(a), b[v]);
    }
    ap += KV_GEMM_MR;
    ap2 += KV_GEMM_MR;
    bp += KV_GEMM_NR;
  }
  for (int r = 0; r < KV_GEMM_MR; r++)
    for (int v = 0; v < KV_GEMM_NV; v++)
      kvi_vstore(c + r * ldc + v * KV_VL, add ? kvi_vload(c + r * ldc + v * KV_VL) + acc[r][v] : acc[r][v]);
  for (int r = 0; r < rows2; r++)
    for (int v = 0; v < KV_GEMM_NV; v++) kvi_vstore(tile + r * KV_GEMM_NR + v * KV_VL, acc2[r][v]);
}

static void kvi_micro_merged(int rows2, int kc, const float *ap, const float *ap2, const float *bp, float *c,
                             int64_t ldc, int add, float *tile, uintptr_t pf, int pfstep, int l2) {
  switch (rows2) {
#define KVI_MERGED(r)                                                                              \
  case r:                                                                                          \
    kvi_micro_merged_kernel(r, kc, ap, ap2, bp, c, ldc, add, tile, pf, pfstep, l2);                \
    break;
    KVI_MERGED(1)
    KVI_MERGED(2)
    KVI_MERGED(3)
    KVI_MERGED(4)
    KVI_MERGED(5)
    KVI_MERGED(6)
#undef KVI_MERGED
  }
}
#endif

/*
 * Packs rows [i0, i0 + mc) x columns [k0, k0 + kc) of A into micro-panels [kc][MR], one every
 * `stride` floats of dst.
 */
static void kvi_pack_a(int mc, int kc, const float *a, int64_t lda, const int32_t *arows, int i0, int k0,
                       float *dst, int64_t stride) {
  for (int ir = 0; ir < mc; ir += KV_GEMM_MR) {
    const int mr = kvi_imin(KV_GEMM_MR, mc - ir);
    const float *src[KV_GEMM_MR];
    for (int r = 0; r < mr; r++) {
      const int i = i0 + ir + r;
      src[r] = a + (int64_t)(arows ? arows[i] : i) * lda + k0;
    }
    if (mr == KV_GEMM_MR) {
      /* a micro-panel row (MR floats) per kk: contiguous stores, MR load streams */
      for (int kk = 0; kk < kc; kk++)
        for (int r = 0; r < KV_GEMM_MR; r++) dst[kk * KV_GEMM_MR + r] = src[r][kk];
    } else {
      for (int kk = 0; kk < kc; kk++)
        for (int r = 0; r < KV_GEMM_MR; r++) dst[kk * KV_GEMM_MR + r] = r < mr ? src[r][kk] : 0.0f;
    }
    dst += stride;
  }
}

/* The most GEMMs one parallel region runs (a layer has three of one input); more are run in turns. */
#define KVI_MULTI_MAX 8

/*
 * The work units of `count` GEMMs of one A over row_units row units: GEMM g's are [first[g],
 * first[g + 1]), row_units for each of its column blocks of nc_panels panels of nr columns.
 * `first` has count + 1 elements; returns the multiply-adds of all of them (m x n x k each).
 */
static double kvi_multi_units(int count, const int *ns, int nr, int nc_panels, int row_units, int m, int k,
                              int *first) {
  double flops = 0.0;
  first[0] = 0;
  for (int g = 0; g < count; g++) {
    const int panels = ns[g] > 0 ? (int)kvi_ceil_div(ns[g], nr) : 0;
    first[g + 1] = first[g] + row_units * (int)kvi_ceil_div(panels, nc_panels);
    flops += (double)m * (ns[g] > 0 ? ns[g] : 0) * k;
  }
  return flops;
}

/*
 * The rows of the work units of a GEMM of m rows (micro-panels of mr rows, row units of at most
 * mc). With one band, row unit ru is rows [ru mc, (ru + 1) mc), and a GEMM's units run column block
 * after column block, so that a thread's consecutive units share a column block of weights (warm in
 * L2 when they come from memory: a cached step's few rows, one row unit). With several bands (one a
 * thread, when each has at least KV_GEMM_BAND_ROWS rows), the micro-panels are split into `bands`
 * equal ranges of `per_band` row units each, and the units run band after band, so that the static
 * schedule gives each thread the rows of one band and every column block of them. Split by column
 * block instead, each of two threads packed the whole of A and used it for half of the columns:
 * bands ran 1.07-1.11x at 512-1280 rows and 1.02x at 256 on two threads (a C harness, weights from
 * memory; docs/perf.md), and 128-192 rows within the noise, so the split starts at 128 rows a band.
 * A band's units still run column block after column block. Which rows a unit takes changes no
 * value: each element is the same sum of k-blocks either way.
 */
#ifndef KV_GEMM_BAND_ROWS
#define KV_GEMM_BAND_ROWS 128
#endif
/*
 * The most micro-panels of a float32 GEMM of one band that one row unit takes (256 rows of 8), when
 * its column blocks alone keep the threads evenly busy (as many a thread, or at least four). Rows of
 * 9-32 micro-panels were cut into row units of mc rows, and each unit streamed the column block's
 * weights from memory again; one unit streams each panel once over all of k (whole mode, below).
 * On Zen 5 (a C harness, weights from memory, both builds alternating in one process; docs/perf.md):
 * 72-250 rows 1.01-1.14x on two threads, 1.00-1.09x on one. Not for rows in several bands (256-512
 * rows read 0.95-1.06x with one unit a band), nor for the 16-bit GEMM, which packs each row unit's
 * A whole already (bf16 at 64-250 rows: 0.96-1.01x).
 */
#ifndef KV_GEMM_ONE_UNIT_PANELS
#define KV_GEMM_ONE_UNIT_PANELS 32
#endif
/* On one thread (no bands, A packed once whatever the unit), up to 64 micro-panels: 300-512 rows
   ran 1.00-1.085x (C harness, the policies and peer models' projections, Zen 5). */
#ifndef KV_GEMM_ONE_UNIT_PANELS_ALONE
#define KV_GEMM_ONE_UNIT_PANELS_ALONE 64
#endif
typedef struct {
  int m, mr, mc, bands, per_band;
} kvi_rows;

/* col_units: the GEMMs' column blocks (their work units at one row unit); one_unit: whether few
   enough rows are taken as one row unit (KV_GEMM_ONE_UNIT_PANELS, on one thread _ALONE). */
static kvi_rows kvi_row_split(int m, int mr, int mc, double flops, int col_units, int one_unit) {
#ifdef _OPENMP
  const int threads = kv_get_threads();
  const int bands = threads > 1 && flops > KV_PAR_MIN_WORK && m >= (int64_t)threads * KV_GEMM_BAND_ROWS ? threads : 1;
#else
  const int threads = 1, bands = 1;
  (void)flops;
#endif
  const int64_t micro = kvi_ceil_div(m, mr);
  const int most = !one_unit ? 0 : threads == 1 ? KV_GEMM_ONE_UNIT_PANELS_ALONE : KV_GEMM_ONE_UNIT_PANELS;
  if (bands == 1 && micro <= most && (col_units % threads == 0 || col_units >= 4 * threads))
    mc = (int)micro * mr;
  /* a band's rows: at most ceil(micro / bands) micro-panels */
  const int64_t rows = kvi_ceil_div(micro, bands) * mr;
  return (kvi_rows){m, mr, mc, bands, (int)kvi_ceil_div(rows < m ? rows : m, mc)};
}

/*
 * Unit u's GEMM *g and column block *cu, of the `count` GEMMs whose units `first` holds (over
 * bands * per_band row units), and its rows [*i0, *i0 + *mc) of row unit *ru (*mc <= 0: a unit past
 * the rows of a shorter band). Band b holds the b-th share of every GEMM's units.
 */
static inline void kvi_unit_at(const kvi_rows *r, const int *first, int count, int u, int *g, int *cu, int *ru,
                               int *i0, int *mc) {
  const int size = first[count] / r->bands; /* units a band */
  const int band = u / size, w = u % size;
  int gg = 0;
  while (w >= first[gg + 1] / r->bands) gg++;
  const int local = w - first[gg] / r->bands, j = local % r->per_band;
  *g = gg;
  *cu = local / r->per_band;
  *ru = band * r->per_band + j;
  const int64_t micro = kvi_ceil_div(r->m, r->mr);
  const int lo = (int)(micro * band / r->bands) * r->mr;
  const int hi = kvi_imin(r->m, (int)(micro * (band + 1) / r->bands) * r->mr);
  *i0 = lo + j * r->mc;
  *mc = kvi_imin(r->mc, hi - *i0);
}

/* The output of `count` GEMMs when k <= 0: (accumulate ? C : 0) + bias. */
static void kvi_multi_empty(int count, int m, const int *ns, const float *const *biases, float *const *cs,
                            const int *ldcs, int accumulate) {
  for (int g = 0; g < count; g++)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < ns[g]; j++) {
        float *cij = cs[g] + (int64_t)i * ldcs[g] + j;
        *cij = (accumulate ? *cij : 0.0f) + (biases[g] ? biases[g][j] : 0.0f);
      }
}

/*
 * `count` GEMMs of one A (m x k, rows arows) against their own packed weights, into their own C:
 * GEMM g is kv_gemm(m, n[g], k, a, lda, arows, packed[g], bias[g], c[g], ldc[g], accumulate). One
 * parallel region runs the work units of all of them, and each thread packs A once for all: the
 * q, k and v projections of a layer (or gate and up) as three calls forked three times and packed
 * A three times, 12-18% slower at 160-512 rows (docs/cpu-backend.md). Every element is the same
 * sum as kv_gemm's.
 */
static void kvi_gemm_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *ns,
                           const float *const *packs, const float *const *biases, float *const *cs, const int *ldcs,
                           int accumulate) {
  if (m <= 0 || count <= 0) return;
  if (count > KVI_MULTI_MAX) {
    kvi_gemm_multi(KVI_MULTI_MAX, m, k, a, lda, arows, ns, packs, biases, cs, ldcs, accumulate);
    kvi_gemm_multi(count - KVI_MULTI_MAX, m, k, a, lda, arows, ns + KVI_MULTI_MAX, packs + KVI_MULTI_MAX,
                   biases + KVI_MULTI_MAX, cs + KVI_MULTI_MAX, ldcs + KVI_MULTI_MAX, accumulate);
    return;
  }
  if (k <= 0) {
    kvi_multi_empty(count, m, ns, biases, cs, ldcs, accumulate);
    return;
  }
  const int nc_panels = KV_GEMM_NC / KV_GEMM_NR > 0 ? KV_GEMM_NC / KV_GEMM_NR : 1;
  int first[KVI_MULTI_MAX + 1];
  const double flops = kvi_multi_units(count, ns, KV_GEMM_NR, nc_panels, 1, m, k, first);
  const kvi_rows split = kvi_row_split(m, KV_GEMM_MR, KV_GEMM_MC, flops, first[count], 1);
  const int row_units = split.bands * split.per_band;
  kvi_multi_units(count, ns, KV_GEMM_NR, nc_panels, row_units, m, k, first);
  const int units = first[count];
  const int64_t panel_stride = (int64_t)KV_GEMM_NR * k;
  /* A thread packs the rows of A it multiplies once, over all of k, and keeps them for all its
     column blocks, when A is not too large: packed per work unit instead, the same rows would be
     packed again for every column block (6 times for a 512 -> 1536 projection; 8% of a no-cache
     step went to packing). Each thread keeps its own copy (rows packed by the other core would be
     read from its cache). Micro-panel i holds rows [i MR, (i + 1) MR) over all of k, [k][MR]. */
  const int64_t mpad = kvi_ceil_div(m, KV_GEMM_MR) * KV_GEMM_MR;
  const int keep = mpad * k <= KV_GEMM_APACK_KEPT;
  /* One row unit (few rows, a cached step): each weight panel is streamed from memory start to
     end, k-block after k-block, instead of a k-block of every panel of the unit in turn. The
     k-blocks are added in the same order, so every element is the same sum as on the general path
     (a row's result does not depend on m). */
  const int whole = keep && row_units == 1 && k > KV_GEMM_KC;
#ifdef _OPENMP
#pragma omp parallel if (flops > KV_PAR_MIN_WORK && units > 1)
#endif
  {
    float *apack = keep ? kvi_thread_buffer((size_t)(mpad * k)) : kvi_aligned_buffer((size_t)split.mc * KV_GEMM_KC);
    char *kept = keep ? calloc((size_t)row_units, 1) : NULL; /* row units already in apack */
    float tile[KV_GEMM_MR * KV_GEMM_NR];
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int u = 0; u < units; u++) {
      int g, cu, ru, i0, mc;
      kvi_unit_at(&split, first, count, u, &g, &cu, &ru, &i0, &mc);
      if (mc <= 0) continue;
      const int n = ns[g], ldc = ldcs[g];
      const float *packed = packs[g], *bias = biases[g];
      float *c = cs[g];
      /* c starts as (accumulate ? c : 0) + bias; the k-blocks are then added to it. */
      const int first_adds = accumulate || bias != NULL;
      const int panels = (int)kvi_ceil_div(n, KV_GEMM_NR);
      const int p0 = cu * nc_panels;
      const int p1 = kvi_imin(panels, p0 + nc_panels);
      if (bias) {
        const int j0 = p0 * KV_GEMM_NR;
        const int j1 = kvi_imin(n, p1 * KV_GEMM_NR);
        for (int i = i0; i < i0 + mc; i++) {
          float *crow = c + (int64_t)i * ldc;
          for (int j = j0; j < j1; j++) crow[j] = (accumulate ? crow[j] : 0.0f) + bias[j];
        }
      }
      /* Kept rows are packed k-block by k-block when first used, so that each block is still in
         cache for the micro-kernels that read it. */
      const int pack = !keep || !kept[ru];
      /* Panels [q0, q1) per k-block: one at a time when A is whole, else the unit's all at once. */
      for (int q0 = p0, q1 = whole ? p0 + 1 : p1; q0 < p1; q0 = q1, q1 = whole ? q1 + 1 : p1)
        for (int k0 = 0; k0 < k; k0 += KV_GEMM_KC) {
          const int kc = kvi_imin(KV_GEMM_KC, k - k0);
          const int add = first_adds || k0 > 0;
          if (pack && q0 == p0) {
            if (keep)
              kvi_pack_a(mc, kc, a, lda, arows, i0, k0, apack + (int64_t)i0 * k + (int64_t)k0 * KV_GEMM_MR,
                         (int64_t)k * KV_GEMM_MR);
            else
              kvi_pack_a(mc, kc, a, lda, arows, i0, k0, apack, (int64_t)kc * KV_GEMM_MR);
          }
          /* A partial last micro-panel of at most KV_GEMM_MERGE rows rides on the pass of the one
             before it, on every whole column panel. */
          const int tail = mc % KV_GEMM_MR;
          const int merge = KV_GEMM_MERGE > 0 && tail > 0 && tail <= KV_GEMM_MERGE && mc > KV_GEMM_MR;
          const int passes = (int)(kvi_ceil_div(mc, KV_GEMM_MR) - merge);
          /* The next slice into L2, not non-temporally, for one or two passes over rows of more than
             one micro-panel (9-22 rows, a cached step's window and the row decoded last). Why is
             not established: 9-14 rows read each slice once (the rider rides on the pass) and
             gained the most. `npx tsx bench/gemm-ab.ts HEAD --rows 1,8,9,16,17,20,24,33` on the
             Zen 4 VM: 9 rows 1.19-1.40x, 16-17 rows 1.14-1.19x, 20 rows 1.07-1.09x at one and two
             threads; 1, 8, 24 and 33 rows 0.99-1.03x (three passes and more lost 3-7% in a C
             harness). */
          const int l2 = kvi_l2_streams && mc > KV_GEMM_MR && passes <= 2;
          for (int ir = 0; ir < mc; ir += KV_GEMM_MR) {
            const int mr = kvi_imin(KV_GEMM_MR, mc - ir);
            const float *ap =
                keep ? apack + (int64_t)(i0 + ir) * k + (int64_t)k0 * KV_GEMM_MR : apack + (int64_t)ir * kc;
            const int rider = merge && ir + KV_GEMM_MR >= mc;
            for (int p = q0; p < q1; p++) {
              const float *bp = packed + p * panel_stride + (int64_t)k0 * KV_GEMM_NR;
              const int j0 = p * KV_GEMM_NR;
              const int nr = kvi_imin(KV_GEMM_NR, n - j0);
              if (rider && nr == KV_GEMM_NR) continue; /* done in its host's pass */
              float *ct = c + (int64_t)(i0 + ir) * ldc + j0;
              /* The micro-panels' passes prefetch the panel's next k-block slice (a rider left to
                 itself, on a partial column panel, does not): in whole mode the weights are
                 streamed, and with several row units the first pass over each slice read it from
                 memory while the FMAs waited (65-512 rows gained 1.02-1.16x, bench/gemm-ab.ts). */
              int pfstep = 0;
              const uintptr_t pf = !rider ? kvi_prefetch_from(bp, (int64_t)kc * KV_GEMM_NR * 4, kc, passes,
                                                                       ir / KV_GEMM_MR, &pfstep)
                                                   : 0;
#if KV_GEMM_MERGE > 0
              /* the host: the micro-panel just before the rider */
              if (merge && !rider && ir + 2 * KV_GEMM_MR > mc && nr == KV_GEMM_NR) {
                const float *ap2 = ap + (keep ? (int64_t)KV_GEMM_MR * k : (int64_t)KV_GEMM_MR * kc);
                float *ct2 = ct + (int64_t)KV_GEMM_MR * ldc;
                kvi_micro_merged(tail, kc, ap, ap2, bp, ct, ldc, add, tile, pf, pfstep, l2);
                for (int r = 0; r < tail; r++)
                  for (int j = 0; j < KV_GEMM_NR; j++)
                    ct2[(int64_t)r * ldc + j] = (add ? ct2[(int64_t)r * ldc + j] : 0.0f) + tile[r * KV_GEMM_NR + j];
                continue;
              }
#endif
              if (mr == KV_GEMM_MR && nr == KV_GEMM_NR) {
                if (add)
                  kvi_micro_add(kc, ap, bp, ct, ldc, pf, pfstep, l2);
                else
                  kvi_micro_store(kc, ap, bp, ct, ldc, pf, pfstep, l2);
              } else {
                kvi_micro_rows(mr, kc, ap, bp, tile, pf, pfstep, l2);
                for (int r = 0; r < mr; r++)
                  for (int j = 0; j < nr; j++)
                    ct[(int64_t)r * ldc + j] = (add ? ct[(int64_t)r * ldc + j] : 0.0f) + tile[r * KV_GEMM_NR + j];
              }
            }
          }
        }
      if (keep) kept[ru] = 1;
    }
    if (!keep) free(apack);
    free(kept);
  }
#ifdef KV_FAULT_GEMM
  for (int g = 0; g < count; g++) KVI_FAULT(KV_FAULT_GEMM, cs[g], m, ns[g], ldcs[g]);
#endif
}

void kv_gemm(int m, int n, int k, const float *a, int lda, const int32_t *arows, const float *packed,
             const float *bias, float *c, int ldc, int accumulate) {
  if (n <= 0) return;
  kvi_gemm_multi(1, m, k, a, lda, arows, &n, &packed, &bias, &c, &ldc, accumulate);
}

void kv_gemm_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *n,
                   const float *const *packed, const float *const *bias, float *const *c, const int *ldc) {
  kvi_gemm_multi(count, m, k, a, lda, arows, n, packed, bias, c, ldc, 0);
}

/* ---------------------------------------------------------------------------------------------
 * GEMM with 16-bit weights (kv_gemm16)
 *
 * The packed weight keeps 2 bytes per element: a step that computes few rows is bound by weight
 * traffic, which this halves. Activations, accumulators, bias and C stay float32. Panels of
 * KV_G16_NR columns (the last zero-padded) over k rounded up to even (the pad row is zero):
 *   bf16: k-pair interleaved, packed[p][kk/2][jr][kk%2] = W[p*NR + jr][kk]. A 32-bit lane holds
 *         (W[j][kk], W[j][kk+1]); `lane << 16` and `lane & 0xffff0000` are the two weights as
 *         exact float32 (a bf16 is the top half of a float32), and the same lane is the bf16
 *         pair that vdpbf16ps multiplies.
 *   f16:  k-major like the float32 panels, packed[p][kk][jr] = W[p*NR + jr][kk], widened exactly
 *         by vcvtph2ps (AVX-512F, F16C) or in C.
 * KV_BF16 and KV_F16: the micro-kernel (MR x NR tile of kv_gemm) widens the weights in registers
 * and issues float32 FMAs, so the result is the float32 GEMM of the activations with the exact
 * weights. KV_BF16_DOT: the activations are rounded to bf16 (to nearest even) when A is packed, so
 * every product is exact and only the float32 accumulation rounds; with AVX512_BF16 the
 * micro-kernel is vdpbf16ps (two products per lane and instruction, subnormal inputs and results
 * flushed to zero), elsewhere the FMA kernel on the rounded activations.
 *
 * Blocking: units of MC rows x NC columns as in kv_gemm. When a row block packed over all of k
 * fits in KV_G16_APACK floats (always, for the few rows of a cached step), a thread packs a row
 * block when it first needs it and keeps it for its later units of the same rows (every row block,
 * when all of A fits, else the last one), and walks each panel along the whole of k, so the
 * weights stream from memory contiguously; otherwise A is packed per k-block as in kv_gemm. Both
 * orders add the k-blocks of a tile in the same order, so the results do not depend on the order
 * or on the thread count.
 */
#ifndef KV_G16_MR
#define KV_G16_MR KV_GEMM_MR
#endif
#ifndef KV_G16_NV
#define KV_G16_NV KV_GEMM_NV
#endif
#define KV_G16_NR (KV_G16_NV * KV_VL)
#define KV_G16_MC (KV_G16_MR * 8)
#ifndef KV_G16_APACK
#define KV_G16_APACK (4 << 20) /* floats (16 MiB): the largest A block packed over all of k */
#endif
#if KV_VL == 16 && defined(__AVX512BF16__)
#define KV_G16_DOT 1 /* KV_BF16_DOT runs on vdpbf16ps */
#else
#define KV_G16_DOT 0
#endif

/* Packing of A: float32 as given, float32 rounded to bf16, or bf16 pairs for vdpbf16ps. */
enum { KVI_A_F32, KVI_A_ROUND, KVI_A_PAIRS };

static inline float kvi_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline float kvi_bf16_f32(uint16_t h) { return kvi_bits_f32((uint32_t)h << 16); }

/* IEEE binary16 -> float32, exact (subnormals, infinities and NaN payloads included). */
static inline float kvi_f16_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (e == 0) {
    const float f = (float)mant * 0x1p-24f; /* zero or subnormal: exact in float32 */
    memcpy(&u, &f, sizeof u);
  } else if (e == 31) {
    u = 0x7f800000u | (mant << 13);
  } else {
    u = ((e + 112u) << 23) | (mant << 13);
  }
  return kvi_bits_f32(u | sign);
}

/* float32 -> bf16 bits, rounded to nearest even (overflow to infinity; NaN stays NaN). */
static inline uint32_t kvi_f32_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

int64_t kv_packed_size16(int n, int k) {
  if (n <= 0 || k <= 0) return 0;
  return kvi_ceil_div(n, KV_G16_NR) * KV_G16_NR * (((int64_t)k + 1) / 2 * 2);
}

void kv_pack_weight16(int n, int k, const uint16_t *w, int dtype, uint16_t *packed) {
  if (n <= 0 || k <= 0 || dtype < KV_BF16 || dtype > KV_BF16_DOT) return;
  const int pairs = dtype != KV_F16;
  const int64_t panels = kvi_ceil_div(n, KV_G16_NR);
  const int64_t kp = ((int64_t)k + 1) / 2 * 2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)n * k > KV_PAR_MIN_WORK)
#endif
  for (int64_t p = 0; p < panels; p++) {
    uint16_t *dst = packed + p * KV_G16_NR * kp;
    const int j0 = (int)(p * KV_G16_NR);
    const int nr = kvi_imin(KV_G16_NR, n - j0);
    for (int jr = 0; jr < KV_G16_NR; jr++) {
      const uint16_t *src = jr < nr ? w + (int64_t)(j0 + jr) * k : NULL;
      if (pairs) {
        for (int64_t kk = 0; kk < kp; kk++)
          dst[(kk >> 1) * 2 * KV_G16_NR + 2 * jr + (kk & 1)] = src && kk < k ? src[kk] : 0;
      } else {
        for (int64_t kk = 0; kk < kp; kk++) dst[kk * KV_G16_NR + jr] = src && kk < k ? src[kk] : 0;
      }
    }
  }
}

const char *kv_gemm16_path(int dtype) {
#if KV_VL == 16
#define KVI_G16_TARGET "avx512"
#elif KV_VL == 8
#define KVI_G16_TARGET "avx2"
#else
#define KVI_G16_TARGET "portable"
#endif
#if KV_VL == 16 || (KV_VL == 8 && defined(__F16C__))
#define KVI_G16_F16 "vcvtph2ps"
#else
#define KVI_G16_F16 "c-convert"
#endif
#if KV_VL == 16 || (KV_VL == 8 && defined(__FMA__))
#define KVI_G16_FMA "fma"
#else
#define KVI_G16_FMA "mul-add"
#endif
  switch (dtype) {
  case KV_BF16:
    return KVI_G16_TARGET " bf16: shift, " KVI_G16_FMA;
  case KV_F16:
    return KVI_G16_TARGET " f16: " KVI_G16_F16 ", " KVI_G16_FMA;
  case KV_BF16_DOT:
#if KV_G16_DOT
    return KVI_G16_TARGET " bf16 dot: vdpbf16ps";
#else
    return KVI_G16_TARGET " bf16 dot: rounded activations, shift, " KVI_G16_FMA;
#endif
  default:
    return "";
  }
#undef KVI_G16_TARGET
#undef KVI_G16_F16
#undef KVI_G16_FMA
}

/* KV_VL f16 weights at p, as floats. */
#if KV_VL == 16
static inline kvi_vf kvi_vload_f16(const uint16_t *p) {
  return (kvi_vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
#elif KV_VL == 8 && defined(__F16C__)
static inline kvi_vf kvi_vload_f16(const uint16_t *p) {
  return (kvi_vf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
#elif KV_VL > 1
static inline kvi_vf kvi_vload_f16(const uint16_t *p) {
  kvi_vf x;
  for (int i = 0; i < KV_VL; i++) x[i] = kvi_f16_f32(p[i]);
  return x;
}
#else
static inline kvi_vf kvi_vload_f16(const uint16_t *p) { return kvi_f16_f32(*p); }
#endif

/* KV_VL bf16 pairs at p (lane i: p[2i], p[2i+1]), as the floats of the even and the odd halves. */
#if KV_VL > 1
typedef uint32_t kvi_vu __attribute__((vector_size(KV_VL * 4)));
typedef uint32_t kvi_vuu __attribute__((vector_size(KV_VL * 4), aligned(2), may_alias));
static inline void kvi_vload_bf16x2(const uint16_t *p, kvi_vf *even, kvi_vf *odd) {
  const kvi_vu w = *(const kvi_vuu *)p;
  *even = (kvi_vf)(w << 16);
  *odd = (kvi_vf)(w & 0xffff0000u);
}
#else
static inline void kvi_vload_bf16x2(const uint16_t *p, kvi_vf *even, kvi_vf *odd) {
  *even = kvi_bf16_f32(p[0]);
  *odd = kvi_bf16_f32(p[1]);
}
#endif

/*
 * acc[MR][NR] = sum_kk ap[kk][:] (x) W[kk][:] over kc rows of the A micro-panel ap ([kc][MR]
 * floats; kc even for bf16) and the 16-bit slice bp of a panel; then c = acc (add == 0) or
 * c += acc. With pf, pfstep bytes of the stream at pf are prefetched per step of the loop, as in kv_gemm.
 */
static inline __attribute__((always_inline)) void kvi_micro16(int pairs, int rows, int kc, const float *restrict ap,
                                                             const uint16_t *restrict bp, float *c, int64_t ldc,
                                                             int add, uintptr_t pf, int pfstep) {
  const int l2 = kvi_l2_streams; /* a local, so that the loop is unswitched on it */
  kvi_vf acc[KV_G16_MR][KV_G16_NV];
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = kvi_vsplat(0.0f);
  if (pairs) {
    for (int kk = 0; kk < kc; kk += 2) {
      kvi_vf be[KV_G16_NV], bo[KV_G16_NV];
      for (int v = 0; v < KV_G16_NV; v++) kvi_vload_bf16x2(bp + v * 2 * KV_VL, &be[v], &bo[v]);
      if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
      for (int r = 0; r < rows; r++) {
        const kvi_vf a0 = kvi_vbcast(ap[r]);
        const kvi_vf a1 = kvi_vbcast(ap[KV_G16_MR + r]);
        for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = kvi_vfma(kvi_vfma(acc[r][v], a0, be[v]), a1, bo[v]);
      }
      ap += 2 * KV_G16_MR;
      bp += 2 * KV_G16_NR;
    }
  } else {
    for (int kk = 0; kk < kc; kk++) {
      kvi_vf b[KV_G16_NV];
      for (int v = 0; v < KV_G16_NV; v++) b[v] = kvi_vload_f16(bp + v * KV_VL);
      if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
      for (int r = 0; r < rows; r++) {
        const kvi_vf a = kvi_vbcast(ap[r]);
        for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = kvi_vfma(acc[r][v], a, b[v]);
      }
      ap += KV_G16_MR;
      bp += KV_G16_NR;
    }
  }
  if (add) {
    for (int r = 0; r < rows; r++)
      for (int v = 0; v < KV_G16_NV; v++)
        kvi_vstore(c + r * ldc + v * KV_VL, kvi_vload(c + r * ldc + v * KV_VL) + acc[r][v]);
  } else {
    for (int r = 0; r < rows; r++)
      for (int v = 0; v < KV_G16_NV; v++) kvi_vstore(c + r * ldc + v * KV_VL, acc[r][v]);
  }
}

typedef void (*kvi_micro16_fn)(int kc, const float *ap, const uint16_t *bp, float *c, int64_t ldc, uintptr_t pf,
                               int pfstep);

/* The four specialisations of kvi_micro16 behind kvi_micro16_fn: pairs (bf16) or not, add or store. */
#define KVI_MICRO16_FN(name, pairs, add)                                                           \
  static void name(int kc, const float *ap, const uint16_t *bp, float *c, int64_t ldc, uintptr_t pf, int pfstep) { \
    kvi_micro16(pairs, KV_G16_MR, kc, ap, bp, c, ldc, add, pf, pfstep);                            \
  }
KVI_MICRO16_FN(kvi_micro16_bf16_store, 1, 0)
KVI_MICRO16_FN(kvi_micro16_bf16_add, 1, 1)
KVI_MICRO16_FN(kvi_micro16_f16_store, 0, 0)
KVI_MICRO16_FN(kvi_micro16_f16_add, 0, 1)

#if KV_G16_DOT
/*
 * The vdpbf16ps micro-kernel: the A micro-panel holds bf16 pairs, [kc/2][MR] 32-bit lanes (low
 * half k, high half k + 1), and each instruction adds a lane's two products to its float32
 * accumulator.
 */
static inline __attribute__((always_inline)) void kvi_micro_dot(int rows, int kc, const float *restrict apf,
                                                               const uint16_t *restrict bp, float *c, int64_t ldc,
                                                               int add, uintptr_t pf, int pfstep) {
  const uint32_t *ap = (const uint32_t *)apf;
  const int l2 = kvi_l2_streams;
  __m512 acc[KV_G16_MR][KV_G16_NV];
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = _mm512_setzero_ps();
  for (int kk = 0; kk < kc; kk += 2) {
    __m512i w[KV_G16_NV];
    for (int v = 0; v < KV_G16_NV; v++) w[v] = _mm512_loadu_si512((const void *)(bp + v * 2 * KV_VL));
    if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
    for (int r = 0; r < rows; r++) {
      const __m512i x = _mm512_set1_epi32((int)ap[r]);
      for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)x, (__m512bh)w[v]);
    }
    ap += KV_G16_MR;
    bp += 2 * KV_G16_NR;
  }
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < KV_G16_NV; v++) {
      float *cp = c + r * ldc + v * KV_VL;
      _mm512_storeu_ps(cp, add ? _mm512_add_ps(_mm512_loadu_ps(cp), acc[r][v]) : acc[r][v]);
    }
}

static void kvi_micro_dot_store(int kc, const float *ap, const uint16_t *bp, float *c, int64_t ldc,
                                uintptr_t pf, int pfstep) {
  kvi_micro_dot(KV_G16_MR, kc, ap, bp, c, ldc, 0, pf, pfstep);
}
static void kvi_micro_dot_add(int kc, const float *ap, const uint16_t *bp, float *c, int64_t ldc,
                              uintptr_t pf, int pfstep) {
  kvi_micro_dot(KV_G16_MR, kc, ap, bp, c, ldc, 1, pf, pfstep);
}
#endif

/* The micro-kernel family of a dtype: widened bf16 pairs, f16, or vdpbf16ps. */
enum { KVI_G16_BF16, KVI_G16_F16, KVI_G16_DOT };

/*
 * The first mr < MR rows of a micro-panel, and only they, stored into or added to c: a partial
 * micro-panel on the full kernel multiplied its zero padding and went through a scratch tile,
 * whose wide stores the narrow reads of the copy could not forward from, and below 8 rows the
 * GEMM was slower than at 8 (1.74 against 1.23 ms a layer, bf16, one thread). Each row keeps its
 * FMAs and their order.
 */
static void kvi_micro16_part(int mode, int mr, int kc, const float *ap, const uint16_t *bp, float *c, int64_t ldc,
                             int add, uintptr_t pf, int pfstep) {
#if KV_G16_DOT
#define KVI_PART_DOT(r)                                                                            \
  else if (add) kvi_micro_dot(r, kc, ap, bp, c, ldc, 1, pf, pfstep);                              \
  else kvi_micro_dot(r, kc, ap, bp, c, ldc, 0, pf, pfstep);
#else
#define KVI_PART_DOT(r)
#endif
#define KVI_PART(r)                                                                                \
  case r:                                                                                          \
    if (mode == KVI_G16_F16 && add) kvi_micro16(0, r, kc, ap, bp, c, ldc, 1, pf, pfstep);          \
    else if (mode == KVI_G16_F16) kvi_micro16(0, r, kc, ap, bp, c, ldc, 0, pf, pfstep);            \
    else if (mode == KVI_G16_BF16 && add) kvi_micro16(1, r, kc, ap, bp, c, ldc, 1, pf, pfstep);    \
    else if (mode == KVI_G16_BF16) kvi_micro16(1, r, kc, ap, bp, c, ldc, 0, pf, pfstep);           \
    KVI_PART_DOT(r)                                                                                \
    break;
  switch (mr) {
    KVI_PART(1)
    KVI_PART(2)
    KVI_PART(3)
#if KV_G16_MR > 5
    KVI_PART(4)
    KVI_PART(5)
#endif
#if KV_G16_MR > 7
    KVI_PART(6)
    KVI_PART(7)
#endif
  }
#undef KVI_PART
#undef KVI_PART_DOT
}

#if KV_GEMM_MERGE > 0
/*
 * A partial last micro-panel of at most KV_G16_MERGE rows rides on the pass of the full one before
 * it, as in kv_gemm: the full rows (ap) go to c as kvi_micro16 writes them, the first rows2 rows of
 * the partial one (ap2) into tile (row stride NR). A partial micro-panel on its own multiplies its
 * zero padding and reads the weight slice again: 17 rows cost as much as 24. Every row gets the
 * same FMAs in the same order as on its own. Four rows, not kv_gemm's six: a bf16 pair step holds
 * four weight vectors.
 */
#define KV_G16_MERGE 4
static inline __attribute__((always_inline)) void kvi_micro16_merged(int mode, int rows2, int kc,
                                                                    const float *restrict ap,
                                                                    const float *restrict ap2,
                                                                    const uint16_t *restrict bp, float *c,
                                                                    int64_t ldc, int add, float *tile, uintptr_t pf,
                                                                    int pfstep) {
  const int l2 = kvi_l2_streams;
  kvi_vf acc[KV_G16_MR][KV_G16_NV], acc2[KV_G16_MERGE][KV_G16_NV];
  for (int r = 0; r < KV_G16_MR; r++)
    for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = kvi_vsplat(0.0f);
  for (int r = 0; r < rows2; r++)
    for (int v = 0; v < KV_G16_NV; v++) acc2[r][v] = kvi_vsplat(0.0f);
  if (mode == KVI_G16_F16) {
    for (int kk = 0; kk < kc; kk++) {
      kvi_vf b[KV_G16_NV];
      for (int v = 0; v < KV_G16_NV; v++) b[v] = kvi_vload_f16(bp + v * KV_VL);
      if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
      for (int r = 0; r < KV_G16_MR; r++)
        for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = kvi_vfma(acc[r][v], kvi_vbcast(ap[r]), b[v]);
      for (int r = 0; r < rows2; r++)
        for (int v = 0; v < KV_G16_NV; v++) acc2[r][v] = kvi_vfma(acc2[r][v], kvi_vbcast(ap2[r]), b[v]);
      ap += KV_G16_MR;
      ap2 += KV_G16_MR;
      bp += KV_G16_NR;
    }
  } else if (mode == KVI_G16_BF16) {
    for (int kk = 0; kk < kc; kk += 2) {
      kvi_vf be[KV_G16_NV], bo[KV_G16_NV];
      for (int v = 0; v < KV_G16_NV; v++) kvi_vload_bf16x2(bp + v * 2 * KV_VL, &be[v], &bo[v]);
      if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
      for (int r = 0; r < KV_G16_MR; r++) {
        const kvi_vf a0 = kvi_vbcast(ap[r]), a1 = kvi_vbcast(ap[KV_G16_MR + r]);
        for (int v = 0; v < KV_G16_NV; v++) acc[r][v] = kvi_vfma(kvi_vfma(acc[r][v], a0, be[v]), a1, bo[v]);
      }
      for (int r = 0; r < rows2; r++) {
        const kvi_vf a0 = kvi_vbcast(ap2[r]), a1 = kvi_vbcast(ap2[KV_G16_MR + r]);
        for (int v = 0; v < KV_G16_NV; v++) acc2[r][v] = kvi_vfma(kvi_vfma(acc2[r][v], a0, be[v]), a1, bo[v]);
      }
      ap += 2 * KV_G16_MR;
      ap2 += 2 * KV_G16_MR;
      bp += 2 * KV_G16_NR;
    }
  }
#if KV_G16_DOT
  else {
    const uint32_t *ap32 = (const uint32_t *)ap, *ap32b = (const uint32_t *)ap2;
    for (int kk = 0; kk < kc; kk += 2) {
      __m512i w[KV_G16_NV];
      for (int v = 0; v < KV_G16_NV; v++) w[v] = _mm512_loadu_si512((const void *)(bp + v * 2 * KV_VL));
      if (pf) KVI_PREFETCH_STEP_TO(pf, pfstep, l2);
      for (int r = 0; r < KV_G16_MR; r++) {
        const __m512i x = _mm512_set1_epi32((int)ap32[r]);
        for (int v = 0; v < KV_G16_NV; v++)
          acc[r][v] = (kvi_vf)_mm512_dpbf16_ps((__m512)acc[r][v], (__m512bh)x, (__m512bh)w[v]);
      }
      for (int r = 0; r < rows2; r++) {
        const __m512i x = _mm512_set1_epi32((int)ap32b[r]);
        for (int v = 0; v < KV_G16_NV; v++)
          acc2[r][v] = (kvi_vf)_mm512_dpbf16_ps((__m512)acc2[r][v], (__m512bh)x, (__m512bh)w[v]);
      }
      ap32 += KV_G16_MR;
      ap32b += KV_G16_MR;
      bp += 2 * KV_G16_NR;
    }
  }
#endif
  for (int r = 0; r < KV_G16_MR; r++)
    for (int v = 0; v < KV_G16_NV; v++)
      kvi_vstore(c + r * ldc + v * KV_VL, add ? kvi_vload(c + r * ldc + v * KV_VL) + acc[r][v] : acc[r][v]);
  for (int r = 0; r < rows2; r++)
    for (int v = 0; v < KV_G16_NV; v++) kvi_vstore(tile + r * KV_G16_NR + v * KV_VL, acc2[r][v]);
}

/* kvi_micro16_merged for one mode, its rows2 a constant in each case. */
static void kvi_micro16_rider(int mode, int rows2, int kc, const float *ap, const float *ap2, const uint16_t *bp,
                              float *c, int64_t ldc, int add, float *tile, uintptr_t pf, int pfstep) {
#define KVI_RIDER(md, r)                                                                           \
  case r:                                                                                          \
    kvi_micro16_merged(md, r, kc, ap, ap2, bp, c, ldc, add, tile, pf, pfstep);                     \
    break;
#define KVI_RIDERS(md)                                                                             \
  switch (rows2) {                                                                                 \
    KVI_RIDER(md, 1)                                                                               \
    KVI_RIDER(md, 2)                                                                               \
    KVI_RIDER(md, 3)                                                                               \
    KVI_RIDER(md, 4)                                                                               \
  }
  if (mode == KVI_G16_F16) {
    KVI_RIDERS(KVI_G16_F16)
  } else if (mode == KVI_G16_BF16) {
    KVI_RIDERS(KVI_G16_BF16)
  } else {
    KVI_RIDERS(KVI_G16_DOT)
  }
#undef KVI_RIDERS
#undef KVI_RIDER
}
#else
#define KV_G16_MERGE 0
#endif

/*
 * Rows [i0, i0 + mc) x columns [k0, k0 + kc) of A into micro-panels of kcs >= kc rows (the rows
 * past kc zero), each in kcs * MR floats of dst: [kcs][MR] floats, as given (KVI_A_F32) or rounded
 * to bf16 (KVI_A_ROUND), or [kcs/2][MR] 32-bit bf16 pairs (KVI_A_PAIRS, kcs even).
 */
static void kvi_pack_a16(int mode, int mc, int kc, int kcs, const float *a, int64_t lda, const int32_t *arows,
                         int i0, int k0, float *dst) {
  for (int ir = 0; ir < mc; ir += KV_G16_MR) {
    const int mr = kvi_imin(KV_G16_MR, mc - ir);
    /* The padding rows are zeroed by a loop of their own: as one loop with the copy (src NULL),
       gcc made every copy a masked load, and the all-masked loads of NULL rows took a fault
       assist each, 30% of a 17-row GEMM at two threads. */
    for (int r = mr; r < KV_G16_MR; r++)
      for (int kk = 0; kk < (mode == KVI_A_PAIRS ? kcs / 2 : kcs); kk++) dst[kk * KV_G16_MR + r] = 0.0f;
    for (int r = 0; r < mr; r++) {
      const int i = i0 + ir + r;
      const float *src = a + (int64_t)(arows ? arows[i] : i) * lda + k0;
      if (mode == KVI_A_PAIRS) {
        uint32_t *d32 = (uint32_t *)dst;
        for (int kk = 0; kk + 1 < kc; kk += 2)
          d32[(kk / 2) * KV_G16_MR + r] = kvi_f32_bf16(src[kk]) | kvi_f32_bf16(src[kk + 1]) << 16;
        if (kc % 2) d32[(kc / 2) * KV_G16_MR + r] = kvi_f32_bf16(src[kc - 1]);
        for (int kk = (kc + 1) / 2 * 2; kk < kcs; kk += 2) d32[(kk / 2) * KV_G16_MR + r] = 0;
      } else {
        if (mode == KVI_A_ROUND)
          for (int kk = 0; kk < kc; kk++) dst[kk * KV_G16_MR + r] = kvi_bits_f32(kvi_f32_bf16(src[kk]) << 16);
        else
          for (int kk = 0; kk < kc; kk++) dst[kk * KV_G16_MR + r] = src[kk];
        for (int kk = kc; kk < kcs; kk++) dst[kk * KV_G16_MR + r] = 0.0f;
      }
    }
    dst += (int64_t)kcs * KV_G16_MR;
  }
}

/*
 * One k-block of one micro-tile: mr rows of a packed A block at ap times a panel's slice bp,
 * stored into or added to C at ct (partial tiles through a scratch tile).
 */
static inline void kvi_g16_tile(kvi_micro16_fn store, kvi_micro16_fn addfn, int mode, int add, uintptr_t pf,
                                int pfstep, int kcs, const float *ap, const uint16_t *bp, int mr, int nr, float *ct,
                                int64_t ldc, float *tile) {
  if (mr == KV_G16_MR && nr == KV_G16_NR) {
    (add ? addfn : store)(kcs, ap, bp, ct, ldc, pf, pfstep);
  } else if (nr == KV_G16_NR) {
    kvi_micro16_part(mode, mr, kcs, ap, bp, ct, ldc, add, pf, pfstep);
  } else {
    store(kcs, ap, bp, tile, KV_G16_NR, pf, pfstep);
    for (int r = 0; r < mr; r++)
      for (int j = 0; j < nr; j++)
        ct[(int64_t)r * ldc + j] = (add ? ct[(int64_t)r * ldc + j] : 0.0f) + tile[r * KV_G16_NR + j];
  }
}

/* kv_gemm16 of `count` weights of one dtype and one A, as kvi_gemm_multi is kv_gemm's. */
static void kvi_gemm16_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *ns,
                             const uint16_t *const *packs, int dtype, const float *const *biases, float *const *cs,
                             const int *ldcs, int accumulate) {
  if (m <= 0 || count <= 0 || dtype < KV_BF16 || dtype > KV_BF16_DOT) return;
  if (count > KVI_MULTI_MAX) {
    kvi_gemm16_multi(KVI_MULTI_MAX, m, k, a, lda, arows, ns, packs, dtype, biases, cs, ldcs, accumulate);
    kvi_gemm16_multi(count - KVI_MULTI_MAX, m, k, a, lda, arows, ns + KVI_MULTI_MAX, packs + KVI_MULTI_MAX, dtype,
                     biases + KVI_MULTI_MAX, cs + KVI_MULTI_MAX, ldcs + KVI_MULTI_MAX, accumulate);
    return;
  }
  if (k <= 0) {
    kvi_multi_empty(count, m, ns, biases, cs, ldcs, accumulate);
    return;
  }
  const int pairs = dtype != KV_F16; /* the bf16 layout: k-blocks of even length */
  int amode = KVI_A_F32;
  const int rmode = !pairs ? KVI_G16_F16 : dtype == KV_BF16_DOT && KV_G16_DOT ? KVI_G16_DOT : KVI_G16_BF16;
  kvi_micro16_fn store = pairs ? kvi_micro16_bf16_store : kvi_micro16_f16_store;
  kvi_micro16_fn addfn = pairs ? kvi_micro16_bf16_add : kvi_micro16_f16_add;
  if (dtype == KV_BF16_DOT) {
#if KV_G16_DOT
    amode = KVI_A_PAIRS;
    store = kvi_micro_dot_store;
    addfn = kvi_micro_dot_add;
#else
    amode = KVI_A_ROUND;
#endif
  }
  const int nc_panels = KV_GEMM_NC / KV_G16_NR > 0 ? KV_GEMM_NC / KV_G16_NR : 1;
  int first[KVI_MULTI_MAX + 1];
  const double flops = kvi_multi_units(count, ns, KV_G16_NR, nc_panels, 1, m, k, first);
  const kvi_rows split = kvi_row_split(m, KV_G16_MR, KV_G16_MC, flops, first[count], 0);
  const int row_units = split.bands * split.per_band;
  kvi_multi_units(count, ns, KV_G16_NR, nc_panels, row_units, m, k, first);
  const int units = first[count];
  const int64_t kp = ((int64_t)k + 1) / 2 * 2;
  const int64_t panel_stride = (int64_t)KV_G16_NR * kp;
  const int whole = (int64_t)KV_G16_MC * kp <= KV_G16_APACK;
  /* row blocks a thread keeps packed, in whole mode: row unit ru in slot ru % slots */
  const int slots = whole && (int64_t)row_units * KV_G16_MC * kp <= KV_G16_APACK ? row_units : 1;
#ifdef _OPENMP
#pragma omp parallel if (flops > KV_PAR_MIN_WORK && units > 1)
#endif
  {
    float *apack = whole ? kvi_thread_buffer((size_t)slots * KV_G16_MC * kp)
                         : kvi_aligned_buffer((size_t)KV_G16_MC * KV_GEMM_KC);
    int *slot_ru = whole ? malloc(sizeof(int) * (size_t)slots) : NULL; /* the row unit each slot holds */
    if (slot_ru)
      for (int i = 0; i < slots; i++) slot_ru[i] = -1;
    float tile[KV_G16_MR * KV_G16_NR];
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int u = 0; u < units; u++) {
      int g, cu, ru, i0, mc;
      kvi_unit_at(&split, first, count, u, &g, &cu, &ru, &i0, &mc);
      if (mc <= 0) continue;
      const int n = ns[g], ldc = ldcs[g];
      const uint16_t *packed = packs[g];
      const float *bias = biases[g];
      float *c = cs[g];
      const int first_adds = accumulate || bias != NULL;
      const int panels = (int)kvi_ceil_div(n, KV_G16_NR);
      const int p0 = cu * nc_panels;
      const int p1 = kvi_imin(panels, p0 + nc_panels);
      if (bias) {
        const int j0 = p0 * KV_G16_NR;
        const int j1 = kvi_imin(n, p1 * KV_G16_NR);
        for (int i = i0; i < i0 + mc; i++) {
          float *crow = c + (int64_t)i * ldc;
          for (int j = j0; j < j1; j++) crow[j] = (accumulate ? crow[j] : 0.0f) + bias[j];
        }
      }
      if (whole) {
        float *ablock = apack + (int64_t)(ru % slots) * KV_G16_MC * kp;
        if (slot_ru[ru % slots] != ru) {
          for (int k0 = 0; k0 < k; k0 += KV_GEMM_KC) {
            const int kc = kvi_imin(KV_GEMM_KC, k - k0);
            kvi_pack_a16(amode, mc, kc, pairs ? (kc + 1) / 2 * 2 : kc, a, lda, arows, i0, k0,
                         ablock + (int64_t)KV_G16_MC * k0);
          }
          slot_ru[ru % slots] = ru;
        }
        for (int p = p0; p < p1; p++) {
          const int j0 = p * KV_G16_NR;
          const int nr = kvi_imin(KV_G16_NR, n - j0);
          /* A partial last micro-panel of at most KV_G16_MERGE rows rides on the pass of the one
             before it, on every whole column panel. */
          const int tail = mc % KV_G16_MR;
          const int merge =
              KV_G16_MERGE > 0 && tail > 0 && tail <= KV_G16_MERGE && mc > KV_G16_MR && nr == KV_G16_NR;
          const int passes = (int)(kvi_ceil_div(mc, KV_G16_MR) - merge);
          for (int k0 = 0; k0 < k; k0 += KV_GEMM_KC) {
            const int kc = kvi_imin(KV_GEMM_KC, k - k0);
            const int kcs = pairs ? (kc + 1) / 2 * 2 : kc;
            const int add = first_adds || k0 > 0;
            const float *ab = ablock + (int64_t)KV_G16_MC * k0;
            const uint16_t *bp = packed + p * panel_stride + (int64_t)k0 * KV_G16_NR;
            /* Prefetched as in kv_gemm; a step of the micro-kernel's loop is one kk, or a pair of
               them for bf16. */
            const int steps = pairs ? kcs / 2 : kcs;
            for (int ir = 0; ir < mc - (merge ? tail : 0); ir += KV_G16_MR) {
              int pfstep = 0;
              const uintptr_t pf = kvi_prefetch_from(bp, (int64_t)kcs * KV_G16_NR * 2, steps, passes,
                                                     ir / KV_G16_MR, &pfstep);
              float *ct = c + (int64_t)(i0 + ir) * ldc + j0;
#if KV_GEMM_MERGE > 0
              if (merge && ir + 2 * KV_G16_MR > mc) { /* the host of the rider */
                float *ct2 = ct + (int64_t)KV_G16_MR * ldc;
                kvi_micro16_rider(rmode, tail, kcs, ab + (int64_t)ir * kcs, ab + (int64_t)(ir + KV_G16_MR) * kcs,
                                  bp, ct, ldc, add, tile, pf, pfstep);
                for (int r = 0; r < tail; r++)
                  for (int j = 0; j < KV_G16_NR; j++)
                    ct2[(int64_t)r * ldc + j] = (add ? ct2[(int64_t)r * ldc + j] : 0.0f) + tile[r * KV_G16_NR + j];
                continue;
              }
#endif
              kvi_g16_tile(store, addfn, rmode, add, pf, pfstep, kcs, ab + (int64_t)ir * kcs, bp,
                           kvi_imin(KV_G16_MR, mc - ir), nr, ct, ldc, tile);
            }
          }
        }
      } else {
        for (int k0 = 0; k0 < k; k0 += KV_GEMM_KC) {
          const int kc = kvi_imin(KV_GEMM_KC, k - k0);
          const int kcs = pairs ? (kc + 1) / 2 * 2 : kc; /* KV_GEMM_KC is even: k0 starts a pair */
          kvi_pack_a16(amode, mc, kc, kcs, a, lda, arows, i0, k0, apack);
          for (int ir = 0; ir < mc; ir += KV_G16_MR)
            for (int p = p0; p < p1; p++) {
              const int j0 = p * KV_G16_NR;
              kvi_g16_tile(store, addfn, rmode, first_adds || k0 > 0, 0, 0, kcs, apack + (int64_t)ir * kcs,
                           packed + p * panel_stride + (int64_t)k0 * KV_G16_NR, kvi_imin(KV_G16_MR, mc - ir),
                           kvi_imin(KV_G16_NR, n - j0), c + (int64_t)(i0 + ir) * ldc + j0, ldc, tile);
            }
        }
      }
    }
    if (!whole) free(apack);
    free(slot_ru);
  }
#ifdef KV_FAULT_GEMM
  for (int g = 0; g < count; g++) KVI_FAULT(KV_FAULT_GEMM, cs[g], m, ns[g], ldcs[g]);
#endif
}

void kv_gemm16(int m, int n, int k, const float *a, int lda, const int32_t *arows, const uint16_t *packed,
               int dtype, const float *bias, float *c, int ldc, int accumulate) {
  if (n <= 0) return;
  kvi_gemm16_multi(1, m, k, a, lda, arows, &n, &packed, dtype, &bias, &c, &ldc, accumulate);
}

void kv_gemm16_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *n,
                     const uint16_t *const *packed, int dtype, const float *const *bias, float *const *c,
                     const int *ldc) {
  kvi_gemm16_multi(count, m, k, a, lda, arows, n, packed, dtype, bias, c, ldc, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Attention
 *
 * Flash-style, computed transposed so that nothing is transposed at run time. A work unit is a
 * block of (query row, head) pairs that share one kv head (GQA heads read the same keys): up to
 * KV_ATT_PANELS panels of KV_GEMM_NR pairs, packed once like weight panels ([hd][NR]). Per tile of
 * KV_ATT_KT keys a GEMM micro-kernel, reading key rows straight from the canvas through kpos,
 * computes S^T[key][pair] = K Q^T (the queries scaled by scale * log2(e) when packed, so that the
 * softmax is a power of 2). Each row of S^T is then a vector over pairs, so masking, the running
 * max, exp2, the running sum and the rescale factor are all lane-wise. The output is kept
 * transposed too, O^T[hd][pair], so that O^T += V^T P^T is the same micro-kernel shape (KV_ATT_MR rows
 * of hd by NR pairs, V's elements broadcast) and the rescale of O is lane-wise as well.
 * No [nq, nk] matrix exists; the state per pair is (max, sum, O[hd]). Every multiply-add is an
 * explicit FMA (kvi_vfma).
 */

#ifndef KV_ATT_PANELS
#define KV_ATT_PANELS 4 /* pair panels per unit: 4 * NR pairs */
#endif
/*
 * Keys per micro-tile of K Q^T, and hd rows per micro-tile of V^T P^T: with AVX-512, 12 rows by 2
 * vectors of pairs (24 of the 32 zmm registers accumulate, against the GEMM's 16): 1.2x the
 * 8-row tile on one thread, measured interleaved at N 1024-4096, hd 64-128.
 */
#if KV_VL == 16
#define KV_ATT_MR 12
#else
#define KV_ATT_MR KV_GEMM_MR
#endif
/* Units of at most KV_ATT_GROUP_PAIRS pairs take several KV heads, KV_ATT_GROUP_FLOATS floats of a
   canvas row at most (each head's O^T and packed queries are kept a unit). */
#ifndef KV_ATT_GROUP_PAIRS
#define KV_ATT_GROUP_PAIRS 64
#endif
#ifndef KV_ATT_GROUP_FLOATS
#define KV_ATT_GROUP_FLOATS 512
#endif
#ifndef KV_ATT_KT
#define KV_ATT_KT (8 * KV_ATT_MR) /* keys per tile (a multiple of KV_ATT_MR) */
#endif
/*
 * Keys a unit of several heads takes for all of its heads at a time, within a tile (a multiple of
 * KV_ATT_MR). Such a unit (a cached step's few rows, whose keys and values come from memory) took
 * a whole tile a head: 96 rows of one head, then the same rows of the next. Walking 12 rows for
 * every head, their slices of a canvas row side by side, 17 queries over 160-1280 keys with K and V
 * from memory ran 1.3-1.46x (24 rows: 1.2-1.3x; 48: 0.93x), in cache 0.88-0.98x.
 */
#ifndef KV_ATT_WALK
#define KV_ATT_WALK KV_ATT_MR
#endif
/*
 * A head's keys and values copied into the thread's buffer, [nk][hd] each, before its units read
 * them, when its key rows span at least KV_ATT_PACK_SPAN floats of the canvas (4 MB) and at least
 * KV_ATT_PACK_UNITS units read each head. Read in place, rows a canvas row apart were read again
 * by every unit from pages beyond the TLB's reach, each few rows a page the hardware prefetchers
 * do not cross into (bench/attention-ab.ts, 1 and 2 threads: 1.04-1.11x at N 4096, 1.00-1.06x at
 * N 1024; units of a cached step's few rows, one a head, lost 0.75-0.93x to a copy). A copy is only
 * made where it is read many times; it holds the same values, so every bit of the result is the same.
 */
#ifndef KV_ATT_PACK_UNITS
#define KV_ATT_PACK_UNITS 8
#endif
#ifndef KV_ATT_PACK_SPAN
#define KV_ATT_PACK_SPAN (1 << 20)
#endif
/* The most floats a thread's copy may hold (32 MB, 32K keys of 128): the buffer is kept between
   calls, and a longer context should not keep that much memory a thread for the process's life. */
#define KV_ATT_PACK_MAX ((int64_t)8 << 20)

/*
 * 2^x for lanes x <= 0 (scores minus their running max, in log2 units): x = n + r, |r| <= 1/2,
 * a degree-6 polynomial for 2^r, scaled by 2^n. NaN (-inf - -inf: a pair that has seen no key
 * yet) and -inf give 0, as does anything below -150.
 */
#if KV_VL == 16
static inline kvi_vf kvi_vexp2_neg(kvi_vf x) {
  /* vmaxps returns its second operand when either is NaN. */
  const __m512 xc = _mm512_max_ps((__m512)x, _mm512_set1_ps(-150.0f));
  const __m512 n = _mm512_roundscale_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(xc, n);
  __m512 y = _mm512_set1_ps(1.5353362e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3398874e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(9.6182263e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.5503408e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(2.4022650e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(6.9314718e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
  return (kvi_vf)_mm512_scalef_ps(y, n);
}
#else
static inline kvi_vf kvi_vexp2_neg(kvi_vf x) { return kvi_vexp(x * 0.69314718055994531f); }
#endif

/*
 * S^T tile rows for MR keys given by row pointers: c[r][:] = sum_d krow[r][d] * bp[d][:], over nv
 * vectors of the panel (a constant where inlined; the panel's row stride is NR either way).
 *
 * KV_ATT_QK_ROWS keys at a time over 16 dimensions, one 64-byte line of each, where all MR keys
 * took each dimension in turn: 1.00-1.06x for units of one KV head (N 1024-4096, 70-100 queries
 * over 160-1280 keys, packed or read in place). Units of several (a cached step's few query rows)
 * took every key a dimension at a time until 2026-12-06: their keys lie a canvas row apart, 4 KiB
 * at 16 heads of 64, where twelve lines of one L1 set met eight ways (Zen 4) and the micro-kernel
 * alone ran at 0.76 of its speed on rows 64 bytes further apart; four keys at a time, such calls run
 * 1.02-1.13x at 16-17 queries over 160-1280 keys and 1.01-1.06x at 33 (K and V in cache or from
 * memory, 1 and 2 threads). Each key's sum runs over d in order either way, so every bit is the same.
 */
#define KV_ATT_QK_ROWS (KV_ATT_MR > 8 ? 4 : KV_ATT_MR)
_Static_assert(KV_ATT_MR == KV_ATT_QK_ROWS || KV_ATT_MR == 3 * KV_ATT_QK_ROWS, "one or three key groups");
/*
 * With one vector of pairs (a cached step's 1-17 query rows a head), a group's keys are its only
 * independent chains of multiply-adds: four keys kept four FMAs in flight against a latency of four
 * cycles, one FMA a cycle, where Zen 5 issues two. Such a panel takes its keys six at a time (six
 * lines of one L1 set, within Zen 4's eight ways): 5-17 queries over 160-1280 keys 1.00-1.09x on
 * two threads, 1.02-1.07x on one (Zen 5; twelve at a time, 1.00x; each key's sum is the same chain
 * over d, so every bit is the same).
 */
#ifndef KV_ATT_QK_ROWS1
#define KV_ATT_QK_ROWS1 (KV_ATT_MR > 8 ? 6 : KV_ATT_MR)
#endif
_Static_assert(KV_ATT_MR == KV_ATT_QK_ROWS1 || KV_ATT_MR == 2 * KV_ATT_QK_ROWS1 || KV_ATT_MR == 3 * KV_ATT_QK_ROWS1,
               "one to three key groups");
#if KV_VL == 16
/* An empty asm that takes x in a vector register and gives it back: x is then loaded once. */
#define KVI_IN_REGISTER(x) __asm__("" : "+v"(x))
#else
#define KVI_IN_REGISTER(x) (void)0
#endif
static inline __attribute__((always_inline)) void kvi_micro_qk_nv(int nv, int hd,
                                                             const float *const *krow, const float *restrict bp,
                                                             float *c, int64_t ldc) {
  kvi_vf acc[KV_ATT_MR][KV_GEMM_NV];
  for (int r = 0; r < KV_ATT_MR; r++)
    for (int v = 0; v < nv; v++) acc[r][v] = kvi_vsplat(0.0f);
  /* The panel's vectors are held in registers (KVI_IN_REGISTER): left to itself, GCC folded their
     loads into each multiply-add, three times the loads. */
#define KVI_QK_GROUP(r0, g)                                                                         \
  for (int kk = k0; kk < k0 + 16; kk++) {                                                          \
    kvi_vf b[KV_GEMM_NV];                                                                          \
    for (int v = 0; v < nv; v++) {                                                                 \
      b[v] = kvi_vload(bp + (int64_t)kk * KV_GEMM_NR + v * KV_VL);                                 \
      KVI_IN_REGISTER(b[v]);                                                                       \
    }                                                                                              \
    for (int r = (r0); r < (r0) + (g); r++) {                                                      \
      const float a = krow[r][kk];                                                                 \
      for (int v = 0; v < nv; v++) acc[r][v] = kvi_vfma(acc[r][v], kvi_vbcast(a), b[v]);            \
    }                                                                                              \
  }
  int k0 = 0;
  for (; k0 + 16 <= hd; k0 += 16) {
    if (nv == 1) {
      KVI_QK_GROUP(0, KV_ATT_QK_ROWS1)
#if KV_ATT_MR >= 2 * KV_ATT_QK_ROWS1
      KVI_QK_GROUP(KV_ATT_QK_ROWS1, KV_ATT_QK_ROWS1)
#endif
#if KV_ATT_MR >= 3 * KV_ATT_QK_ROWS1
      KVI_QK_GROUP(2 * KV_ATT_QK_ROWS1, KV_ATT_QK_ROWS1)
#endif
    } else {
      KVI_QK_GROUP(0, KV_ATT_QK_ROWS)
#if KV_ATT_MR > KV_ATT_QK_ROWS
      KVI_QK_GROUP(KV_ATT_QK_ROWS, KV_ATT_QK_ROWS)
      KVI_QK_GROUP(2 * KV_ATT_QK_ROWS, KV_ATT_QK_ROWS)
#endif
    }
  }
#undef KVI_QK_GROUP
  for (int kk = k0; kk < hd; kk++) {
    kvi_vf b[KV_GEMM_NV];
    for (int v = 0; v < nv; v++) b[v] = kvi_vload(bp + (int64_t)kk * KV_GEMM_NR + v * KV_VL);
    for (int r = 0; r < KV_ATT_MR; r++) {
      const float a = krow[r][kk];
      for (int v = 0; v < nv; v++) acc[r][v] = kvi_vfma(acc[r][v], kvi_vbcast(a), b[v]);
    }
  }
  for (int r = 0; r < KV_ATT_MR; r++)
    for (int v = 0; v < nv; v++) kvi_vstore(c + r * ldc + v * KV_VL, acc[r][v]);
}

static void kvi_micro_qk(int hd, const float *const *krow, const float *bp, float *c, int64_t ldc) {
  kvi_micro_qk_nv(KV_GEMM_NV, hd, krow, bp, c, ldc);
}
/* The first vector of a panel alone: a unit's last panel of at most KV_VL pairs (kvi_attention). */
static void kvi_micro_qk1(int hd, const float *const *krow, const float *bp, float *c, int64_t ldc) {
  kvi_micro_qk_nv(1, hd, krow, bp, c, ldc);
}

/*
 * O^T[d0 + r][:] += sum_t vrow[t][d0 + r] * P^T[t][:] for r < nd, over nv vectors of pairs (NR with
 * nv = KV_GEMM_NV; nd and nv constants when inlined).
 */
static inline __attribute__((always_inline)) void kvi_pv_block(int nv, int nd, int tl, const float *const *vrow,
                                                          int d0, const float *restrict p, int64_t ldp, float *ot,
                                                          int64_t ldo) {
  kvi_vf acc[KV_ATT_MR][KV_GEMM_NV];
  for (int r = 0; r < nd; r++)
    for (int v = 0; v < nv; v++) acc[r][v] = kvi_vload(ot + r * ldo + v * KV_VL);
  for (int t = 0; t < tl; t++) {
    kvi_vf b[KV_GEMM_NV];
    for (int v = 0; v < nv; v++) b[v] = kvi_vload(p + t * ldp + v * KV_VL);
    for (int r = 0; r < nd; r++) {
      const float a = vrow[t][d0 + r];
      for (int v = 0; v < nv; v++) acc[r][v] = kvi_vfma(acc[r][v], kvi_vbcast(a), b[v]);
    }
  }
  for (int r = 0; r < nd; r++)
    for (int v = 0; v < nv; v++) kvi_vstore(ot + r * ldo + v * KV_VL, acc[r][v]);
}

/* kvi_pv_block of KV_ATT_MR rows, over a whole panel or (narrow) its first vector. */
static void kvi_pv_full(int narrow, int tl, const float *const *vrow, int d0, const float *p, int64_t ldp, float *ot,
                        int64_t ldo) {
  if (narrow)
    kvi_pv_block(1, KV_ATT_MR, tl, vrow, d0, p, ldp, ot, ldo);
  else
    kvi_pv_block(KV_GEMM_NV, KV_ATT_MR, tl, vrow, d0, p, ldp, ot, ldo);
}

/*
 * nd < KV_ATT_MR rows of hd (with AVX-512, hd 128 leaves 8, and hd 64 leaves 4, run as 8 + 8 with
 * the last full block): each nd is its own inlined copy, so that its accumulators stay in registers (a variable nd kept them in memory and
 * ran that sixteenth of O^T += V^T P^T at a fraction of the speed).
 */
static void kvi_pv_part(int narrow, int nd, int tl, const float *const *vrow, int d0, const float *p, int64_t ldp,
                        float *ot, int64_t ldo) {
  switch (nd) {
#define KVI_PV_ROWS(r)                                                                             \
  case r:                                                                                          \
    if (narrow)                                                                                    \
      kvi_pv_block(1, r, tl, vrow, d0, p, ldp, ot, ldo);                                           \
    else                                                                                           \
      kvi_pv_block(KV_GEMM_NV, r, tl, vrow, d0, p, ldp, ot, ldo);                                  \
    break;
    KVI_PV_ROWS(1)
    KVI_PV_ROWS(2)
    KVI_PV_ROWS(3)
#if KV_ATT_MR > 4
    KVI_PV_ROWS(4)
    KVI_PV_ROWS(5)
#endif
#if KV_ATT_MR > 6
    KVI_PV_ROWS(6)
    KVI_PV_ROWS(7)
    KVI_PV_ROWS(8)
    KVI_PV_ROWS(9)
    KVI_PV_ROWS(10)
    KVI_PV_ROWS(11)
#endif
#undef KVI_PV_ROWS
  default:
    if (narrow)
      kvi_pv_block(1, nd, tl, vrow, d0, p, ldp, ot, ldo);
    else
      kvi_pv_block(KV_GEMM_NV, nd, tl, vrow, d0, p, ldp, ot, ldo);
  }
}

/*
 * The online softmax of one tile for the nv vectors of pairs from column c (nv a constant where
 * inlined): mask, running max, exp2, running sum, and the rescale of O^T. The vectors are
 * independent chains interleaved over the keys, so the sums' and maxima's add latency overlaps (one
 * column at a time waited on it); each lane still sums its keys in the same order.
 */
#define KV_ATT_SOFTMAX_NV (KV_ATT_PANELS * KV_GEMM_NV) /* the vectors of a whole unit */
static inline __attribute__((always_inline)) void kvi_softmax_cols(int nv, int c, int tl, int hd, int masked,
                                                              const int32_t *kb, int32_t ts, const int32_t *qb,
                                                              const int32_t *qs, float *st, int64_t rows_pad,
                                                              float *mrow, float *lrow, float *ot, float *alout) {
  kvi_vf mx[KV_ATT_SOFTMAX_NV], mnew[KV_ATT_SOFTMAX_NV], al[KV_ATT_SOFTMAX_NV], sum[KV_ATT_SOFTMAX_NV];
  for (int j = 0; j < nv; j++) mx[j] = kvi_vsplat(-INFINITY);
  if (masked) {
    for (int t = 0; t < tl; t++)
      for (int j = 0; j < nv; j++) {
        const int cj = c + j * KV_VL;
        float *sp = st + (int64_t)t * rows_pad + cj;
        kvi_vf x = kvi_vload(sp);
#if KV_VL > 1
        const kvi_vi sees = (*(const kvi_vi *)(qb + cj) >= kb[t]) & (*(const kvi_vi *)(qs + cj) == ts);
        x = kvi_vselect(sees, x, kvi_vsplat(-INFINITY));
#else
        x = qb[cj] >= kb[t] && qs[cj] == ts ? x : -INFINITY;
#endif
        kvi_vstore(sp, x);
        mx[j] = kvi_vmax(mx[j], x);
      }
  } else {
    for (int t = 0; t < tl; t++)
      for (int j = 0; j < nv; j++) mx[j] = kvi_vmax(mx[j], kvi_vload(st + (int64_t)t * rows_pad + c + j * KV_VL));
  }
  for (int j = 0; j < nv; j++) {
    const kvi_vf mold = kvi_vload(mrow + c + j * KV_VL);
    mnew[j] = kvi_vmax(mold, mx[j]);
    al[j] = kvi_vexp2_neg(mold - mnew[j]);
    sum[j] = kvi_vsplat(0.0f);
  }
  for (int t = 0; t < tl; t++)
    for (int j = 0; j < nv; j++) {
      float *sp = st + (int64_t)t * rows_pad + c + j * KV_VL;
      const kvi_vf e = kvi_vexp2_neg(kvi_vload(sp) - mnew[j]);
      kvi_vstore(sp, e);
      sum[j] += e;
    }
  for (int j = 0; j < nv; j++) {
    const int cj = c + j * KV_VL;
    kvi_vstore(lrow + cj, kvi_vload(lrow + cj) * al[j] + sum[j]);
    kvi_vstore(mrow + cj, mnew[j]);
  }
  if (alout) {
    for (int j = 0; j < nv; j++) kvi_vstore(alout + j * KV_VL, al[j]);
    return;
  }
  for (int d = 0; d < hd; d++)
    for (int j = 0; j < nv; j++) {
      float *orow = ot + (int64_t)d * rows_pad + c + j * KV_VL;
      kvi_vstore(orow, kvi_vload(orow) * al[j]);
    }
}

/*
 * The pack of a unit's queries and the write-out of its outputs move hd floats per pair between a
 * pair's row and a column of a [hd][pairs] panel. With AVX-512 they go 16 x 16 at a time through
 * registers (one float at a time they took 3-5% of the attention at 1024 keys, more at the few
 * keys of a cached step; gathers were no faster).
 */
#if KV_VL == 16
/* r[i][j] <- r[j][i]. */
static inline __attribute__((always_inline)) void kvi_transpose16(__m512 *r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = (__m512)_mm512_unpacklo_pd((__m512d)t[i], (__m512d)t[i + 2]);
    r[i + 1] = (__m512)_mm512_unpackhi_pd((__m512d)t[i], (__m512d)t[i + 2]);
    r[i + 2] = (__m512)_mm512_unpacklo_pd((__m512d)t[i + 1], (__m512d)t[i + 3]);
    r[i + 3] = (__m512)_mm512_unpackhi_pd((__m512d)t[i + 1], (__m512d)t[i + 3]);
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; j++) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xDD);
    }
  for (int j = 0; j < 8; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
  }
}
#endif

/* Panel [hd][NR] of pairs rho0 .. rho0 + NR - 1 (of nr; zeros past it), pair rho's row at q0 +
   ((rho / group) * heads + rho % group) * hd, times qscale. */
static void kvi_pack_pairs(int rho0, int nr, int group, int heads, int hd, float qscale, const float *q0,
                           float *dst) {
#if KV_VL == 16
  const __m512 sc = _mm512_set1_ps(qscale);
  for (int v = 0; v < KV_GEMM_NV; v++)
    for (int d0 = 0; d0 < hd; d0 += 16) {
      const int nd = kvi_imin(16, hd - d0);
      const __mmask16 in = (__mmask16)((1u << nd) - 1);
      __m512 r[16];
      for (int l = 0; l < 16; l++) {
        const int rho = rho0 + v * 16 + l;
        r[l] = rho < nr ? _mm512_maskz_loadu_ps(in, q0 + ((int64_t)(rho / group) * heads + rho % group) * hd + d0)
                        : _mm512_setzero_ps();
      }
      kvi_transpose16(r);
      for (int i = 0; i < nd; i++)
        _mm512_store_ps(dst + (int64_t)(d0 + i) * KV_GEMM_NR + v * 16, _mm512_mul_ps(r[i], sc));
    }
#else
  for (int c = 0; c < KV_GEMM_NR; c++) {
    const int rho = rho0 + c;
    const float *src = rho < nr ? q0 + ((int64_t)(rho / group) * heads + rho % group) * hd : NULL;
    for (int d = 0; d < hd; d++) dst[d * KV_GEMM_NR + c] = src ? src[d] * qscale : 0.0f;
  }
#endif
}

/* A pair's log-sum-exp in natural units from its running max and sum in log2 units. */
static inline float kvi_pair_lse(float m, float l) {
  return l > 0.0f ? (m + log2f(l)) * 0.69314718055994531f : -INFINITY;
}

/* dst[j][d] = col[d * ld + j] * scale[j] for pairs j < np <= KV_VL and d < hd. */
static void kvi_unpack_pairs(int np, int hd, const float *col, int64_t ld, const float *scale, float *const *dst) {
#if KV_VL == 16
  for (int d0 = 0; d0 < hd; d0 += 16) {
    const int nd = kvi_imin(16, hd - d0);
    const __mmask16 out = (__mmask16)((1u << nd) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < nd ? _mm512_loadu_ps(col + (int64_t)(d0 + i) * ld) : _mm512_setzero_ps();
    kvi_transpose16(r);
    for (int j = 0; j < np; j++) _mm512_mask_storeu_ps(dst[j] + d0, out, _mm512_mul_ps(r[j], _mm512_set1_ps(scale[j])));
  }
#else
  for (int j = 0; j < np; j++)
    for (int d = 0; d < hd; d++) dst[j][d] = col[(int64_t)d * ld + j] * scale[j];
#endif
}

/*
 * kt[d][j0 + t] = K[j0 + t][d] for the 16 keys of one block (rows[t], hd floats each) at the given
 * kv head, kt rows `ld` apart. With 16-float vectors, 16 x 16 squares are transposed in registers
 * (kvi_transpose16), where element by element the transpose cost a load and a store per float and
 * was most of a one-row probe; shuffles by index vectors built in a loop were not constant-folded
 * and cost as much again.
 */
#if KV_VL == 16
/* r[d][t] = rows[t][d0 + d] for d < nd <= 16 (zeros past nd): 16 rows' dimensions from d0 transposed. */
static inline __attribute__((always_inline)) void kvi_rows_transposed(const float *const rows[16], int d0, int nd,
                                                                 __m512 *r) {
  const __mmask16 in = (__mmask16)((1u << nd) - 1);
  for (int t = 0; t < 16; t++) r[t] = _mm512_maskz_loadu_ps(in, rows[t] + d0);
  kvi_transpose16(r);
}
#endif

static void kvi_transpose_keys(const float *const rows[16], int hd, float *kt, int64_t ld) {
#if KV_VL == 16
  for (int d0 = 0; d0 < hd; d0 += 16) {
    const int nd = kvi_imin(16, hd - d0);
    __m512 r[16];
    kvi_rows_transposed(rows, d0, nd, r);
    for (int d = 0; d < nd; d++) _mm512_storeu_ps(kt + (int64_t)(d0 + d) * ld, r[d]);
  }
#else
  for (int d = 0; d < hd; d++)
    for (int t = 0; t < 16; t++) kt[(int64_t)d * ld + t] = rows[t][d];
#endif
}

#if KV_VL == 16
/*
 * V^T P^T of a unit of one panel of pairs a head (a cached step's few query rows: at most 32 pairs
 * and the leftover one) with O row-major, O[pair][hd] (kvi_pv_rows): each key's V row is loaded as
 * whole vectors of hd and each pair's probability broadcast onto them, up to 6 pairs by 4 vectors
 * (hd 64) or 3 by 8 (hd 128) in 24 accumulators, 0.4 loads an FMA. In O^T, each FMA took a broadcast
 * element of V for one or two vectors of pairs (1.2 or 0.6 loads an FMA), and at one vector the
 * loads held it to about one FMA a cycle on Zen 5. A pair's O gets the operations of a panel in their
 * order (O * al, then an FMA a key, keys in order), so every bit is the same. On Zen 5
 * (bench/attention-ab.ts, 1 and 2 threads, K and V in cache / from memory): 17 queries over 160-1280
 * keys, 16 heads of 64, 1.26-1.31x / 1.17-1.20x; 24-33 queries 1.09-1.26x / 1.17-1.21x; 32 heads of
 * 128 1.04-1.12x / 1.06-1.14x.
 */
#define KV_ATT_PV_ACC 24
static inline __attribute__((always_inline)) void kvi_pv_rows_block(int np, int nvec, int tl, const float *const *vrow,
                                                               const float *p, int64_t ldp, const float *al, float *o,
                                                               int hd) {
  __m512 acc[KV_ATT_PV_ACC / 4][8];
  for (int j = 0; j < np; j++) {
    const __m512 a = _mm512_set1_ps(al[j]);
    for (int v = 0; v < nvec; v++) acc[j][v] = _mm512_mul_ps(_mm512_loadu_ps(o + (int64_t)j * hd + v * 16), a);
  }
  for (int t = 0; t < tl; t++) {
    __m512 vv[8];
    for (int v = 0; v < nvec; v++) vv[v] = _mm512_loadu_ps(vrow[t] + v * 16);
    for (int j = 0; j < np; j++) {
      const __m512 b = _mm512_set1_ps(p[(int64_t)t * ldp + j]);
      for (int v = 0; v < nvec; v++) acc[j][v] = _mm512_fmadd_ps(b, vv[v], acc[j][v]);
    }
  }
  for (int j = 0; j < np; j++)
    for (int v = 0; v < nvec; v++) _mm512_storeu_ps(o + (int64_t)j * hd + v * 16, acc[j][v]);
}

/* The head dimensions kvi_pv_rows takes: 4 or 8 whole vectors. */
static inline int kvi_pv_rows_takes(int hd) { return hd == 64 || hd == 128; }

/* O[j][:] = O[j][:] * al[j] + sum_t p[t][j] V[t][:] for npairs pairs, p rows ldp apart. */
static void kvi_pv_rows(int npairs, int hd, int tl, const float *const *vrow, const float *p, int64_t ldp,
                        const float *al, float *o) {
  const int nvec = hd / 16, pb = KV_ATT_PV_ACC / nvec;
  for (int p0 = 0; p0 < npairs; p0 += pb) {
    const int np = kvi_imin(pb, npairs - p0);
    const float *pp = p + p0, *alp = al + p0;
    float *op = o + (int64_t)p0 * hd;
    /* Each (vectors, pairs) its own inlined copy, so that the accumulators stay in registers. */
#define KVI_PVR(nv, n)                                                                             \
  if (nvec == (nv) && np == (n)) {                                                                 \
    kvi_pv_rows_block(n, nv, tl, vrow, pp, ldp, alp, op, hd);                                      \
    continue;                                                                                      \
  }
    KVI_PVR(4, 1) KVI_PVR(4, 2) KVI_PVR(4, 3) KVI_PVR(4, 4) KVI_PVR(4, 5) KVI_PVR(4, 6)
    KVI_PVR(8, 1) KVI_PVR(8, 2) KVI_PVR(8, 3)
#undef KVI_PVR
  }
}
#endif
#if KV_VL == 16
/*
 * Pairs past a unit's last whole vector, at most KV_ATT_LEFT: one query row, or 17 or 33, is a
 * whole number of vectors of pairs a head and one more, and that one filled a vector of its own,
 * 15 lanes of padding through every multiply-add of K Q^T and V^T P^T. Such a pair is computed
 * alone instead, with the keys of the tile in the lanes and then hd in the lanes (one row
 * 2.2-2.7x, 33 rows 1.3x; two to four such pairs ran 0.8x, so they stay in a panel):
 * K Q^T sums over d in order from 0, the softmax keeps the panels' max, exp2 and sums in key order,
 * and O[d] adds its keys in order, so every bit is the one the pair had in a panel. e holds the
 * tile's scores; lq the pairs' scaled queries, lo their O (hd floats each), lm and ll their running
 * max and sum; qb and qs their blocks and sequences.
 */
#define KV_ATT_LEFT 1
#define KV_ATT_KT16 ((KV_ATT_KT + 15) / 16 * 16) /* a tile's keys, in whole vectors */
/* Not inlined into the unit's loop: inlined, it ran a call of 17 queries over 160-1280 keys
   1.05-1.07x longer. */
static __attribute__((noinline)) void kvi_left_tile(int left, int tl, int hd, int masked, const int32_t *kb,
                                                    int32_t ts, const int32_t *qb, const int32_t *qs,
                                                    const float *const *krows, const float *const *vrows, float *e,
                                                    const float *lq, float *lo, float *lm, float *ll, float *pcol,
                                                    int64_t ldp, float *alout) {
  enum { NVK = KV_ATT_KT16 / 16 }; /* key vectors of a tile: a constant, so that they stay in registers */
  /* S = K q for each pair, each key's sum over d in order from 0: a block of 16 keys transposed 16
     dimensions at a time in registers and multiplied there (through a K^T tile in memory, a call of
     17 queries over 160 or 1280 keys ran 1.05-1.09x longer). Lanes past tl are dropped below. */
  __m512 svs[KV_ATT_LEFT][NVK];
  for (int v = 0; v < NVK; v++) {
    __m512 s[KV_ATT_LEFT];
    for (int j = 0; j < KV_ATT_LEFT; j++) s[j] = _mm512_setzero_ps();
    if (v * 16 < tl) {
      const float *rows[16];
      for (int t = 0; t < 16; t++) rows[t] = krows[v * 16 + t < tl ? v * 16 + t : v * 16];
      for (int d0 = 0; d0 < hd; d0 += 16) {
        const int nd = kvi_imin(16, hd - d0);
        __m512 r[16];
        kvi_rows_transposed(rows, d0, nd, r);
        for (int j = 0; j < left; j++) {
          const float *q = lq + (int64_t)j * hd + d0;
          if (nd == 16)
            for (int d = 0; d < 16; d++) s[j] = _mm512_fmadd_ps(r[d], _mm512_set1_ps(q[d]), s[j]);
          else
            for (int d = 0; d < nd; d++) s[j] = _mm512_fmadd_ps(r[d], _mm512_set1_ps(q[d]), s[j]);
        }
      }
    }
    for (int j = 0; j < KV_ATT_LEFT; j++) svs[j][v] = s[j];
  }
  __mmask16 inside[NVK]; /* the lanes of keys t < tl */
  for (int v = 0; v < NVK; v++)
    inside[v] = (__mmask16)(tl - v * 16 >= 16 ? 0xffff : tl - v * 16 > 0 ? (1u << (tl - v * 16)) - 1 : 0);
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int j = 0; j < left; j++) {
    __m512 *sv = svs[j];
    __m512 mxv = ninf;
    __mmask16 nan = 0;
    for (int v = 0; v < NVK; v++) {
      __mmask16 keep = inside[v];
      if (masked)
        keep &= _mm512_cmp_epi32_mask(_mm512_loadu_si512((const void *)(kb + v * 16)), _mm512_set1_epi32(qb[j]),
                                      _MM_CMPINT_LE) &
                (qs[j] == ts ? 0xffff : 0);
      sv[v] = _mm512_mask_mov_ps(ninf, keep, sv[v]);
      nan |= _mm512_cmp_ps_mask(sv[v], sv[v], _CMP_UNORD_Q);
      mxv = _mm512_max_ps(mxv, sv[v]);
    }
    float mx = _mm512_reduce_max_ps(mxv);
    if (nan) {
      /* vmaxps(a, b) is a > b ? a : b: with a NaN score the panels' max depends on the order of
         the keys, which this follows. */
      for (int v = 0; v < NVK; v++) _mm512_store_ps(e + v * 16, sv[v]);
      mx = -INFINITY;
      for (int t = 0; t < tl; t++) mx = mx > e[t] ? mx : e[t];
    }
    const float mold = lm[j];
    const float mnew = mold > mx ? mold : mx;
    const float al = _mm512_cvtss_f32((__m512)kvi_vexp2_neg(kvi_vsplat(mold - mnew)));
    const __m512 mv = _mm512_set1_ps(mnew);
    for (int v = 0; v < NVK; v++)
      _mm512_store_ps(e + v * 16, (__m512)kvi_vexp2_neg((kvi_vf)_mm512_sub_ps(sv[v], mv)));
    float sum = 0.0f;
    for (int t = 0; t < tl; t++) sum += e[t];
    ll[j] = ll[j] * al + sum;
    lm[j] = mnew;
    if (pcol) { /* its V^T P^T is the row-major one's (kvi_pv_rows): its probabilities and rescale go there */
      for (int t = 0; t < tl; t++) pcol[(int64_t)t * ldp + j] = e[t];
      alout[j] = al;
      continue;
    }
    float *o = lo + (int64_t)j * hd;
    const __m512 alv = _mm512_set1_ps(al);
    /* O = O * al, then O += e[t] V[t] key after key; four vectors of hd at a time. */
    for (int d0 = 0; d0 < hd; d0 += 64) {
      __mmask16 mk[4];
      __m512 acc[4];
      for (int c = 0; c < 4; c++) {
        const int w = hd - d0 - c * 16;
        mk[c] = (__mmask16)(w >= 16 ? 0xffff : w > 0 ? (1u << w) - 1 : 0);
        acc[c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[c], o + d0 + c * 16), alv);
      }
      for (int t = 0; t < tl; t++) {
        const __m512 p = _mm512_set1_ps(e[t]);
        const float *vr = vrows[t] + d0;
        for (int c = 0; c < 4; c++) acc[c] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk[c], vr + c * 16), p, acc[c]);
      }
      for (int c = 0; c < 4; c++) _mm512_mask_storeu_ps(o + d0 + c * 16, mk[c], acc[c]);
    }
  }
}
#else
#define KV_ATT_LEFT 0
#define KV_ATT_KT16 KV_ATT_KT
#endif
/* Pairs a head of a unit whose V^T P^T is row-major (kvi_pv_rows): one panel's and the leftover ones. */
#define KV_ATT_ROWMAJOR (KV_GEMM_NR + KV_ATT_LEFT)

/* A row of zeros for masked keys; KV_MAX_HEAD_DIM bounds hd (the renderer and wrappers check it). */
#define KV_MAX_HEAD_DIM 1024
static const float *kvi_zero_row(int hd) {
  static const float zeros[KV_MAX_HEAD_DIM];
  (void)hd;
  return zeros;
}

/* Whether canvas row qp sees canvas row kp: no later block, and the same sequence. */
static inline int kvi_sees(const int32_t *blocks, const int32_t *seqs, int32_t qp, int32_t kp) {
  return (!blocks || blocks[kp] <= blocks[qp]) && (!seqs || seqs[kp] == seqs[qp]);
}

/* kv_attention, or with only >= 0 kv_attention_kv_head: the heads of KV head `only` alone. */
static void kvi_attention(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q,
                          const float *kcanvas, const float *vcanvas, const int32_t *qpos,
                          const int32_t *kpos, const int32_t *blocks, const int32_t *seqs, float *o,
                          float *lse, int only) {
  if (nq <= 0 || heads <= 0) return;
  /* Whether head h is computed: every head, or those reading KV head `only`. */
#define KVI_COMPUTED(h) (only < 0 || (kvh > 0 && (h) / (heads / kvh) == only))
  if (nk <= 0 || hd <= 0 || kvh <= 0) {
    if (hd > 0) memset(o, 0, sizeof(float) * (size_t)nq * heads * hd);
    for (int i = 0; i < nq; i++) {
      /* With hd = 0 every score is 0 and lse is the log of the number of visible keys. */
      int seen = 0;
      if (hd <= 0 && kvh > 0)
        for (int j = 0; j < nk; j++) seen += kvi_sees(blocks, seqs, qpos[i], kpos[j]);
      for (int h = 0; h < heads; h++)
        lse[(int64_t)i * heads + h] = seen && KVI_COMPUTED(h) ? logf((float)seen) : -INFINITY;
    }
    return;
  }
  /* The heads of other KV heads hold the partial of an empty key set. */
  if (only >= 0)
    for (int i = 0; i < nq; i++)
      for (int h = 0; h < heads; h++)
        if (!KVI_COMPUTED(h)) {
          memset(o + ((int64_t)i * heads + h) * hd, 0, sizeof(float) * (size_t)hd);
          lse[(int64_t)i * heads + h] = -INFINITY;
        }
#undef KVI_COMPUTED
  const int group = heads / kvh;
  const int upairs = KV_ATT_PANELS * KV_GEMM_NR;                 /* pairs per unit, at most */
  const int qblock = group >= upairs ? 1 : upairs / group; /* query rows per unit */
  const int rows = kvi_imin(qblock, nq) * group; /* pairs of the largest unit */
  const int rows_pad = (int)kvi_ceil_div(rows, KV_GEMM_NR) * KV_GEMM_NR; /* S^T and O^T row stride */
  const int qblocks = (int)kvi_ceil_div(nq, qblock);
  /* KV heads per unit: one, but for units of few pairs (a cached step's query rows), which read
     every key and value once per call, from memory: a unit of one head read its hd floats of each
     canvas row, a row (a page, at 16 heads of 64) apart, and waited on every one of them. A unit of
     several heads walks each tile's rows once for all of them, hg * hd contiguous floats a row.
     Each head's pairs get the same operations in the same order either way. */
  const int per_thread = (int)kvi_ceil_div(kvh, kvi_imin(kvh, kv_get_threads()));
  const int hg = only >= 0 || rows > KV_ATT_GROUP_PAIRS
                     ? 1
                     : kvi_imin(per_thread, KV_ATT_GROUP_FLOATS / hd > 1 ? KV_ATT_GROUP_FLOATS / hd : 1);
  const int units = qblocks * (only >= 0 ? 1 : (int)kvi_ceil_div(kvh, hg));
  const int64_t hstride = (int64_t)kvh * hd; /* canvas row stride */
  /* Scores in log2 units: the scale and log2(e) are folded into the packed queries. */
  const float qscale = scale * 1.44269504088896341f;
  /* Runs of consecutive keys of one sequence: [rstart[r], rstart[r + 1]) of sequence rseq[r]. */
  int32_t *rstart = malloc(sizeof(int32_t) * ((size_t)nk + 1));
  int32_t *rseq = malloc(sizeof(int32_t) * (size_t)nk);
  if (!rstart || !rseq) {
    /* Out of memory: a visibly wrong result (the runtime refuses non-finite logits). */
    free(rstart);
    free(rseq);
    for (int64_t x = 0; x < (int64_t)nq * heads * hd; x++) o[x] = NAN;
    for (int64_t x = 0; x < (int64_t)nq * heads; x++) lse[x] = NAN;
    return;
  }
  int nruns = 0;
  for (int j = 0; j < nk; j++)
    if (j == 0 || (seqs && seqs[kpos[j]] != rseq[nruns - 1])) {
      rstart[nruns] = j;
      rseq[nruns++] = seqs ? seqs[kpos[j]] : 0;
    }
  rstart[nruns] = nk;
  const double work = 4.0 * nq * nk * heads * hd;
  (void)work;
  /* Not for a batch of several sequences: a unit reads the keys of its own sequences only. */
  const int pack_kv = hg == 1 && qblocks >= KV_ATT_PACK_UNITS && (int64_t)nk * hstride >= KV_ATT_PACK_SPAN &&
                      2 * (int64_t)nk * hd <= KV_ATT_PACK_MAX && nruns == 1;
#ifdef _OPENMP
#pragma omp parallel if (work > KV_PAR_MIN_WORK && units > 1)
#endif
  {
    /* One buffer a thread, kept between calls: allocated and freed each call, these pieces made
       glibc give the heap's top back and fault it in again at every call (most of a cached
       step's attention, at one query row). */
    const size_t n_pairs = (size_t)hg * rows_pad, n_left = (size_t)hg * KV_ATT_LEFT;
    size_t end = 0;
    /* Per head of a unit: packed queries, a tile's S^T, O^T, running max and sum. */
    const size_t at_qpacks = kvi_piece(&end, n_pairs * hd), at_st = kvi_piece(&end, (size_t)hg * KV_ATT_KT * rows_pad),
                 at_ots = kvi_piece(&end, n_pairs * hd), at_mrows = kvi_piece(&end, n_pairs),
                 at_lrows = kvi_piece(&end, n_pairs), at_qb = kvi_piece(&end, (size_t)rows_pad),
                 at_qs = kvi_piece(&end, (size_t)rows_pad);
    /* The leftover pairs' scores, queries, O, max and sum (kvi_left_tile; none without). */
    const size_t at_e = kvi_piece(&end, KV_ATT_LEFT ? KV_ATT_KT16 : 0), at_lq = kvi_piece(&end, n_left * hd),
                 at_lo = kvi_piece(&end, n_left * hd), at_lm = kvi_piece(&end, n_left),
                 at_ll = kvi_piece(&end, n_left);
    /* Each head's key and value rows of the tile, KV_ATT_KT pointers of each a head. */
    const size_t at_rows = kvi_piece(&end, 2 * (size_t)hg * KV_ATT_KT * sizeof(void *) / sizeof(float));
    const size_t at_orm = kvi_piece(&end, (size_t)hg * KV_ATT_ROWMAJOR * hd),
                 at_alb = kvi_piece(&end, (size_t)hg * KV_ATT_ROWMAJOR);
    /* The packed keys and values, when there is memory for them (else rows are read in place). */
    const size_t at_pk = kvi_piece(&end, pack_kv ? 2 * (size_t)nk * hd : 0);
    float *buf = kvi_thread_buffer(end);
    const int packs = pack_kv && buf;
    if (pack_kv && !buf) buf = kvi_thread_buffer(at_pk);
    float *pk = buf + at_pk;
    int pk_head = -1; /* the KV head pk holds */
    float *qpacks = buf + at_qpacks, *st = buf + at_st, *ots = buf + at_ots, *mrows = buf + at_mrows,
          *lrows = buf + at_lrows;
    int32_t *qb = (int32_t *)(buf + at_qb), *qs = (int32_t *)(buf + at_qs);
    float *lq = buf + at_lq, *lo = buf + at_lo, *lm = buf + at_lm, *ll = buf + at_ll;
#if KV_ATT_LEFT
    float *ebuf = buf + at_e;
#else
    (void)at_e;
#endif
    float *orm = buf + at_orm, *alb = buf + at_alb;
    int32_t kb[KV_ATT_KT];
    const float **kall = (const float **)(buf + at_rows), **vall = kall + (size_t)hg * KV_ATT_KT;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int u = 0; u < units; u++) {
      /* Head-major: consecutive units read the same keys and values, which stay in cache. */
      const int g0 = only >= 0 ? only : (u / qblocks) * hg;
      const int ng = only >= 0 ? 1 : kvi_imin(hg, kvh - g0);
      const int i0 = (u % qblocks) * qblock;
      const int nqi = kvi_imin(qblock, nq - i0);
      const int nr = nqi * group; /* pair rho = il * group + hh: query row i0 + il, head g*group + hh */
      /* Pairs past the last whole vector, if few, are the leftover ones (kvi_left_tile); the
         panels take the first nvr. */
      const int left = nr % KV_VL <= KV_ATT_LEFT ? nr % KV_VL : 0;
      const int nvr = nr - left;
      const int npan = (int)kvi_ceil_div(nvr, KV_GEMM_NR);
      /* A last panel of at most KV_VL pairs computes its first vector alone: a cached step's few
         query rows (9 pairs a head) ran a whole panel, the second vector all padding. Each lane's
         sums are the same either way. */
      const int narrow_last = KV_GEMM_NV > 1 && npan > 0 && nvr - (npan - 1) * KV_GEMM_NR <= KV_VL;
      const int width = npan * KV_GEMM_NR - (narrow_last ? KV_GEMM_NR - KV_VL : 0);
      /* One panel of pairs a head: V^T P^T row-major (kvi_pv_rows), the leftover pair's with it. */
#if KV_VL == 16
      const int rowmajor = npan == 1 && kvi_pv_rows_takes(hd);
#else
      const int rowmajor = 0;
#endif
      for (int hi = 0; hi < ng; hi++) {
        /* Pack the pairs' scaled query vectors as panels [hd][NR], zero-padded. */
        const float *qh = q + ((int64_t)i0 * heads + (g0 + hi) * group) * hd;
        for (int pn = 0; pn < npan; pn++)
          kvi_pack_pairs(pn * KV_GEMM_NR, nvr, group, heads, hd, qscale, qh,
                         qpacks + ((int64_t)hi * rows_pad + pn * KV_GEMM_NR) * hd);
        for (int j = 0; j < left; j++) {
          const int rho = nvr + j;
          const float *src = qh + ((int64_t)(rho / group) * heads + rho % group) * hd;
          float *dq = lq + ((int64_t)hi * KV_ATT_LEFT + j) * hd;
          for (int d = 0; d < hd; d++) dq[d] = src[d] * qscale;
          memset(lo + ((int64_t)hi * KV_ATT_LEFT + j) * hd, 0, sizeof(float) * (size_t)hd);
          lm[hi * KV_ATT_LEFT + j] = -INFINITY;
          ll[hi * KV_ATT_LEFT + j] = 0.0f;
        }
        /* Not even an empty memset when every pair is a leftover one: glibc's for under 64
           bytes is a masked store, which here took an assist each time. */
        if (rowmajor)
          memset(orm + (int64_t)hi * KV_ATT_ROWMAJOR * hd, 0, sizeof(float) * (size_t)nr * (size_t)hd);
        else
          for (int d = 0; d < hd && width > 0; d++)
            memset(ots + ((int64_t)hi * hd + d) * rows_pad, 0, sizeof(float) * (size_t)width);
        for (int rho = 0; rho < width; rho++) {
          mrows[(int64_t)hi * rows_pad + rho] = -INFINITY;
          lrows[(int64_t)hi * rows_pad + rho] = 0.0f;
        }
      }
      for (int rho = 0; rho < (width > nr ? width : nr); rho++) {
        /* Padding pairs see nothing (INT32_MIN is below every block, -1 for the prompt included). */
        qb[rho] = rho < nr ? (blocks ? blocks[qpos[i0 + rho / group]] : 0) : INT32_MIN;
        qs[rho] = rho < nr && seqs ? seqs[qpos[i0 + rho / group]] : 0;
      }

      /* The sequences of the unit's pairs: runs of keys of other sequences are not visited, so
         that a batch's attention grows with its rows, not with rows times keys. */
      int32_t smin = INT32_MAX, smax = INT32_MIN;
      for (int rho = 0; rho < nr; rho++) {
        smin = qs[rho] < smin ? qs[rho] : smin;
        smax = qs[rho] > smax ? qs[rho] : smax;
      }
      for (int ri = 0; ri < nruns; ri++) {
        const int32_t ts = seqs ? rseq[ri] : 0;
        if (ts < smin || ts > smax) continue;
        /* A tile never spans two sequences (runs are tiled from their start): the keys of a
           sequence are then tiled exactly as when it runs alone, and a batch computes every
           sequence bit for bit as a batch of one. */
        for (int t0 = rstart[ri], tl = 0; t0 < rstart[ri + 1]; t0 += tl) {
          tl = kvi_imin(KV_ATT_KT, rstart[ri + 1] - t0);
          int32_t qb_max = INT32_MIN; /* the latest block a pair of the tile's sequence is in */
          for (int rho = 0; rho < nr; rho++)
            if (qs[rho] == ts && qb[rho] > qb_max) qb_max = qb[rho];
          /* A key no query of the unit sees may never have been written (NaN); its zero weight
             would still turn a NaN value into NaN, so it reads a zero row instead. */
          int any = 0;
          for (int t = 0; t < tl; t++) {
            kb[t] = blocks ? blocks[kpos[t0 + t]] : 0;
            any |= kb[t] <= qb_max;
          }
          if (!any) continue; /* no pair of this unit sees any key of the tile */
          const int tpad = (int)kvi_ceil_div(tl, KV_ATT_MR) * KV_ATT_MR;
          /* A unit of several heads (a cached step's few rows) walks the tile KV_ATT_WALK keys at a
             time for all of its heads, their slices of a canvas row side by side: K Q^T of every
             head, each head's softmax over the whole tile, then V^T P^T of every head. A head's
             operations and their order are those of a unit of one head. */
          const int walk = ng > 1 ? KV_ATT_WALK : tpad;
          for (int s0 = 0; s0 < tpad; s0 += walk) {
            for (int hi = 0; hi < ng; hi++) {
              const float **krows = kall + (int64_t)hi * KV_ATT_KT, **vrows = vall + (int64_t)hi * KV_ATT_KT;
              const float *qpack = qpacks + (int64_t)hi * rows_pad * hd;
              float *sth = st + (int64_t)hi * KV_ATT_KT * rows_pad;
              if (s0 == 0) {
                if (packs && pk_head != g0 + hi) {
                  pk_head = g0 + hi;
                  for (int j = 0; j < nk; j++) {
                    const int64_t base = (int64_t)kpos[j] * hstride + (int64_t)pk_head * hd;
                    memcpy(pk + (int64_t)j * hd, kcanvas + base, sizeof(float) * (size_t)hd);
                    memcpy(pk + ((int64_t)nk + j) * hd, vcanvas + base, sizeof(float) * (size_t)hd);
                  }
                }
                for (int t = 0; t < tl; t++) {
                  const float *kr = packs ? pk + (int64_t)(t0 + t) * hd
                                          : kcanvas + (int64_t)kpos[t0 + t] * hstride + (int64_t)(g0 + hi) * hd;
                  const float *vr = packs ? pk + ((int64_t)nk + t0 + t) * hd
                                          : vcanvas + (int64_t)kpos[t0 + t] * hstride + (int64_t)(g0 + hi) * hd;
                  krows[t] = kb[t] <= qb_max ? kr : kvi_zero_row(hd);
                  vrows[t] = kb[t] <= qb_max ? vr : kvi_zero_row(hd);
                }
                for (int t = tl; t < tpad; t++) krows[t] = krows[0]; /* computed, never read */
#if KV_VL > 1
                /* A call of one query block a head (a cached step's rows) reads each key and value
                   once, from memory: the next tile's rows of this head, those the unit sees, are
                   fetched into L2 while this one is computed (K and V from memory, 17 queries over
                   160-1280 keys: 1.03-1.15x; with many blocks a head they are in cache already). */
                if (qblocks == 1)
                  for (int t = t0 + tl; t < kvi_imin(t0 + tl + KV_ATT_KT, rstart[ri + 1]); t++) {
                    if (blocks && blocks[kpos[t]] > qb_max) continue;
                    const int64_t base = (int64_t)kpos[t] * hstride + (int64_t)(g0 + hi) * hd;
                    for (int d = 0; d < hd; d += 16) {
                      _mm_prefetch((const char *)(kcanvas + base + d), _MM_HINT_T1);
                      _mm_prefetch((const char *)(vcanvas + base + d), _MM_HINT_T1);
                    }
                  }
#endif
              }
              /* S^T = K Q^T for these keys of the tile. */
              for (int tb = s0; tb < kvi_imin(s0 + walk, tpad); tb += KV_ATT_MR)
                for (int pn = 0; pn < npan; pn++)
                  (narrow_last && pn == npan - 1 ? kvi_micro_qk1 : kvi_micro_qk)(
                      hd, krows + tb, qpack + (int64_t)pn * KV_GEMM_NR * hd,
                      sth + (int64_t)tb * rows_pad + pn * KV_GEMM_NR, rows_pad);
            }
          }
          /* Mask lane-wise, then the online softmax over the tile's keys; O^T rescaled lane-wise. */
          for (int hi = 0; hi < ng; hi++) {
            float *sth = st + (int64_t)hi * KV_ATT_KT * rows_pad;
            /* A row-major unit's O is rescaled by kvi_pv_rows: the softmax stores the factors. */
            float *ot = rowmajor ? NULL : ots + (int64_t)hi * hd * rows_pad;
            float *al = rowmajor ? alb + (int64_t)hi * KV_ATT_ROWMAJOR : NULL;
            float *mrow = mrows + (int64_t)hi * rows_pad, *lrow = lrows + (int64_t)hi * rows_pad;
            for (int c = 0; c < width;) {
              if (width - c >= KV_ATT_SOFTMAX_NV * KV_VL) {
                kvi_softmax_cols(KV_ATT_SOFTMAX_NV, c, tl, hd, blocks || seqs, kb, ts, qb, qs, sth, rows_pad, mrow, lrow, ot,
                                 al ? al + c : NULL);
                c += KV_ATT_SOFTMAX_NV * KV_VL;
              } else if (width - c >= KV_GEMM_NR) {
                kvi_softmax_cols(KV_GEMM_NV, c, tl, hd, blocks || seqs, kb, ts, qb, qs, sth, rows_pad, mrow, lrow, ot,
                                 al ? al + c : NULL);
                c += KV_GEMM_NR;
              } else {
                kvi_softmax_cols(1, c, tl, hd, blocks || seqs, kb, ts, qb, qs, sth, rows_pad, mrow, lrow, ot,
                                 al ? al + c : NULL);
                c += KV_VL;
              }
            }
          }
          /* O^T += V^T P^T, MR rows of hd by NR pairs at a time, keys in order (a walk's steps add
             theirs to O^T in turn). A short last block (hd 64 leaves 4 of 12) loads the same P
             vectors as a full one for a third of its FMAs, so the last full block and it are split
             in two halves instead (8 + 8). */
          const int rem = hd % KV_ATT_MR;
          const int halves = rem > 0 && rem < KV_ATT_MR / 2 + 2 && hd > KV_ATT_MR;
          const int full_end = hd - rem - (halves ? KV_ATT_MR : 0);
#if KV_VL == 16
          if (rowmajor)
            for (int hi = 0; hi < ng; hi++) {
              float *sth = st + (int64_t)hi * KV_ATT_KT * rows_pad, *alh = alb + (int64_t)hi * KV_ATT_ROWMAJOR;
              if (left > 0)
                kvi_left_tile(left, tl, hd, blocks || seqs, kb, ts, qb + nvr, qs + nvr, kall + (int64_t)hi * KV_ATT_KT,
                              vall + (int64_t)hi * KV_ATT_KT, ebuf, lq + (int64_t)hi * KV_ATT_LEFT * hd,
                              lo + (int64_t)hi * KV_ATT_LEFT * hd, lm + hi * KV_ATT_LEFT, ll + hi * KV_ATT_LEFT,
                              sth + nvr, rows_pad, alh + nvr);
              kvi_pv_rows(nvr + left, hd, tl, vall + (int64_t)hi * KV_ATT_KT, sth, rows_pad, alh,
                          orm + (int64_t)hi * KV_ATT_ROWMAJOR * hd);
            }
#endif
          for (int s0 = 0; s0 < tl && !rowmajor; s0 += walk) {
            const int sl = kvi_imin(walk, tl - s0);
            for (int hi = 0; hi < ng; hi++) {
              const float *const *vrows = vall + (int64_t)hi * KV_ATT_KT + s0;
              const float *sth = st + ((int64_t)hi * KV_ATT_KT + s0) * rows_pad;
              float *ot = ots + (int64_t)hi * hd * rows_pad;
              for (int pn = 0; pn < npan; pn++) {
                const float *p = sth + pn * KV_GEMM_NR;
                float *opan = ot + pn * KV_GEMM_NR;
                const int narrow = narrow_last && pn == npan - 1;
                int d0 = 0;
                for (; d0 < full_end; d0 += KV_ATT_MR)
                  kvi_pv_full(narrow, sl, vrows, d0, p, rows_pad, opan + (int64_t)d0 * rows_pad, rows_pad);
                if (halves) {
                  const int h1 = (hd - d0 + 1) / 2;
                  kvi_pv_part(narrow, h1, sl, vrows, d0, p, rows_pad, opan + (int64_t)d0 * rows_pad, rows_pad);
                  d0 += h1;
                }
                if (d0 < hd)
                  kvi_pv_part(narrow, hd - d0, sl, vrows, d0, p, rows_pad, opan + (int64_t)d0 * rows_pad, rows_pad);
              }
            }
          }
#if KV_ATT_LEFT
          if (left > 0 && !rowmajor)
            for (int hi = 0; hi < ng; hi++)
              kvi_left_tile(left, tl, hd, blocks || seqs, kb, ts, qb + nvr, qs + nvr, kall + (int64_t)hi * KV_ATT_KT,
                            vall + (int64_t)hi * KV_ATT_KT, ebuf, lq + (int64_t)hi * KV_ATT_LEFT * hd,
                            lo + (int64_t)hi * KV_ATT_LEFT * hd, lm + hi * KV_ATT_LEFT, ll + hi * KV_ATT_LEFT, NULL, 0,
                            NULL);
#endif
        }
      }
      /* Normalise and write out; the log-sum-exp back in natural units. */
      for (int hi = 0; hi < ng; hi++) {
        const float *ot = ots + (int64_t)hi * hd * rows_pad;
        const float *mrow = mrows + (int64_t)hi * rows_pad, *lrow = lrows + (int64_t)hi * rows_pad;
        for (int c0 = 0; c0 < nvr && !rowmajor; c0 += KV_VL) {
          const int np = kvi_imin(KV_VL, nvr - c0);
          float inv[KV_VL];
          float *dst[KV_VL];
          for (int j = 0; j < np; j++) {
            const int rho = c0 + j;
            const int64_t ih = (int64_t)(i0 + rho / group) * heads + (g0 + hi) * group + rho % group;
            dst[j] = o + ih * hd;
            inv[j] = lrow[rho] > 0.0f ? 1.0f / lrow[rho] : 0.0f;
            lse[ih] = kvi_pair_lse(mrow[rho], lrow[rho]);
          }
          kvi_unpack_pairs(np, hd, ot + c0, rows_pad, inv, dst);
          /* A pair that saw no key is 0, whatever its O^T holds. */
          for (int j = 0; j < np; j++)
            if (lrow[c0 + j] <= 0.0f) memset(dst[j], 0, sizeof(float) * (size_t)hd);
        }
        /* The pairs whose O is a row: every pair of a row-major unit, else the leftover ones. */
        for (int rho = rowmajor ? 0 : nvr; rho < nr; rho++) {
          const int64_t ih = (int64_t)(i0 + rho / group) * heads + (g0 + hi) * group + rho % group;
          const int j = rho - nvr; /* a leftover pair's index, from 0 */
          const float l = j < 0 ? lrow[rho] : ll[hi * KV_ATT_LEFT + j];
          const float m = j < 0 ? mrow[rho] : lm[hi * KV_ATT_LEFT + j];
          const float inv = l > 0.0f ? 1.0f / l : 0.0f;
          const float *src = rowmajor ? orm + ((int64_t)hi * KV_ATT_ROWMAJOR + rho) * hd
                                      : lo + ((int64_t)hi * KV_ATT_LEFT + j) * hd;
          lse[ih] = kvi_pair_lse(m, l);
          for (int d = 0; d < hd; d++) o[ih * hd + d] = l > 0.0f ? src[d] * inv : 0.0f;
        }
      }
    }
  }
  free(rstart);
  free(rseq);
#ifdef KV_FAULT_ATTENTION
  KVI_FAULT(KV_FAULT_ATTENTION, o, nq, (int64_t)heads * hd, (int64_t)heads * hd);
#endif
}

void kv_attention(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q,
                  const float *kcanvas, const float *vcanvas, const int32_t *qpos, const int32_t *kpos,
                  const int32_t *blocks, const int32_t *seqs, float *o, float *lse) {
  kvi_attention(nq, nk, heads, kvh, hd, scale, q, kcanvas, vcanvas, qpos, kpos, blocks, seqs, o, lse, -1);
}

void kv_attention_kv_head(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q,
                          const float *kcanvas, const float *vcanvas, const int32_t *qpos,
                          const int32_t *kpos, const int32_t *blocks, const int32_t *seqs, float *o,
                          float *lse, int g) {
  kvi_attention(nq, nk, heads, kvh, hd, scale, q, kcanvas, vcanvas, qpos, kpos, blocks, seqs, o, lse, g);
}

/* ---------------------------------------------------------------------------------------------
 * Merge, normalisation, rotary, pointwise, gathers
 */

/*
 * The probabilities of one block of a head's query rows (rows i0 .. i0 + rows - 1, their scores in
 * sb, rows nkp apart, overwritten), summed over the rows into blk in float and added to acc.
 */
static void kvi_mass_rows(int rows, int i0, int nk, int64_t nkp, float *sb, const int32_t *qpos,
                          const int32_t *blocks, const int32_t *seqs, const int32_t *kb, const int32_t *ks,
                          float *blk, double *acc) {
  /* Each row's probabilities, exponentiated in place, times 1 / their sum into blk, the block's
     sums in float (a row that sees no key adds nothing). A row's are added as the next row's are
     exponentiated, in the same pass, and the last row's after: a pass of their own over every
     row of the block, in double, was a tenth of a call at 1280 x 1280 (the double accumulator
     alone was not what cost; the strided walk over the rows was). */
  const float *pend = NULL; /* the row whose probabilities are not in blk yet, and its 1 / sum */
  kvi_vf pw = kvi_vsplat(0.0f);
  int live = 0; /* blk holds sums */
  for (int b = 0; b < rows; b++) {
    const int i = i0 + b;
    float *s = sb + (int64_t)b * nkp;
    const int32_t qb = kb ? blocks[qpos[i]] : 0;
    const int32_t qs = ks ? seqs[qpos[i]] : 0;
    /* One pass over the row: -inf where the row does not see the key (and past nk), the max. */
    kvi_vf mv = kvi_vsplat(-INFINITY);
    int seen = 0;
#if KV_VL > 1
    kvi_vi lane, any = {0};
    for (int l = 0; l < KV_VL; l++) lane[l] = l;
    if (!kb && !ks) {
      /* Every key seen (attend all): the padding keys set apart, then only the max, a load and
         a max a vector where the masked pass also compares, selects and stores (1.02x). */
      for (int64_t j = nk; j < nkp; j++) s[j] = -INFINITY;
      for (int64_t j0 = 0; j0 < nkp; j0 += KV_VL) mv = kvi_vmax(mv, kvi_vload(s + j0));
      any[0] = 1;
    } else {
      for (int64_t j0 = 0; j0 < nkp; j0 += KV_VL) {
        kvi_vi v = lane + (int32_t)j0 < nk;
        if (kb) v &= *(const kvi_viu *)(kb + j0) <= qb;
        if (ks) v &= *(const kvi_viu *)(ks + j0) == qs;
        const kvi_vf x = kvi_vselect(v, kvi_vload(s + j0), kvi_vsplat(-INFINITY));
        kvi_vstore(s + j0, x);
        mv = kvi_vmax(mv, x);
        any |= v;
      }
    }
    for (int l = 0; l < KV_VL; l++) seen |= any[l] != 0;
#else
    for (int64_t j = 0; j < nkp; j++) {
      const int v = j < nk && (!kb || kb[j] <= qb) && (!ks || ks[j] == qs);
      s[j] = v ? s[j] : -INFINITY;
      mv = kvi_vmax(mv, s[j]);
      seen |= v;
    }
#endif
    if (!seen) continue;
    const kvi_vf m = kvi_vsplat(kvi_vhmax(mv));
    kvi_vf sum = kvi_vsplat(0.0f);
    if (!pend) {
      for (int64_t j0 = 0; j0 < nkp; j0 += KV_VL) {
        const kvi_vf e = kvi_vexp2_neg(kvi_vload(s + j0) - m);
        kvi_vstore(s + j0, e);
        sum += e;
      }
    } else {
      for (int64_t j0 = 0; j0 < nkp; j0 += KV_VL) {
        const kvi_vf e = kvi_vexp2_neg(kvi_vload(s + j0) - m);
        kvi_vstore(s + j0, e);
        sum += e;
        const kvi_vf p = kvi_vload(pend + j0) * pw;
        kvi_vstore(blk + j0, live ? kvi_vload(blk + j0) + p : p);
      }
      live = 1;
    }
    pend = s;
    pw = kvi_vsplat((float)(1.0 / kvi_vhsum(sum)));
  }
  if (pend) {
    for (int64_t j0 = 0; j0 < nkp; j0 += KV_VL) {
      const kvi_vf p = kvi_vload(pend + j0) * pw;
      kvi_vstore(blk + j0, live ? kvi_vload(blk + j0) + p : p);
    }
    live = 1;
  }
  if (!live) return;
  for (int64_t j = 0; j < nkp; j++) acc[j] += blk[j]; /* the padding keys' are 0 */
}

/*
 * A score probe, not a hot path of a step, but one that sees every query row. Per KV head, K is
 * transposed once into the GEMM's weight panels (NR keys by hd, keys padded with zeros to whole
 * panels) and a block of MR query rows of one head into the GEMM's A micro-panel, so that the
 * scores are the GEMM's micro-kernel (its FMAs in the same order as a row-by-row dot product):
 * with the keys of a tile held in registers and the queries broadcast, a tile costs the GEMM's
 * loads per FMA, where scoring a few rows against four vectors of keys loaded each key vector
 * once per row (the compiler folded the loads into the FMAs) and the loads bounded it. Which key
 * a row sees is a compare of two int arrays made once per call (not per head and row). The
 * queries are packed times scale * log2(e), so that the probabilities are powers of 2, exponentiated
 * as vectors by the attention kernel's exp2 (the natural exp with its range reduction, mul and add
 * apart, was a fifth of a call over every row of the quick canvas); a block's rows' probabilities
 * are summed in float, each block's sums added to the thread's in double, and the threads' sums
 * are reduced at the end.
 */
void kv_attention_mass(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q,
                       const float *kcanvas, const int32_t *qpos, const int32_t *kpos,
                       const int32_t *blocks, const int32_t *seqs, double *mass) {
  if (nk <= 0) return;
  memset(mass, 0, sizeof(double) * (size_t)nk);
  if (nq <= 0 || heads <= 0 || kvh <= 0 || hd <= 0 || heads % kvh) return;
  const int group = heads / kvh;
  /* Whole panels of keys, and whole blocks of 16 keys for the transpose. */
  const int64_t pad = KV_GEMM_NR > 16 ? KV_GEMM_NR : 16;
  const int64_t nkp = kvi_ceil_div(nk, pad) * pad;
  const int64_t panel = (int64_t)hd * KV_GEMM_NR; /* floats of one panel: [hd][NR] */
  /* Fewer query rows than a micro-panel (one, for the probe of an attention row): each head's
     scores straight from the key rows, transposed 16 by 16 in registers, where the transpose of
     every key into panels was most of the call and the micro-kernel's rows were mostly padding
     (one row 1.2-2.2x, the same bits). Each head of a group transposes its keys again, so not for
     more rows: 4 rows of 4 heads a KV head ran 0.85x, 7 rows of one head 0.8-0.9x. */
  const int direct = KV_VL == 16 && (nq <= 2 || (nq <= 4 && group <= 2));
  float *kt = direct ? NULL : kvi_thread_buffer((size_t)kvh * hd * nkp);
  /* The keys' blocks and sequences, padded to nkp for whole-vector reads (the padding is never seen). */
  int32_t *kb = blocks ? malloc(sizeof(int32_t) * (size_t)nkp) : NULL;
  int32_t *ks = seqs ? malloc(sizeof(int32_t) * (size_t)nkp) : NULL;
  if ((!direct && !kt) || (blocks && !kb) || (seqs && !ks)) {
    /* Out of memory: a visibly wrong result, as kv_attention's. */
    for (int j = 0; j < nk; j++) mass[j] = NAN;
    free(kb);
    free(ks);
    return;
  }
  for (int64_t j = 0; j < nkp; j++) {
    if (kb) kb[j] = j < nk ? blocks[kpos[j]] : 0;
    if (ks) ks[j] = j < nk ? seqs[kpos[j]] : 0;
  }
  const int64_t jblocks = nkp / 16;
  const int qblocks = kvi_ceil_div(nq, KV_GEMM_MR);
  const int64_t items = (int64_t)heads * qblocks;
  const double work = 2.0 * nq * nk * heads * hd;
  int failed = 0; /* a thread's buffers could not be allocated */
#ifdef _OPENMP
#pragma omp parallel if (work > KV_PAR_MIN_WORK)
#endif
  {
    /* Transposed 16 keys at a time (the 16 rows of K being read stay in L1 across d), by all
       threads: with one query row, as the probe of an attention row asks, the transpose is most of
       the call. Key j of KV head g lands in panel j / NR, column j % NR. */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t tb = 0; tb < (direct ? 0 : (int64_t)kvh * jblocks); tb++) {
      const int g = (int)(tb / jblocks);
      const int64_t j0 = tb % jblocks * 16;
      const float *rows[16];
      for (int t = 0; t < 16; t++)
        rows[t] = j0 + t < nk ? kcanvas + ((int64_t)kpos[j0 + t] * kvh + g) * hd : kvi_zero_row(hd);
      float *dst = kt + (int64_t)g * hd * nkp + j0 / KV_GEMM_NR * panel;
      if (KV_GEMM_NR % 16 == 0)
        kvi_transpose_keys(rows, hd, dst + j0 % KV_GEMM_NR, KV_GEMM_NR);
      else
        for (int t = 0; t < 16; t++) {
          const int64_t j = j0 + t;
          float *col = kt + (int64_t)g * hd * nkp + j / KV_GEMM_NR * panel + j % KV_GEMM_NR;
          for (int d = 0; d < hd; d++) col[(int64_t)d * KV_GEMM_NR] = rows[t][d];
        }
    }
    double *acc = calloc((size_t)nkp, sizeof(double));
    float *blk = kvi_aligned_buffer((size_t)nkp);
    /* The scale, in log2 units so that the softmax is a power of 2, goes into the packed queries. */
    const float qscale = scale * 1.44269504088896341f;
#if KV_VL == 16
    if (direct) {
      /* The thread's items (qblocks is 1: an item is a head), the block a static schedule gives
         it, so that the threads' sums group as the GEMM path's do. Their scores are taken a block
         of 16 keys at a time for all of its heads, whose slices of a key row lie side by side,
         where head after head walked every key, its hd floats of each canvas row a page apart at
         16 heads of 64 (keys in cache: one row over 160-1280 keys 1.03-1.12x, 1.11x on one
         thread; read from memory, as a probe's row after its full mass, the same). Each key's sum
         over d runs in order from 0, as the micro-kernel's: the same bits. The thread's buffer is
         free here (kt is not made). */
#ifdef _OPENMP
      const int64_t nt = omp_get_num_threads(), tn = omp_get_thread_num();
#else
      const int64_t nt = 1, tn = 0;
#endif
      int64_t per = items / nt, extra = items % nt;
      if (tn < extra) {
        per++;
        extra = 0;
      }
      const int64_t lo = per * tn + extra;
      const size_t qfloats = kvi_lines((size_t)per * nq * hd);
      float *qd = per > 0 ? kvi_thread_buffer(qfloats + (size_t)per * nq * nkp) : NULL;
      if (per > 0 && (!qd || !acc || !blk)) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
        failed = 1;
      } else if (per > 0) {
        float *sd = qd + qfloats;
        /* The items' scaled queries, [item][row][hd]. */
        for (int64_t it = 0; it < per; it++)
          for (int b = 0; b < nq; b++)
            for (int d = 0; d < hd; d++)
              qd[(it * nq + b) * hd + d] = q[((int64_t)b * heads + lo + it) * hd + d] * qscale;
        for (int64_t j0 = 0; j0 < nkp; j0 += 16)
          for (int64_t it = 0; it < per; it++) {
            const int h = (int)(lo + it);
            const float *kr[16];
            for (int t = 0; t < 16; t++)
              kr[t] = j0 + t < nk ? kcanvas + ((int64_t)kpos[j0 + t] * kvh + h / group) * hd : kvi_zero_row(hd);
            __m512 sv[4]; /* direct: nq <= 4 */
            for (int b = 0; b < nq; b++) sv[b] = _mm512_setzero_ps();
            for (int d0 = 0; d0 < hd; d0 += 16) {
              const int nd = kvi_imin(16, hd - d0);
              __m512 r[16];
              kvi_rows_transposed(kr, d0, nd, r);
              for (int b = 0; b < nq; b++) {
                const float *qr = qd + (it * nq + b) * hd + d0;
                for (int d = 0; d < nd; d++) sv[b] = _mm512_fmadd_ps(r[d], _mm512_set1_ps(qr[d]), sv[b]);
              }
            }
            for (int b = 0; b < nq; b++) _mm512_store_ps(sd + (it * nq + b) * nkp + j0, sv[b]);
          }
        for (int64_t it = 0; it < per; it++)
          kvi_mass_rows(nq, 0, nk, nkp, sd + it * nq * nkp, qpos, blocks, seqs, kb, ks, blk, acc);
      }
    } else
#endif
    {
      float *qp = kvi_aligned_buffer((size_t)hd * KV_GEMM_MR);
      float *sb = kvi_aligned_buffer((size_t)KV_GEMM_MR * nkp);
      if (!qp || !sb || !acc || !blk) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
        failed = 1;
      }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t it = 0; it < items; it++) {
        if (!qp || !sb || !acc || !blk) continue;
        const int h = (int)(it / qblocks);
        const int i0 = (int)(it % qblocks) * KV_GEMM_MR;
        const int rows = kvi_imin(KV_GEMM_MR, nq - i0);
        const float *ktg = kt + (int64_t)(h / group) * hd * nkp;
        /* The block's rows as an A micro-panel [hd][MR]; rows past nq are zeros, their scores unused.
           With AVX-512, 16 floats of each row at a time through registers (one at a time, the pack
           was 7% of a call over every row of the quick canvas). */
        int d0 = 0;
#if KV_VL == 16 && KV_GEMM_MR == 8
        const __m512 qs16 = _mm512_set1_ps(qscale);
        for (; d0 + 16 <= hd; d0 += 16) {
          __m512 r[16];
          for (int b = 0; b < 16; b++)
            r[b] = b < rows ? _mm512_mul_ps(_mm512_loadu_ps(q + ((int64_t)(i0 + b) * heads + h) * hd + d0), qs16)
                            : _mm512_setzero_ps();
          kvi_transpose16(r);
          for (int d = 0; d < 16; d++) _mm256_store_ps(qp + (d0 + d) * KV_GEMM_MR, _mm512_castps512_ps256(r[d]));
        }
#endif
        for (int b = 0; b < KV_GEMM_MR; b++) {
          const float *qr = q + ((int64_t)(i0 + kvi_imin(b, rows - 1)) * heads + h) * hd;
          for (int d = d0; d < hd; d++) qp[d * KV_GEMM_MR + b] = b < rows ? qr[d] * qscale : 0.0f;
        }
        for (int64_t j0 = 0; j0 < nkp; j0 += KV_GEMM_NR)
          kvi_micro_store(hd, qp, ktg + j0 / KV_GEMM_NR * panel, sb + j0, nkp, 0, 0, 0);
        kvi_mass_rows(rows, i0, nk, nkp, sb, qpos, blocks, seqs, kb, ks, blk, acc);
      }
      free(qp);
      free(sb);
    }
#ifdef _OPENMP
#pragma omp critical
#endif
    for (int j = 0; j < nk && acc; j++) mass[j] += acc[j];
    free(acc);
    free(blk);
  }
  if (failed)
    for (int j = 0; j < nk; j++) mass[j] = NAN;
  free(kb);
  free(ks);
}

void kv_merge(int rows, int heads, int hd, float *o1, float *lse1, const float *o2, const float *lse2) {
  const int64_t pairs = (int64_t)(rows > 0 ? rows : 0) * (heads > 0 ? heads : 0);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)pairs * hd > KV_PAR_MIN_WORK)
#endif
  for (int64_t r = 0; r < pairs; r++) {
    const float l1 = lse1[r];
    const float l2 = lse2[r];
    const float m = l1 > l2 ? l1 : l2;
    float *x = o1 + r * hd;
    const float *y = o2 + r * hd;
    if (m == -INFINITY) {
      for (int d = 0; d < hd; d++) x[d] = 0.0f;
      lse1[r] = -INFINITY;
      continue;
    }
    const float w1 = expf(l1 - m);
    const float w2 = expf(l2 - m);
    const float total = w1 + w2;
    const float a = w1 / total;
    const float b = w2 / total;
    for (int d = 0; d < hd; d++) x[d] = (a == 0.0f ? 0.0f : a * x[d]) + (b == 0.0f ? 0.0f : b * y[d]);
    lse1[r] = m + logf(total);
  }
}

void kv_rmsnorm(int n, int d, const float *x, const int32_t *rows, const float *w, float eps, float *out) {
  if (n <= 0 || d <= 0) return;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)n * d > KV_PAR_MIN_WORK)
#endif
  for (int i = 0; i < n; i++) {
    const float *src = x + (int64_t)(rows ? rows[i] : i) * d;
    float *dst = out + (int64_t)i * d;
    kvi_vf ss = kvi_vsplat(0.0f);
    int j = 0;
    for (; j + KV_VL <= d; j += KV_VL) {
      const kvi_vf v = kvi_vload(src + j);
      ss += v * v;
    }
    float sum = kvi_vhsum(ss);
    for (; j < d; j++) sum += src[j] * src[j];
    const float inv = 1.0f / sqrtf(sum / (float)d + eps);
    for (j = 0; j < d; j++) dst[j] = src[j] * w[j] * inv;
  }
#ifdef KV_FAULT_RMSNORM
  KVI_FAULT(KV_FAULT_RMSNORM, out, n, d, d);
#endif
}

/*
 * RoPE's cos and sin of positions [0, npos) for one (theta, hd), built on first use and kept:
 * every layer rotates q and k at the same positions, and the angles cost a pow and a sincos in
 * double each (a fifth of a small model's non-GEMM time when computed per call). The values are
 * computed exactly as for a position outside the table, so the table changes no result.
 */
#define KV_ROPE_TABLE_MAX 65536 /* positions; rows beyond are computed per call */
static struct {
  pthread_mutex_t lock;
  float theta;
  int hd;
  int npos;
  float *cs; /* [npos][hd]: cos of the half dimensions, then sin */
} kvi_rope_table = {PTHREAD_MUTEX_INITIALIZER, 0.0f, 0, 0, NULL};

static void kvi_rope_angles(double p, int hd, float theta, float *cs) {
  const int half = hd / 2;
  for (int i = 0; i < half; i++) {
    const double angle = p * pow((double)theta, -2.0 * i / hd);
    cs[i] = (float)cos(angle);
    cs[half + i] = (float)sin(angle);
  }
}

/* The table covering positions [0, need) for (theta, hd), or NULL (too many, or out of memory). */
static const float *kvi_rope_cs(float theta, int hd, int need) {
  if (need > KV_ROPE_TABLE_MAX) return NULL;
  if (kvi_rope_table.cs && kvi_rope_table.theta == theta && kvi_rope_table.hd == hd && kvi_rope_table.npos >= need)
    return kvi_rope_table.cs;
  const int npos = (int)kvi_ceil_div(need, 1024) * 1024;
  float *cs = malloc(sizeof(float) * (size_t)npos * hd);
  if (!cs) return NULL;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)npos * hd > KV_PAR_MIN_WORK)
#endif
  for (int p = 0; p < npos; p++) kvi_rope_angles(p, hd, theta, cs + (int64_t)p * hd);
  free(kvi_rope_table.cs);
  kvi_rope_table.cs = cs;
  kvi_rope_table.theta = theta;
  kvi_rope_table.hd = hd;
  kvi_rope_table.npos = npos;
  return cs;
}

void kv_rope(int n, int heads, int hd, float *x, const int32_t *pos, float theta) {
  if (n <= 0 || heads <= 0 || hd < 2) return;
  const int half = hd / 2;
  int need = 0; /* one past the largest position; -1 when one is negative */
  for (int r = 0; r < n && need >= 0; r++) {
    const int p = pos ? pos[r] : r;
    need = p < 0 ? -1 : (p + 1 > need ? p + 1 : need);
  }
  /* The lock also keeps the table alive while it is read (two host threads may call this). */
  pthread_mutex_lock(&kvi_rope_table.lock);
  const float *table = need >= 0 ? kvi_rope_cs(theta, hd, need) : NULL;
#ifdef _OPENMP
#pragma omp parallel if ((double)n * heads * hd > KV_PAR_MIN_WORK)
#endif
  {
    float *own = table ? NULL : malloc(sizeof(float) * 2 * (size_t)half);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int r = 0; r < n; r++) {
      const int p = pos ? pos[r] : r;
      const float *cs = table ? table + (int64_t)p * hd : own;
      if (!table) kvi_rope_angles(p, hd, theta, own);
      for (int h = 0; h < heads; h++) {
        float *row = x + ((int64_t)r * heads + h) * hd;
        for (int i = 0; i < half; i++) {
          const float lo = row[i];
          const float hi = row[i + half];
          row[i] = lo * cs[i] - hi * cs[half + i];
          row[i + half] = hi * cs[i] + lo * cs[half + i];
        }
      }
    }
    free(own);
  }
  pthread_mutex_unlock(&kvi_rope_table.lock);
#ifdef KV_FAULT_ROPE
  KVI_FAULT(KV_FAULT_ROPE, x, n, (int64_t)heads * hd, (int64_t)heads * hd);
#endif
}

void kv_swiglu(int64_t n, const float *gate, const float *up, float *out) {
  if (n <= 0) return;
  const int64_t chunks = n / KV_VL;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)n * 16 > KV_PAR_MIN_WORK)
#endif
  for (int64_t c = 0; c < chunks; c++) {
    const kvi_vf g = kvi_vload(gate + c * KV_VL);
    const kvi_vf e = kvi_vexp(kvi_vsplat(0.0f) - g);
    kvi_vstore(out + c * KV_VL, g / (1.0f + e) * kvi_vload(up + c * KV_VL));
  }
  for (int64_t i = chunks * KV_VL; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
#ifdef KV_FAULT_SWIGLU
  KVI_FAULT(KV_FAULT_SWIGLU, out, 1, n, n);
#endif
}

/*
 * Softmax statistics of a head's logits, as src/model/golden.ts softmaxStats defines them, without
 * widening a row of a real vocabulary (126-150K) to float64 and looping over it in JavaScript:
 * one pass for the two largest logits (per lane, merged at the end) and their finiteness, one for
 * sum(e) and sum(e z), z = l - max and e = exp(z), in float32 lanes (kvi_vexp, about 1 ulp), each
 * eight vectors' sums added in double.
 */
#if KV_VL > 1
static inline kvi_vf kvi_vmin(kvi_vf a, kvi_vf b) { return kvi_vselect(a < b, a, b); }
#endif

/* Top two of x[0..n) into the lanes m1 >= m2 (vectors) and s1 >= s2 (the scalar tail); bad set by a
   NaN or an infinity. */
static void kvi_top2(const float *x, int64_t n, float *m1, float *m2, int *bad) {
  int64_t i = 0;
#if KV_VL > 1
  kvi_vf v1 = kvi_vload(m1), v2 = kvi_vload(m2);
  kvi_vi nonfinite = (kvi_vi){0};
  for (; i + KV_VL <= n; i += KV_VL) {
    const kvi_vf y = kvi_vload(x + i);
    const kvi_vf d = y - y; /* 0, or NaN for a NaN or an infinity */
    nonfinite |= d != d;
    v2 = kvi_vmax(v2, kvi_vmin(v1, y));
    v1 = kvi_vmax(v1, y);
  }
  kvi_vstore(m1, v1);
  kvi_vstore(m2, v2);
  for (int l = 0; l < KV_VL; l++) *bad |= nonfinite[l] != 0;
#endif
  for (; i < n; i++) {
    const float y = x[i];
    if (!isfinite(y)) *bad = 1;
    if (y > m1[KV_VL]) {
      m2[KV_VL] = m1[KV_VL];
      m1[KV_VL] = y;
    } else if (y > m2[KV_VL]) {
      m2[KV_VL] = y;
    }
  }
}

/* sum(e) and sum(e z) over x[0..n), z = x - max, added to sum and weighted. */
static void kvi_exp_sums(const float *x, int64_t n, float max, double *sum, double *weighted) {
  int64_t i = 0;
#if KV_VL > 1
  const kvi_vf m = kvi_vsplat(max);
  for (; i + 8 * KV_VL <= n; i += 8 * KV_VL) {
    kvi_vf s = kvi_vsplat(0.0f), w = kvi_vsplat(0.0f);
    for (int u = 0; u < 8; u++) {
      const kvi_vf z = kvi_vload(x + i + u * KV_VL) - m;
      const kvi_vf e = kvi_vexp(z);
      s += e;
      w += e * z;
    }
    *sum += kvi_vhsum(s);
    *weighted += kvi_vhsum(w);
  }
#endif
  for (; i < n; i++) {
    const float z = x[i] - max;
    const float e = z >= -87.33654475f ? expf(z) : 0.0f;
    *sum += e;
    *weighted += (double)e * z;
  }
}

void kv_softmax_stats(int rows, int v, const float *logits, int exclude, double *stats, int32_t *argmax) {
  if (rows <= 0 || v <= 0) return;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)rows * v * 16 > KV_PAR_MIN_WORK)
#endif
  for (int r = 0; r < rows; r++) {
    const float *x = logits + (int64_t)r * v;
    /* The lanes' and the tail's top two, over the row without the excluded logit. */
    float m1[KV_VL + 1], m2[KV_VL + 1];
    for (int l = 0; l <= KV_VL; l++) m1[l] = m2[l] = -INFINITY;
    int bad = 0;
    const int ex = exclude >= 0 && exclude < v ? exclude : v;
    kvi_top2(x, ex, m1, m2, &bad);
    if (ex < v) {
      bad |= !isfinite(x[ex]);
      kvi_top2(x + ex + 1, v - ex - 1, m1, m2, &bad);
    }
    /* The largest is the largest m1; the second largest, the rest of m1 and every m2. */
    int top = 0;
    for (int l = 1; l <= KV_VL; l++) top = m1[l] > m1[top] ? l : top;
    const float max = m1[top];
    float second = -INFINITY;
    for (int l = 0; l <= KV_VL; l++) {
      if (l != top && m1[l] > second) second = m1[l];
      if (m2[l] > second) second = m2[l];
    }
    if (bad || max == -INFINITY) {
      argmax[r] = -1; /* a logit that is not finite: the caller reports the row */
      stats[3 * r] = stats[3 * r + 1] = stats[3 * r + 2] = NAN;
      continue;
    }
    int at = 0;
    while (at == ex || x[at] != max) at++;
    double sum = 0.0, weighted = 0.0;
    kvi_exp_sums(x, ex, max, &sum, &weighted);
    if (ex < v) kvi_exp_sums(x + ex + 1, v - ex - 1, max, &sum, &weighted);
    const double confidence = 1.0 / sum;
    argmax[r] = at;
    stats[3 * r] = confidence;
    stats[3 * r + 1] = confidence - exp((double)second - max) / sum;
    stats[3 * r + 2] = log(sum) - weighted / sum;
  }
}

void kv_row_drift(int n, int width, int from, int to, const float *a, const float *b, double *out) {
  if (n <= 0) return;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)n * (to - from) * 8 > KV_PAR_MIN_WORK)
#endif
  for (int i = 0; i < n; i++) {
    const float *x = a + (int64_t)i * width + from;
    const float *y = b + (int64_t)i * width + from;
    if (to <= from || isnan(y[0])) {
      out[i] = 1.0;
      continue;
    }
    /* Four partial sums of each product: the float products are exact in double, and four chains
       keep the adds from waiting on each other. */
    double ab[4] = {0, 0, 0, 0}, aa[4] = {0, 0, 0, 0}, bb[4] = {0, 0, 0, 0};
    const int w = to - from;
    int j = 0;
    for (; j + 4 <= w; j += 4)
      for (int u = 0; u < 4; u++) {
        const double p = x[j + u], q = y[j + u];
        ab[u] += p * q;
        aa[u] += p * p;
        bb[u] += q * q;
      }
    for (; j < w; j++) {
      const double p = x[j], q = y[j];
      ab[0] += p * q;
      aa[0] += p * p;
      bb[0] += q * q;
    }
    const double sab = (ab[0] + ab[1]) + (ab[2] + ab[3]);
    const double saa = (aa[0] + aa[1]) + (aa[2] + aa[3]);
    const double sbb = (bb[0] + bb[1]) + (bb[2] + bb[3]);
    out[i] = saa == 0.0 && sbb == 0.0 ? 0.0 : 1.0 - sab / sqrt(saa * sbb);
  }
}

void kv_embed(int n, int d, const void *table, int dtype, const int32_t *ids, float *out) {
  if (n <= 0 || d <= 0) return;
  for (int i = 0; i < n; i++) {
    float *o = out + (int64_t)i * d;
    const int64_t at = (int64_t)ids[i] * d;
    if (!dtype) {
      memcpy(o, (const float *)table + at, sizeof(float) * d);
      continue;
    }
    const uint16_t *row = (const uint16_t *)table + at;
    if (dtype == KV_F16)
      for (int j = 0; j < d; j++) o[j] = kvi_f16_f32(row[j]);
    else
      for (int j = 0; j < d; j++) o[j] = kvi_bf16_f32(row[j]);
  }
}

#ifdef _OPENMP
/* The first and one past the last row an index list (or the identity of n rows) names. */
static void kvi_row_span(int n, const int32_t *rows, int64_t *lo, int64_t *hi) {
  *lo = rows ? INT64_MAX : 0;
  *hi = rows ? INT64_MIN : n;
  for (int i = 0; rows && i < n; i++) {
    *lo = rows[i] < *lo ? rows[i] : *lo;
    *hi = rows[i] + 1 > *hi ? rows[i] + 1 : *hi;
  }
}
#endif

void kv_copy_rows(int n, int width, const float *src, const int32_t *src_rows, float *dst, const int32_t *dst_rows) {
  if (n <= 0 || width <= 0) return;
  /* A large copy between rows that do not overlap is spread over the threads: one core copied the
     carried hidden state of a no-cache step (hundreds of rows) while the other waited. Where
     source and destination rows may overlap, the rows are moved one after the other, in order. */
#ifdef _OPENMP
  /* The spans are only looked at for a large copy: a cached step copies a few rows, many times. */
  int apart = 0;
  if ((double)n * width > KV_COPY_PAR_FLOATS) {
    int64_t slo, shi, dlo, dhi;
    kvi_row_span(n, src_rows, &slo, &shi);
    kvi_row_span(n, dst_rows, &dlo, &dhi);
    const uintptr_t s0 = (uintptr_t)(src + slo * width), s1 = (uintptr_t)(src + shi * width);
    const uintptr_t d0 = (uintptr_t)(dst + dlo * width), d1 = (uintptr_t)(dst + dhi * width);
    apart = d1 <= s0 || s1 <= d0;
  }
#pragma omp parallel for schedule(static) if (apart)
#endif
  for (int i = 0; i < n; i++)
    memmove(dst + (int64_t)(dst_rows ? dst_rows[i] : i) * width, src + (int64_t)(src_rows ? src_rows[i] : i) * width,
            sizeof(float) * width);
}

/*
 * The rows are compared on every thread, each marking its rows in changed (the row, or -1), then
 * packed in order: a probe compares a whole canvas (two 5 MB arrays at 1280 rows of 1024) against
 * its memo at every layer, and one thread read them at a fraction of the machine's bandwidth.
 */
int kv_rows_changed(int n, int width, const float *a, float *kept, int32_t *changed) {
  if (n <= 0 || width <= 0) return 0;
  const size_t bytes = sizeof(float) * (size_t)width;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)n * width > KV_PAR_MIN_WORK)
#endif
  for (int r = 0; r < n; r++) {
    const float *src = a + (int64_t)r * width;
    float *dst = kept + (int64_t)r * width;
    const int differs = memcmp(src, dst, bytes) != 0;
    if (differs) memcpy(dst, src, bytes);
    changed[r] = differs ? r : -1;
  }
  int count = 0;
  for (int r = 0; r < n; r++)
    if (changed[r] >= 0) changed[count++] = changed[r];
  return count;
}

int kv_rows_within(int n, const int32_t *rows, int nw, const int32_t *writes, int L) {
  if (n <= 0) return 1;
  if (n == nw && memcmp(rows, writes, sizeof(int32_t) * (size_t)n) == 0) return 1;
  if (n > nw || L <= 0) return 0;
  unsigned char *mark = calloc((size_t)L, 1);
  if (!mark) return 0;
  for (int i = 0; i < nw; i++)
    if (writes[i] >= 0 && writes[i] < L) mark[writes[i]] = 1;
  int all = 1;
  for (int i = 0; i < n && all; i++) all = rows[i] >= 0 && rows[i] < L && mark[rows[i]];
  free(mark);
  return all;
}

/* mark: 1 for a row of writes, 2 for a row saved and not yet restored. */
int kv_overlay_save(int n, const int32_t *rows, int nw, const int32_t *writes, int L, int width, const float *cache, float *saved, unsigned char **mark) {
  *mark = 0;
  if (n <= 0 || L <= 0 || (n == nw && memcmp(rows, writes, sizeof(int32_t) * (size_t)n) == 0)) return 0;
  unsigned char *m = calloc((size_t)L, 1);
  if (!m) return -1;
  for (int i = 0; i < nw; i++)
    if (writes[i] >= 0 && writes[i] < L) m[writes[i]] = 1;
  int k = 0;
  for (int i = 0; i < n; i++) {
    const int r = rows[i];
    if (r < 0 || r >= L || m[r]) continue;
    m[r] = 2;
    memcpy(saved + (int64_t)k++ * width, cache + (int64_t)r * width, sizeof(float) * (size_t)width);
  }
  if (k > 0) *mark = m;
  else free(m);
  return k;
}

void kv_overlay_restore(int n, const int32_t *rows, int L, int width, const float *saved, float *cache, unsigned char *mark) {
  if (!mark) return;
  int k = 0;
  for (int i = 0; i < n; i++) {
    const int r = rows[i];
    /* The rows save skipped are outside the canvas or marked 1; a saved row is restored once. */
    if (r < 0 || r >= L || mark[r] != 2) continue;
    mark[r] = 3;
    memcpy(cache + (int64_t)r * width, saved + (int64_t)k++ * width, sizeof(float) * (size_t)width);
  }
  free(mark);
}
