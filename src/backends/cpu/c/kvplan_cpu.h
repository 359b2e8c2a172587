/*
 * kvplan CPU primitives: the C ABI that generated step code calls and that the runtime loads
 * through koffi. Float tensors are float32, row-major; index lists are int32 canvas positions.
 * Weights are stored as the model holds them, [out, in]; GEMMs use them packed (kv_pack_weight).
 */
#ifndef KVPLAN_CPU_H
#define KVPLAN_CPU_H
#include <stdint.h>

/* Threads used by every primitive (OpenMP); <= 0 means all cores. */
void kv_set_threads(int n);
int kv_get_threads(void);

/* Packed form of a weight W[n][k] for the GEMM micro-kernel; kv_packed_size floats. */
int64_t kv_packed_size(int n, int k);
void kv_pack_weight(int n, int k, const float *w, float *packed);

/*
 * C[i][j] = (accumulate ? C[i][j] : 0) + sum_k A[r(i)][k] * W[j][k] + (bias ? bias[j] : 0),
 * r(i) = arows ? arows[i] : i. A has row stride lda, C row stride ldc. W packed by kv_pack_weight.
 */
void kv_gemm(int m, int n, int k, const float *a, int lda, const int32_t *arows, const float *packed,
             const float *bias, float *c, int ldc, int accumulate);

/*
 * `count` GEMMs of one A, as kv_gemm(m, n[g], k, a, lda, arows, packed[g], bias[g], c[g], ldc[g], 0)
 * for each g, in one parallel region that packs A once: a layer's projections of one input.
 */
void kv_gemm_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *n,
                   const float *const *packed, const float *const *bias, float *const *c, const int *ldc);

/*
 * 16-bit weights: W[n][k] as raw bit patterns, row-major (as a Hugging Face Linear stores it),
 * packed by kv_pack_weight16 into kv_packed_size16 uint16 elements (2 bytes a weight). kv_gemm16
 * has the contract of kv_gemm (float32 activations, bias and C, float32 accumulation) and reads
 * the weights widened exactly to float32. dtype:
 *   KV_BF16      bfloat16 weights; the result is the float32 GEMM of A and the exact weights.
 *   KV_F16       IEEE binary16 weights (subnormals, inf and NaN included); likewise.
 *   KV_BF16_DOT  bfloat16 weights, packed as for KV_BF16, with A rounded to bfloat16 (to nearest
 *                even) as well: bf16 dot products (vdpbf16ps where the target has AVX512_BF16;
 *                it flushes subnormal inputs and results to zero), float32 accumulation.
 * A packed weight is read with the dtype it was packed with (KV_BF16 and KV_BF16_DOT share the
 * layout) by the same build of the library. Another dtype packs or computes nothing.
 */
#define KV_BF16 1
#define KV_F16 2
#define KV_BF16_DOT 3
int64_t kv_packed_size16(int n, int k);
void kv_pack_weight16(int n, int k, const uint16_t *w, int dtype, uint16_t *packed);
void kv_gemm16(int m, int n, int k, const float *a, int lda, const int32_t *arows, const uint16_t *packed,
               int dtype, const float *bias, float *c, int ldc, int accumulate);
/* kv_gemm_multi with 16-bit weights of one dtype, as kv_gemm16. */
void kv_gemm16_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *n,
                     const uint16_t *const *packed, int dtype, const float *const *bias, float *const *c,
                     const int *ldc);
/* The code path kv_gemm16 takes for dtype in this build, in words ("" for an unknown dtype). */
const char *kv_gemm16_path(int dtype);

/*
 * Attention of nq query rows over nk keys read through kpos from canvas-sized K/V ([L][kvh][hd]):
 * o[i][h][:] = softmax_j(scale * q[i][h]·k[kpos[j]][g]) v[kpos[j]][g], g = h / (heads / kvh),
 * lse[i][h] = log-sum-exp of the scores (natural log). Query i sees key j only if
 * blocks[kpos[j]] <= blocks[qpos[i]] (blocks != NULL: block-causal) and seqs[kpos[j]] ==
 * seqs[qpos[i]] (seqs != NULL: a batch of sequences shares the canvas; the keys of a sequence are
 * expected to be contiguous in kpos). A row that sees no key: o = 0, lse = -INFINITY.
 */
void kv_attention(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q,
                  const float *kcanvas, const float *vcanvas, const int32_t *qpos, const int32_t *kpos,
                  const int32_t *blocks, const int32_t *seqs, float *o, float *lse);

/*
 * kv_attention for the query heads of KV head g (0 <= g < kvh) alone: every other head gets o = 0
 * and lse = -INFINITY, the partial of an empty key set, so that merging one call per KV head gives
 * attention with a key set per KV head.
 */
void kv_attention_kv_head(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q,
                          const float *kcanvas, const float *vcanvas, const int32_t *qpos,
                          const int32_t *kpos, const int32_t *blocks, const int32_t *seqs, float *o,
                          float *lse, int g);

/*
 * mass[j] = the softmax probability key j receives, summed over the nq query rows and all heads
 * (same scores, scale and visibility rules as kv_attention; a row that sees no key adds nothing).
 * Used by score probes; mass has nk doubles and is overwritten.
 */
void kv_attention_mass(int nq, int nk, int heads, int kvh, int hd, float scale, const float *q,
                       const float *kcanvas, const int32_t *qpos, const int32_t *kpos,
                       const int32_t *blocks, const int32_t *seqs, double *mass);

/* In place: (o1, lse1) = merge((o1, lse1), (o2, lse2)) by the log-sum-exp rule; rows*heads pairs. */
void kv_merge(int rows, int heads, int hd, float *o1, float *lse1, const float *o2, const float *lse2);

/* out[i] = x[r(i)] * w / sqrt(mean(x[r(i)]^2) + eps), r(i) = rows ? rows[i] : i. */
void kv_rmsnorm(int n, int d, const float *x, const int32_t *rows, const float *w, float eps, float *out);

/* In place rotary embedding, rotate-half pairs (i, i + hd/2), angle pos[r] * theta^(-2i/hd). */
void kv_rope(int n, int heads, int hd, float *x, const int32_t *pos, float theta);

/* out = silu(gate) * up, n elements. */
void kv_swiglu(int64_t n, const float *gate, const float *up, float *out);

/*
 * out[i] = table[ids[i]], rows of d elements: floats (dtype 0) or the 16-bit weights of dtype
 * KV_BF16 / KV_BF16_DOT / KV_F16, widened exactly. A checkpoint's table stays in its stored dtype.
 */
void kv_embed(int n, int d, const void *table, int dtype, const int32_t *ids, float *out);

/*
 * Softmax statistics of each of rows rows of v logits, the logit `exclude` left out (-1: none):
 * stats[3r..3r+2] = the largest probability, it minus the second largest, the entropy in nats;
 * argmax[r] the lowest index of the largest logit, or -1 when the row holds a NaN or an infinity
 * (the excluded logit included; its stats are then NaN).
 */
void kv_softmax_stats(int rows, int v, const float *logits, int exclude, double *stats, int32_t *argmax);

/*
 * out[i] = 1 - cos(a_i, b_i) over the columns [from, to) of row i of a and b (n rows of width
 * floats each), summed in double: drift scores against a cache. 0 when both slices are zero; 1
 * when b's slice starts with NaN (a cache row never written) or is empty.
 */
void kv_row_drift(int n, int width, int from, int to, const float *a, const float *b, double *out);

/*
 * The rows of a (n rows of width floats) whose bytes differ from kept's, in order into changed
 * (room for n); each such row copied into kept. Returns how many. Bytes, not values: -0 against 0
 * or two NaNs of different payloads differ, as a memo of what was read must hold them.
 */
int kv_rows_changed(int n, int width, const float *a, float *kept, int32_t *changed);

/* Whether every one of the n rows is among the nw rows of writes (canvas rows below L). */
int kv_rows_within(int n, const int32_t *rows, int nw, const int32_t *writes, int L);

/*
 * A cache overlaid in place with n fresh rows, of which only the nw rows of writes are to stay.
 * kv_overlay_save copies the cache's rows (width floats, canvas rows below L) that are among rows
 * but not among writes, each once and in list order, into saved (room for L rows) and returns how
 * many, or -1 when it cannot (no memory; nothing copied). When it saved any, *mark holds what
 * kv_overlay_restore needs to put them back, given the same rows, and frees; else it is null.
 * Between the two, the fresh rows may be written over the cache and the cache read as the overlay:
 * a few rows are copied twice instead of the whole cache once.
 */
int kv_overlay_save(int n, const int32_t *rows, int nw, const int32_t *writes, int L, int width, const float *cache, float *saved, unsigned char **mark);
void kv_overlay_restore(int n, const int32_t *rows, int L, int width, const float *saved, float *cache, unsigned char *mark);

/* dst[dst_rows ? dst_rows[i] : i] = src[src_rows ? src_rows[i] : i], n rows of width floats, in
   order where source and destination rows overlap; dst_rows distinct (a large copy between rows
   apart runs over the threads, as the GPU backends' copies do). */
void kv_copy_rows(int n, int width, const float *src, const int32_t *src_rows, float *dst, const int32_t *dst_rows);

#endif
