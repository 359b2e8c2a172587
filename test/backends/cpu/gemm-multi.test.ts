/**
 * kv_gemm_multi, which the generated code calls for a layer's projections of one input (q, k and
 * v; gate and up): every output equal, bit for bit, to kv_gemm's of the same weight, on generated
 * shapes that cross its paths (one row unit or several, A packed whole or per unit, partial panels
 * and micro-panels, gathered rows, biases or none), in a harness linked against the primitives.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { compileLibrary, openLibrary } from '../../../src/backends/cpu/compiler.ts';
import { compilePrimitives, loadPrimitives } from '../../../src/backends/cpu/primitives.ts';

const HARNESS = `#include "kvplan_cpu.h"
void harness_gemm_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *n,
                        const float *w0, const float *w1, const float *w2, const float *b0, const float *b1,
                        const float *b2, float *c0, float *c1, float *c2) {
  const float *const w[] = {w0, w1, w2};
  const float *const b[] = {b0, b1, b2};
  float *const c[] = {c0, c1, c2};
  kv_gemm_multi(count, m, k, a, lda, arows, n, w, b, c, n);
}
`;

describe('kv_gemm_multi', async () => {
  const p = await loadPrimitives();
  const lib = openLibrary(compileLibrary(HARNESS, { against: compilePrimitives() }), ['harness_gemm_multi']);
  const multi = lib.func(
    'void harness_gemm_multi(int count, int m, int k, const float *a, int lda, const int32_t *arows, const int *n, ' +
      'const float *w0, const float *w1, const float *w2, const float *b0, const float *b1, const float *b2, ' +
      'float *c0, float *c1, float *c2)',
  );
  const floats = (n: number, seed: number) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.31 + i * 0.917) * 2);

  test.each([1, 2])('equals kv_gemm of each weight, bit for bit (%i threads)', (threads) => {
    p.setThreads(threads);
    fc.assert(
      fc.property(
        fc.record({
          m: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 60, max: 200 })),
          k: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 250, max: 600 })),
          ns: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 3 }),
          gathered: fc.boolean(),
          bias: fc.boolean(),
          seed: fc.integer({ min: 1, max: 1000 }),
        }),
        ({ m, k, ns, gathered, bias, seed }) => {
          const src = gathered ? m + 5 : m;
          const a = floats(src * k, seed);
          const rows = gathered ? Int32Array.from({ length: m }, (_, i) => (i * 7 + seed) % src) : null;
          const ws = ns.map((n, g) => p.packWeight(n, k, floats(n * k, seed + g + 1)));
          const bs = ns.map((n, g) => (bias ? floats(n, seed + 10 + g) : null));
          const ours = ns.map((n) => new Float32Array(m * n).fill(Number.NaN));
          const theirs = ns.map((n) => new Float32Array(m * n).fill(Number.NaN));
          ns.forEach((n, g) => {
            p.gemm(
              m,
              n,
              k,
              a,
              k,
              rows,
              ws[g] as Float32Array,
              bs[g] ?? null,
              theirs[g] as Float32Array,
              n,
              false,
            );
          });
          const at = <T>(xs: readonly T[], g: number) => (g < xs.length ? (xs[g] as T) : null);
          multi(
            ns.length,
            m,
            k,
            a,
            k,
            rows,
            Int32Array.from(ns),
            ...[0, 1, 2].map((g) => at(ws, g)),
            ...[0, 1, 2].map((g) => at(bs, g) ?? null),
            ...[0, 1, 2].map((g) => at(ours, g)),
          );
          ns.forEach((_, g) => {
            expect(Buffer.from((ours[g] as Float32Array).buffer)).toEqual(
              Buffer.from((theirs[g] as Float32Array).buffer),
            );
          });
        },
      ),
      { numRuns: 40 },
    );
  });
});
