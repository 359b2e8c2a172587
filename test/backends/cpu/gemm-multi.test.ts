/**
 * kv_gemm_multi and kv_gemm16_multi, which the generated code calls for a layer's projections of
 * one input (q, k and v; gate and up): every output equal, bit for bit, to kv_gemm's (kv_gemm16's)
 * of the same weight, on generated shapes that cross their paths (one row unit or several, A
 * packed whole or per unit, partial panels and micro-panels, gathered rows, biases or none), in a
 * harness linked against the primitives.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { compileLibrary, openLibrary } from '../../../src/backends/cpu/compiler.ts';
import { compilePrimitives, Dtype16, loadPrimitives } from '../../../src/backends/cpu/primitives.ts';
import { sameInputGemms } from '../../../src/backends/cpu/render.ts';
import type { Instr, Value } from '../../../src/ir/types.ts';

// Up to three GEMMs; dtype 0 calls kv_gemm_multi, else kv_gemm16_multi.
const HARNESS = `#include "kvplan_cpu.h"
void harness_gemm_multi(int count, int dtype, int m, int k, const float *a, int lda, const int32_t *arows,
                        const int *n, const void *w0, const void *w1, const void *w2, const float *b0,
                        const float *b1, const float *b2, float *c0, float *c1, float *c2) {
  const float *const b[] = {b0, b1, b2};
  float *const c[] = {c0, c1, c2};
  if (dtype == 0) {
    const float *const w[] = {w0, w1, w2};
    kv_gemm_multi(count, m, k, a, lda, arows, n, w, b, c, n);
  } else {
    const uint16_t *const w[] = {w0, w1, w2};
    kv_gemm16_multi(count, m, k, a, lda, arows, n, w, dtype, b, c, n);
  }
}
`;

describe('kv_gemm_multi and kv_gemm16_multi', async () => {
  const p = await loadPrimitives();
  const lib = openLibrary(compileLibrary(HARNESS, { against: compilePrimitives() }), ['harness_gemm_multi']);
  const multi = lib.func(
    'void harness_gemm_multi(int count, int dtype, int m, int k, const float *a, int lda, const int32_t *arows, ' +
      'const int *n, const void *w0, const void *w1, const void *w2, const float *b0, const float *b1, ' +
      'const float *b2, float *c0, float *c1, float *c2)',
  );
  const floats = (n: number, seed: number) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.31 + i * 0.917) * 2);
  // 16-bit weights: the top halves of floats (bf16 of them; as f16, finite values).
  const halves = (f: Float32Array) => new Uint16Array(f.buffer).filter((_, h) => h % 2 === 1);

  test.each([
    ['f32', 1, 0],
    ['f32', 2, 0],
    ['bf16', 2, Dtype16.bf16],
    ['f16', 1, Dtype16.f16],
    ['bf16-dot', 2, Dtype16.bf16Dot],
  ] as const)(
    '%s: equals the single GEMM of each weight, bit for bit (%i threads)',
    (_name, threads, dtype) => {
      p.setThreads(threads);
      fc.assert(
        fc.property(
          fc.record({
            m: fc.oneof(
              fc.integer({ min: 1, max: 20 }),
              fc.integer({ min: 60, max: 200 }),
              fc.integer({ min: 250, max: 420 }),
            ),
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
            const ws = ns.map((n, g) => {
              const w = floats(n * k, seed + g + 1);
              return dtype ? p.packWeight16(n, k, halves(w), dtype) : p.packWeight(n, k, w);
            });
            const bs = ns.map((n, g) => (bias ? floats(n, seed + 10 + g) : null));
            const ours = ns.map((n) => new Float32Array(m * n).fill(Number.NaN));
            const theirs = ns.map((n) => new Float32Array(m * n).fill(Number.NaN));
            ns.forEach((n, g) => {
              const [w, b, c] = [ws[g], bs[g] ?? null, theirs[g] as Float32Array];
              if (dtype) p.gemm16(m, n, k, a, k, rows, w as Uint16Array, dtype, b, c, n, false);
              else p.gemm(m, n, k, a, k, rows, w as Float32Array, b, c, n, false);
            });
            const at = <T>(xs: readonly T[], g: number) => (g < xs.length ? (xs[g] as T) : null);
            multi(
              ns.length,
              dtype,
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
        { numRuns: 30 },
      );
    },
  );

  test('gemmMulti (the binding the score probe calls): the single GEMMs, and its arguments checked', () => {
    p.setThreads(2);
    const [m, k, ns] = [70, 300, [96, 40]];
    const a = floats(m * k, 3);
    for (const dtype of [undefined, Dtype16.bf16] as const) {
      const packed = ns.map((n, g) => {
        const w = floats(n * k, 20 + g);
        return dtype ? p.packWeight16(n, k, halves(w), dtype) : p.packWeight(n, k, w);
      });
      const bias = floats(96, 9);
      const ours = ns.map((n) => new Float32Array(m * n));
      const theirs = ns.map((n) => new Float32Array(m * n));
      p.gemmMulti(
        m,
        k,
        a,
        k,
        null,
        ns.map((n, g) => ({
          n,
          packed: packed[g] as Float32Array,
          bias: g === 0 ? bias : null,
          c: ours[g] as Float32Array,
        })),
        dtype,
      );
      ns.forEach((n, g) => {
        const [w, b, c] = [packed[g], g === 0 ? bias : null, theirs[g] as Float32Array];
        if (dtype) p.gemm16(m, n, k, a, k, null, w as Uint16Array, dtype, b, c, n, false);
        else p.gemm(m, n, k, a, k, null, w as Float32Array, b, c, n, false);
        expect(Buffer.from((ours[g] as Float32Array).buffer)).toEqual(Buffer.from(c.buffer));
      });
      const short = { n: 40, packed: packed[1] as Float32Array, bias: null, c: new Float32Array(m * 40 - 1) };
      expect(() => p.gemmMulti(m, k, a, k, null, [short], dtype)).toThrow(
        /c has \d+ elements, needs at least 2800/,
      );
    }
  });

  test('gemmMulti of more GEMMs than one region runs (8): each the single GEMM, bit for bit', () => {
    const [m, k] = [20, 40];
    const a = floats(m * k, 5);
    const gemms = Array.from({ length: 11 }, (_, g) => ({
      n: 8 + 5 * g,
      packed: p.packWeight(8 + 5 * g, k, floats((8 + 5 * g) * k, 40 + g)),
      bias: g % 2 ? floats(8 + 5 * g, g) : null,
      c: new Float32Array(m * (8 + 5 * g)),
    }));
    p.gemmMulti(m, k, a, k, null, gemms);
    for (const g of gemms) {
      const c = new Float32Array(m * g.n);
      p.gemm(m, g.n, k, a, k, null, g.packed, g.bias, c, g.n, false);
      expect(Buffer.from(g.c.buffer)).toEqual(Buffer.from(c.buffer));
    }
  });
});

describe('sameInputGemms: which later GEMMs of a kernel join the first one call', () => {
  const v = (id: number, rows = 'N[1]') => ({ id, rows }) as unknown as Value;
  const rows = (x: Value) => (x as unknown as { rows: string }).rows;
  const instr = (op: string, args: Value[], results: Value[]): Instr => ({ op, args, results, attrs: {} });
  const x = v(1);
  const q = instr('linear', [x, v(10)], [v(20)]);
  const rope = instr('rope', [v(20)], [v(21)]);
  const k = instr('linear', [x, v(11)], [v(22)]);

  test('past the epilogues between, not past what reads their results or writes memory', () => {
    expect(sameInputGemms(q, [rope, k], rows)).toEqual([q, k]);
    // A bias computed between (here the rope's result) must wait for it.
    const late = instr('linear', [x, v(12), v(21)], [v(23)]);
    expect(sameInputGemms(q, [rope, late, k], rows)).toEqual([q, k]);
    // A cache write between may write what the activation reads: the search stops.
    const write = instr('cache_write', [v(30), v(21)], []);
    expect(sameInputGemms(q, [rope, write, k], rows)).toEqual([q]);
    // Another activation, or the same one over other rows, is another call.
    expect(sameInputGemms(q, [instr('linear', [v(2), v(11)], [v(22)])], rows)).toEqual([q]);
    expect(sameInputGemms(q, [instr('linear', [x, v(11)], [v(22, 'N[2]')])], rows)).toEqual([q]);
    expect(sameInputGemms(q, [instr('logits', [x, v(11)], [v(22)])], rows)).toEqual([q]);
  });
});
