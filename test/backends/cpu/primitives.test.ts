/**
 * The C primitives against the float64 reference kernels (src/ir/attention.ts) and plain loops.
 * Error budgets are derived, not hand-picked: next to each C result a float32 eager evaluation
 * (Math.fround after every operation) is compared with the same float64 reference, and the C
 * error must stay within 4x the eager error plus 4 units of 2^-24 of the values' scale.
 *
 * Every test runs for the native build and, on x86-64, for the AVX2 and portable builds too
 * (compiled with -mno-avx512f / -mno-avx2), so each code path of kvplan_cpu.c is exercised.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DEFAULT_FLAGS } from '../../../src/backends/cpu/compiler.ts';
import { loadPrimitives, type Primitives } from '../../../src/backends/cpu/primitives.ts';
import { attentionMass, attentionPartial, mergePartials } from '../../../src/ir/attention.ts';
import { rope as rope64 } from '../../../src/ir/interpret.ts';
import { softmaxStats } from '../../../src/model/golden.ts';
import { halfToFloat32 } from '../../../src/model/half.ts';
import {
  type AttentionCase as Case,
  makeAttentionCase as makeCase,
  runAttention,
} from '../../support/attentionCase.ts';
import { derivedBound, expectClose, f32, maxError, scaleOf } from '../../support/float32.ts';
import { randFloats, randIndices, randInt, rng } from '../../support/random.ts';

/** Rows idx of a [*, width] array, as float64 (for the reference kernels). */
function gather64(src: Float32Array, idx: Int32Array, width: number): Float64Array {
  const out = new Float64Array(idx.length * width);
  for (let i = 0; i < idx.length; i++)
    for (let d = 0; d < width; d++) out[i * width + d] = src[(idx[i] as number) * width + d] as number;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Builds under test

interface Build {
  readonly name: string;
  readonly flags?: readonly string[];
}

const builds: Build[] = [{ name: 'native' }];
if (process.arch === 'x64') {
  builds.push({ name: 'avx2', flags: [...DEFAULT_FLAGS, '-mno-avx512f'] });
  builds.push({ name: 'portable', flags: [...DEFAULT_FLAGS, '-mno-avx512f', '-mno-avx2', '-mno-fma'] });
}

let cacheDir = '';
beforeAll(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'kvplan-prim-'));
});
afterAll(() => {
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

describe.each(builds)('CPU primitives ($name build)', (build) => {
  let p: Primitives;
  beforeAll(async () => {
    p = await loadPrimitives({ cacheDir, ...(build.flags ? { flags: build.flags } : {}) });
    p.setThreads(2);
  });

  test('threads: set, get, <= 0 means all cores', () => {
    p.setThreads(1);
    expect(p.getThreads()).toBe(1);
    p.setThreads(0);
    const all = p.getThreads();
    expect(all).toBeGreaterThanOrEqual(1);
    p.setThreads(-3);
    expect(p.getThreads()).toBe(all);
    p.setThreads(2);
    expect(p.getThreads()).toBe(2);
  });

  test('kv_rows_within: rows all among writes, as sets (order and duplicates aside)', () => {
    const within = p.lib.func(
      'int kv_rows_within(int n, const int32_t *rows, int nw, const int32_t *writes, int L)',
    ) as (n: number, r: Int32Array, nw: number, w: Int32Array, L: number) => number;
    const ask = (rows: number[], writes: number[]) =>
      within(rows.length, Int32Array.from(rows), writes.length, Int32Array.from(writes), 16) === 1;
    expect(ask([], [])).toBe(true);
    expect(ask([3, 5], [3, 5])).toBe(true);
    expect(ask([5, 3], [1, 3, 4, 5])).toBe(true);
    expect(ask([3, 5], [3])).toBe(false);
    expect(ask([3, 6], [3, 5])).toBe(false);
    expect(ask([3, 3, 5], [5, 3, 9])).toBe(true);
    expect(ask([20], [20])).toBe(true); // the same list, whatever it holds
    expect(ask([20, 3], [3, 20, 1])).toBe(false); // outside the canvas: never in place
  });

  test('kv_overlay_save / kv_overlay_restore: the rows computed but not written come back, once each', () => {
    const save = p.lib.func(
      'int kv_overlay_save(int n, const int32_t *rows, int nw, const int32_t *writes, int L, int width, const float *cache, float *saved, _Out_ void **mark)',
    ) as (...a: unknown[]) => number;
    const restore = p.lib.func(
      'void kv_overlay_restore(int n, const int32_t *rows, int L, int width, const float *saved, float *cache, void *mark)',
    ) as (...a: unknown[]) => void;
    const [L, width] = [8, 3];
    const before = Float32Array.from({ length: L * width }, (_, i) => i + 0.5);
    const cache = Float32Array.from(before);
    const saved = new Float32Array(L * width).fill(-1);
    const rows = Int32Array.from([5, 2, 5, 9, 1]); // 5 twice, 9 outside the canvas, 1 written
    const writes = Int32Array.from([1, 3]);
    const mark: unknown[] = [null];
    expect(save(rows.length, rows, writes.length, writes, L, width, cache, saved, mark)).toBe(2);
    expect([...saved.subarray(0, 2 * width)]).toEqual([...before.subarray(15, 18), ...before.subarray(6, 9)]);
    expect(mark[0]).not.toBeNull();
    // The overlay's fresh rows written over the cache, as the stage does before reading it.
    for (const r of [5, 2, 1]) cache.fill(100 + r, r * width, (r + 1) * width);
    restore(rows.length, rows, L, width, saved, cache, mark[0]);
    const expected = Float32Array.from(before);
    expected.fill(101, width, 2 * width); // row 1 is among the writes: its fresh value stays
    expect([...cache]).toEqual([...expected]);
    // Nothing to save (the same list, or every row written): no mark, and restoring is a no-op.
    const none: unknown[] = [1];
    expect(save(2, writes, 2, writes, L, width, cache, saved, none)).toBe(0);
    expect(none[0]).toBeNull();
    expect(save(1, Int32Array.from([3]), 2, writes, L, width, cache, saved, none)).toBe(0);
    expect(none[0]).toBeNull();
    restore(2, writes, L, width, saved, cache, null);
    expect([...cache]).toEqual([...expected]);
  });

  // -------------------------------------------------------------------------------------------
  describe('gemm', () => {
    const sizes = [1, 3, 8, 17, 64, 100];

    function runCase(
      m: number,
      n: number,
      k: number,
      bias: boolean,
      indirect: boolean,
      accumulate: boolean,
    ): void {
      const r = rng(
        m * 1_000_003 + n * 10_007 + k * 101 + (bias ? 1 : 0) + (indirect ? 2 : 0) + (accumulate ? 4 : 0),
      );
      const lda = k + (indirect ? 3 : 0);
      const ldc = n + (accumulate ? 2 : 0);
      const aRows = indirect ? m + 5 : m;
      const a = randFloats(r, aRows * lda);
      const arows = indirect ? randIndices(r, m, aRows) : null;
      const w = randFloats(r, n * k);
      const b = bias ? randFloats(r, n) : null;
      const c0 = randFloats(r, m * ldc);
      const c = Float32Array.from(c0);
      const packed = p.packWeight(n, k, w);
      expect(packed.length).toBe(p.packedSize(n, k));
      p.gemm(m, n, k, a, lda, arows, packed, b, c, ldc, accumulate);

      const ref = new Float64Array(m * n);
      const eager = new Float64Array(m * n);
      const got = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        const ar = (arows ? (arows[i] as number) : i) * lda;
        for (let j = 0; j < n; j++) {
          let s64 = accumulate ? (c0[i * ldc + j] as number) : 0;
          let s32 = s64;
          let dot64 = 0;
          let dot32 = 0;
          for (let kk = 0; kk < k; kk++) {
            const x = a[ar + kk] as number;
            const y = w[j * k + kk] as number;
            dot64 += x * y;
            dot32 = f32(dot32 + f32(x * y));
          }
          s64 += dot64 + (b ? (b[j] as number) : 0);
          s32 = f32(f32(s32 + dot32) + (b ? (b[j] as number) : 0));
          ref[i * n + j] = s64;
          eager[i * n + j] = s32;
          got[i * n + j] = c[i * ldc + j] as number;
        }
        // Padding columns of C are never written.
        for (let j = n; j < ldc; j++) expect(c[i * ldc + j]).toBe(c0[i * ldc + j]);
      }
      // Products of values in [-1, 1]: the scale is that of the operands' sum of magnitudes.
      const scale = Math.max(scaleOf(ref), 1);
      expectClose(
        `gemm m=${m} n=${n} k=${k} bias=${bias} rows=${indirect} acc=${accumulate}`,
        got,
        ref,
        eager,
        scale,
      );
    }

    for (const bias of [false, true])
      for (const indirect of [false, true])
        for (const accumulate of [false, true]) {
          test(`all shapes in {${sizes}}^3, bias=${bias}, indirect=${indirect}, accumulate=${accumulate}`, () => {
            for (const m of sizes)
              for (const n of sizes) for (const k of sizes) runCase(m, n, k, bias, indirect, accumulate);
          });
        }

    test('larger and odd shapes (several k-blocks, partial panels)', () => {
      for (const [m, n, k] of [
        [130, 67, 600],
        [9, 513, 257],
        [200, 33, 1],
        [1, 1000, 300],
        [9, 5, 300_001], // A too large for a thread to keep packed: packed per unit and k-block
        [333, 97, 300], // a band of rows a thread, the last micro-panel partial
        [250, 512, 700], // one row unit of 32 micro-panels (two column blocks), the last partial
        [300, 9, 15_000], // bands, A packed per unit and k-block
      ] as const) {
        runCase(m, n, k, true, true, true);
        runCase(m, n, k, false, false, false);
      }
    });

    test('m = 0 and n = 0 touch nothing; k = 0 gives bias (+ C)', () => {
      const c = Float32Array.from([1, 2, 3, 4]);
      p.gemm(
        0,
        2,
        3,
        new Float32Array(0),
        3,
        null,
        p.packWeight(2, 3, new Float32Array(6)),
        null,
        c,
        2,
        false,
      );
      p.gemm(2, 0, 3, new Float32Array(6), 3, null, new Float32Array(0), null, c, 2, false);
      expect([...c]).toEqual([1, 2, 3, 4]);
      p.gemm(
        2,
        2,
        0,
        new Float32Array(0),
        0,
        null,
        new Float32Array(0),
        new Float32Array([10, 20]),
        c,
        2,
        true,
      );
      expect([...c]).toEqual([11, 22, 13, 24]);
      p.gemm(2, 2, 0, new Float32Array(0), 0, null, new Float32Array(0), null, c, 2, false);
      expect([...c]).toEqual([0, 0, 0, 0]);
    });

    test('the result does not depend on the thread count (bitwise)', () => {
      // 150 rows: the threads split the columns, one row unit on 1 and 2 threads (two column blocks),
      // units of 64 rows on 3. 250 rows (32 micro-panels, the last partial, three column blocks): one
      // row unit on 1 and 3 threads, units of 64 rows on 2. 397 rows (50 micro-panels, the last
      // partial; one unit on one thread) and 300 rows too many to keep packed (k 16 500): a band of
      // rows a thread (three unequal bands of 397 rows at 3 threads; 300 rows are too few for three).
      const r = rng(7);
      for (const [m, n, k] of [
        [150, 300, 700],
        [250, 520, 700],
        [397, 97, 700],
        [300, 40, 16_500],
      ] as const) {
        const a = randFloats(r, m * k);
        const packed = p.packWeight(n, k, randFloats(r, n * k));
        const bias = randFloats(r, n);
        const out = (threads: number) => {
          p.setThreads(threads);
          const c = new Float32Array(m * n);
          p.gemm(m, n, k, a, k, null, packed, bias, c, n, false);
          return Buffer.from(c.buffer);
        };
        const one = out(1);
        for (const threads of [2, 3])
          expect(out(threads).equals(one), `${m}x${n}x${k}, ${threads} threads`).toBe(true);
      }
      p.setThreads(2);
    });

    test("a row's result does not depend on the other rows (bitwise), whichever way A is packed", () => {
      // k = 300 001: 8 rows (one micro-panel) are kept packed whole and each weight panel streamed
      // along k; 9 rows are too many to keep, so A is packed per unit and k-block. 130 rows of a
      // short k are several row units kept packed on two threads (one column block), one unit
      // streaming the weights on one (as 250 and 300 rows are); 72 rows of k = 60 000 are one unit
      // packed per k-block; 17 rows are one unit streaming the weights; 300 rows are split into a
      // band of rows a thread on two. The k-blocks must add up in the same order. 33 columns: a
      // whole 32-column panel, where a partial micro-panel of up to 6 rows (9, 17, 130, 250) rides
      // on the pass before it, and a partial one.
      const r = rng(11);
      const n = 33;
      for (const [threads, k, small, large] of [
        [2, 300_001, 8, 9],
        [2, 700, 1, 130],
        [1, 700, 1, 130],
        [1, 700, 1, 250],
        [1, 700, 1, 300],
        [1, 60_000, 1, 72], // one unit of 72 rows too many to keep packed: packed per k-block
        [2, 700, 1, 17],
        [2, 700, 1, 300],
      ] as const) {
        p.setThreads(threads);
        const a = randFloats(r, large * k);
        const packed = p.packWeight(n, k, randFloats(r, n * k));
        const bias = randFloats(r, n);
        const c1 = new Float32Array(small * n);
        const c2 = new Float32Array(large * n);
        p.gemm(small, n, k, a, k, null, packed, bias, c1, n, false);
        p.gemm(large, n, k, a, k, null, packed, bias, c2, n, false);
        expect(Buffer.from(c1.buffer).equals(Buffer.from(c2.buffer, 0, c1.byteLength))).toBe(true);
        // The last row, in the partial micro-panel, against itself alone.
        const last = new Float32Array(n);
        p.gemm(1, n, k, a.subarray((large - 1) * k), k, null, packed, bias, last, n, false);
        expect(Buffer.from(last.buffer).equals(Buffer.from(c2.buffer, (large - 1) * n * 4))).toBe(true);
      }
      p.setThreads(2);
    });

    test('bad sizes and indices are RangeErrors, not crashes', () => {
      const packed = p.packWeight(4, 4, new Float32Array(16));
      const c = new Float32Array(16);
      expect(() => p.gemm(4, 4, 4, new Float32Array(15), 4, null, packed, null, c, 4, false)).toThrow(
        RangeError,
      );
      expect(() =>
        p.gemm(4, 4, 4, new Float32Array(16), 4, Int32Array.from([0, 1, 2, 4]), packed, null, c, 4, false),
      ).toThrow(/arows\[3\] = 4/);
      expect(() =>
        p.gemm(4, 4, 4, new Float32Array(16), 4, null, packed.subarray(1), null, c, 4, false),
      ).toThrow(RangeError);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('attention', () => {
    /**
     * The float32 eager scores of query row i, head h over the case's keys, into s (-Infinity for a
     * masked key); returns their maximum.
     */
    function eagerScores(t: Case, i: number, h: number, s: Float64Array): number {
      const { nk, heads, kvh, hd, scale, q, kc, qpos, kpos, blocks, seqs } = t;
      const g = Math.floor(h / (heads / kvh));
      const qo = (i * heads + h) * hd;
      let m = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < nk; j++) {
        const kp = kpos[j] as number;
        const qp = qpos[i] as number;
        if ((blocks && (blocks[kp] as number) > (blocks[qp] as number)) || (seqs && seqs[kp] !== seqs[qp])) {
          s[j] = Number.NEGATIVE_INFINITY;
          continue;
        }
        let dot = 0;
        for (let d = 0; d < hd; d++)
          dot = f32(dot + f32((q[qo + d] as number) * (kc[(kp * kvh + g) * hd + d] as number)));
        const x = f32(dot * f32(scale));
        s[j] = x;
        if (x > m) m = x;
      }
      return m;
    }

    /** float32 eager attention: every operation rounded to float32, no online rescaling. */
    function eager32(t: Case): { o: Float64Array; lse: Float64Array } {
      const { nq, nk, heads, kvh, hd, vc, kpos } = t;
      const group = heads / kvh;
      const o = new Float64Array(nq * heads * hd);
      const lse = new Float64Array(nq * heads);
      const s = new Float64Array(nk);
      for (let i = 0; i < nq; i++)
        for (let h = 0; h < heads; h++) {
          const g = Math.floor(h / group);
          const qo = (i * heads + h) * hd;
          const m = eagerScores(t, i, h, s);
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
            const vo = ((kpos[j] as number) * kvh + g) * hd;
            for (let d = 0; d < hd; d++) acc[d] = f32((acc[d] as number) + f32(e * (vc[vo + d] as number)));
          }
          for (let d = 0; d < hd; d++) o[qo + d] = f32((acc[d] as number) / sum);
          lse[i * heads + h] = f32(m + f32(Math.log(sum)));
        }
      return { o, lse };
    }

    function check(label: string, t: Case): { o: Float32Array; lse: Float32Array } {
      const { heads, kvh, hd, scale, q, kc, vc, qpos, kpos, blocks, seqs } = t;
      const { o, lse } = runAttention(p, t);
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
          seqs,
          heads,
          kvHeads: kvh,
          headDim: hd,
        },
      );
      const e = eager32(t);
      expectClose(`${label}: o`, o, ref.o, e.o);
      // lse is a log-sum-exp: its rounding scale is that of the scores, so at least 1.
      expectClose(`${label}: lse`, lse, ref.lse, e.lse, Math.max(scaleOf(ref.lse), 1));
      return { o, lse };
    }

    test('random shapes with GQA, with and without block-causal masks', () => {
      for (let seed = 1; seed <= 60; seed++) {
        const t = makeCase(seed);
        check(
          `seed ${seed} nq=${t.nq} nk=${t.nk} h=${t.heads}/${t.kvh} hd=${t.hd} mask=${t.blocks !== null}`,
          t,
        );
      }
    });

    test('attention mass: random shapes with GQA and masks, against the reference and eager float32', () => {
      // Past seed 240: one or two query rows (the direct path) of an odd number of heads, which the
      // two threads split unevenly, over enough keys to run on both.
      const direct = (seed: number) => ({
        nq: 1 + (seed % 2),
        nk: 150 + seed,
        heads: [3, 5, 7][seed % 3],
        kvh: 1,
        hd: 64,
      });
      for (let seed = 200; seed <= 246; seed++) {
        const t = makeCase(
          seed,
          seed === 240 ? { nq: 30, nk: 1000, heads: 4, kvh: 2, hd: 64 } : seed > 240 ? direct(seed) : {},
        );
        const { nq, nk, heads, kvh, hd, scale, q, kc, qpos, kpos, blocks } = t;
        const mass = new Float64Array(nk).fill(Number.NaN);
        p.attentionMass(nq, nk, heads, kvh, hd, scale, q, kc, qpos, kpos, blocks, mass);
        const opts = {
          scale: f32(scale),
          mask: blocks ? ('block_causal' as const) : ('none' as const),
          blocks: blocks ?? undefined,
          heads,
          kvHeads: kvh,
          headDim: hd,
        };
        const ref = attentionMass(Float64Array.from(q), gather64(kc, kpos, kvh * hd), qpos, kpos, opts);
        // Eager float32: scores, exponentials and each row's normaliser rounded to float32, the
        // probabilities summed over rows in float64 as the kernel does.
        const eager = new Float64Array(nk);
        const sc = new Float64Array(nk);
        for (let i = 0; i < nq; i++)
          for (let h = 0; h < heads; h++) {
            const m = eagerScores(t, i, h, sc);
            if (m === Number.NEGATIVE_INFINITY) continue;
            let sum = 0;
            for (let j = 0; j < nk; j++) {
              sc[j] = f32(Math.exp(f32((sc[j] as number) - m)));
              sum = f32(sum + (sc[j] as number));
            }
            for (let j = 0; j < nk; j++) eager[j] = (eager[j] as number) + (sc[j] as number) / sum;
          }
        expectClose(
          `seed ${seed} nq=${nq} nk=${nk} h=${heads}/${kvh} hd=${hd} mask=${blocks !== null}`,
          mass,
          ref,
          eager,
        );
      }
    });

    test('attention mass of one to four query rows: every bit the one the rows get among eight', () => {
      // A few rows take their scores straight from the key rows (kv_attention_mass's direct path);
      // the same rows with four to seven more that see no key (their block is below every key's)
      // fill a micro-panel and take the micro-kernel. The rows that see nothing add nothing, so the
      // two masses are the same sums in the same order. One thread: at two, a call below the
      // parallel threshold sums on one where the other sums two halves.
      for (let seed = 600; seed < 640; seed++) {
        const r = rng(seed);
        const kvh = [1, 2, 4][randInt(r, 0, 2)] as number;
        const group = [1, 2, 4, 7][randInt(r, 0, 3)] as number;
        const t = makeCase(seed, { nq: randInt(r, 1, 4), kvh, heads: kvh * group });
        const dead = 8 - t.nq;
        const L = t.L + dead;
        const blocks = Int32Array.from({ length: L }, (_, i) => (i >= t.L ? -2 : (t.blocks?.[i] ?? 0)));
        const kc = new Float32Array(L * t.kvh * t.hd);
        kc.set(t.kc);
        const q8 = new Float32Array(8 * t.heads * t.hd);
        q8.set(t.q);
        q8.set(randFloats(r, dead * t.heads * t.hd), t.q.length);
        const qpos8 = Int32Array.from({ length: 8 }, (_, i) =>
          i < t.nq ? (t.qpos[i] as number) : t.L + i - t.nq,
        );
        const label = `seed ${seed} nq=${t.nq} nk=${t.nk} h=${t.heads}/${t.kvh} hd=${t.hd}`;
        p.setThreads(1);
        const alone = new Float64Array(t.nk).fill(Number.NaN);
        p.attentionMass(t.nq, t.nk, t.heads, t.kvh, t.hd, t.scale, t.q, kc, t.qpos, t.kpos, blocks, alone);
        const among = new Float64Array(t.nk).fill(Number.NaN);
        p.attentionMass(8, t.nk, t.heads, t.kvh, t.hd, t.scale, q8, kc, qpos8, t.kpos, blocks, among);
        expect(Buffer.from(alone.buffer), label).toEqual(Buffer.from(among.buffer));
        // Not a mass of nothing: the rows' probabilities, one a row and head, are all there.
        const total = alone.reduce((a, m) => a + m, 0);
        const seeing = Array.from(t.qpos, (qp) =>
          t.kpos.some((kp) => (blocks[kp] as number) <= (blocks[qp] as number)),
        );
        expect(total, label).toBeCloseTo(seeing.filter(Boolean).length * t.heads, 4);
      }
      p.setThreads(2);
    });

    test('long key lists (many tiles, online rescaling), large scores', () => {
      check('nk=1000 hd=64', makeCase(101, { nq: 40, nk: 1000, heads: 4, kvh: 2, hd: 64 }));
      check('nk=700 hd=33 masked', makeCase(102, { nq: 70, nk: 700, heads: 2, kvh: 1, hd: 33 }));
      check('large scores', makeCase(103, { nq: 20, nk: 300, heads: 2, kvh: 2, hd: 16, amp: 6, scale: 1 }));
      // Without GQA, more queries than one unit holds (128 pairs), the last unit partial.
      check('nq=150 hd=20', makeCase(106, { nq: 150, nk: 200, heads: 2, kvh: 2, hd: 20 }));
    });

    test('sequences sharing the canvas: a row sees only keys of its own, in runs or interleaved', () => {
      for (let seed = 400; seed < 420; seed++) {
        const base = makeCase(seed, { nq: 60, nk: 250 });
        // Runs of 1 to 40 rows per sequence, so that key tiles start mid-sequence or span several.
        const r = rng(seed);
        let seq = 0;
        let left = 0;
        const seqs = Int32Array.from({ length: base.L }, () => {
          if (left-- === 0) [seq, left] = [randInt(r, 0, 2), randInt(r, 0, 40)];
          return seq;
        });
        check(`seed ${seed} h=${base.heads}/${base.kvh} hd=${base.hd} mask=${base.blocks !== null}`, {
          ...base,
          seqs,
        });
      }
    });

    // A unit holds at most 128 pairs (4 panels of 32 with AVX-512).
    test('a GQA group larger than one work unit', () => {
      check('heads=160 kvh=1', makeCase(104, { nq: 3, nk: 50, heads: 160, kvh: 1, hd: 8, blocks: null }));
      check('heads=288 kvh=2', makeCase(105, { nq: 5, nk: 90, heads: 288, kvh: 2, hd: 16 }));
    });

    test('no keys: o = 0, lse = -Infinity', () => {
      const { o, lse } = check('nk=0', makeCase(200, { nq: 5, nk: 0, heads: 4, kvh: 2, hd: 16 }));
      expect(o.every((x) => x === 0)).toBe(true);
      expect(lse.every((x) => x === Number.NEGATIVE_INFINITY)).toBe(true);
    });

    test('a single key: o = v, lse = score', () => {
      const t = makeCase(201, { nq: 6, nk: 1, heads: 2, kvh: 1, hd: 24, blocks: null });
      const { o } = check('nk=1', t);
      const vo = (t.kpos[0] as number) * t.kvh * t.hd;
      for (let r = 0; r < t.nq * t.heads; r++)
        for (let d = 0; d < t.hd; d++) expect(o[r * t.hd + d]).toBe(t.vc[vo + d]);
    });

    test('fully masked rows: o = 0 and lse = -Infinity, never NaN', () => {
      // Blocks: the canvas is 0 0 0 0 1 1 1 1 2 2 2 2; keys only in blocks 1 and 2.
      const L = 12;
      const blocks = Int32Array.from({ length: L }, (_, i) => Math.floor(i / 4));
      const qpos = Int32Array.from([0, 5, 2, 11, 3, 9]);
      const kpos = Int32Array.from([4, 5, 6, 7, 8, 9, 10, 11, 6]);
      const t = makeCase(202, {
        nq: qpos.length,
        nk: kpos.length,
        heads: 4,
        kvh: 2,
        hd: 16,
        L,
        blocks,
        qpos,
        kpos,
      });
      const { o, lse } = check('masked rows', t);
      for (const i of [0, 2, 4]) {
        for (let h = 0; h < t.heads; h++) {
          expect(lse[i * t.heads + h]).toBe(Number.NEGATIVE_INFINITY);
          for (let d = 0; d < t.hd; d++) expect(o[(i * t.heads + h) * t.hd + d]).toBe(0);
        }
      }
      for (const i of [1, 3, 5]) expect(Number.isFinite(lse[i * t.heads] as number)).toBe(true);
    });

    test('the result does not depend on the thread count (bitwise)', () => {
      const t = makeCase(300, { nq: 100, nk: 400, heads: 4, kvh: 2, hd: 64 });
      const run = (threads: number) => {
        const { o, lse } = runAttention(p, t, { threads });
        return [o, lse] as const;
      };
      const [o1, l1] = run(1);
      const [o2, l2] = run(2);
      expect(Buffer.from(o1.buffer).equals(Buffer.from(o2.buffer))).toBe(true);
      expect(Buffer.from(l1.buffer).equals(Buffer.from(l2.buffer))).toBe(true);
    });

    // A unit of few pairs (a cached step's query rows) takes several KV heads, walking each tile's
    // key rows once for all of them; a unit of many pairs takes one. Either way each head's pairs
    // get the same operations in the same order.
    test("a query row's result does not depend on the other rows, nor on the KV heads its unit takes (bitwise)", () => {
      for (let seed = 500; seed < 517; seed++) {
        const kvh = [2, 4, 8, 16][seed % 4] as number;
        // 64 and 128 (whole vectors of hd) take the row-major V^T P^T at few rows (kvi_pv_rows).
        const hd = [16, 64, 72, 128][(seed >> 2) % 4] as number;
        const r = rng(seed);
        // 100 rows: units of 64-128 pairs, one KV head each.
        const all = makeCase(seed, {
          nq: 100,
          nk: randInt(r, 1, 300),
          kvh,
          heads: kvh * (1 + (seed % 2)),
          hd,
        });
        const t = {
          ...all,
          seqs: seed % 3 === 0 ? Int32Array.from({ length: all.L }, (_, i) => i % 2) : undefined,
        };
        const width = t.heads * t.hd;
        if (seed % 4 === 2) {
          // Non-finite scores (one KV head a query head, so that a lone row is a leftover pair): an
          // infinite key element, met by a zero query element (NaN) in every third row and by a
          // finite one (±inf) in the others.
          t.kc[(t.kpos[t.nk >> 1] as number) * t.kvh * t.hd] = Number.POSITIVE_INFINITY;
          for (let i = 0; i < t.nq; i += 3) for (let h = 0; h < t.heads; h++) t.q[i * width + h * t.hd] = 0;
        }
        const few = (picked: number[]) => ({
          ...t,
          nq: picked.length,
          q: Float32Array.from(picked.flatMap((i) => [...t.q.subarray(i * width, (i + 1) * width)])),
          qpos: Int32Array.from(picked, (i) => t.qpos[i] as number),
        });
        const run = (c: typeof t, threads: number) => runAttention(p, c, { threads });
        const whole = run(t, 2);
        // Five rows; and one, 17 and 33, whose last pair a head (one KV head a query head) is a
        // leftover one, computed alone (kvi_left_tile), where among 100 it is in a panel.
        const sets = [
          [0, 17, 42, 63, 99],
          [42],
          ...[17, 33].map((n) => Array.from({ length: n }, (_, i) => 3 * i)),
        ];
        for (const [threads, picked] of [1, 2].flatMap((n) => sets.map((s) => [n, s] as const))) {
          const part = run(few(picked), threads);
          picked.forEach((i, at) => {
            const label = `seed ${seed} kvh=${kvh} hd=${hd} threads=${threads} row ${i}`;
            const bits = (x: Float32Array, row: number, n: number) =>
              Buffer.from(x.buffer, row * n * 4, n * 4);
            expect(bits(part.o, at, width).equals(bits(whole.o, i, width)), `${label}: o`).toBe(true);
            expect(bits(part.lse, at, t.heads).equals(bits(whole.lse, i, t.heads)), `${label}: lse`).toBe(
              true,
            );
          });
        }
      }
    });

    test('merging the partials of two key halves equals attention over all keys', () => {
      const t = makeCase(301, { nq: 30, nk: 200, heads: 4, kvh: 1, hd: 32 });
      const half = 77;
      const part = (kpos: Int32Array) => runAttention(p, t, { kpos });
      const a = part(t.kpos.subarray(0, half));
      const b = part(t.kpos.subarray(half));
      p.merge(t.nq, t.heads, t.hd, a.o, a.lse, b.o, b.lse);
      const whole = check('whole', t);
      // Both sides are float32 computations of the same reference: twice the derived budget.
      const ref = attentionPartial(
        Float64Array.from(t.q),
        gather64(t.kc, t.kpos, t.kvh * t.hd),
        gather64(t.vc, t.kpos, t.kvh * t.hd),
        t.qpos,
        t.kpos,
        {
          scale: f32(t.scale),
          mask: t.blocks ? 'block_causal' : 'none',
          blocks: t.blocks ?? undefined,
          heads: t.heads,
          kvHeads: t.kvh,
          headDim: t.hd,
        },
      );
      const e = eager32(t);
      expectClose('merged o', a.o, ref.o, e.o);
      expectClose('merged lse', a.lse, ref.lse, e.lse, Math.max(scaleOf(ref.lse), 1));
      expect(maxError(a.o, whole.o)).toBeLessThanOrEqual(2 * derivedBound(ref.o, e.o));
    });
  });

  // -------------------------------------------------------------------------------------------
  test('merge, including -Infinity on either or both sides', () => {
    const r = rng(400);
    const rows = 13;
    const heads = 3;
    const hd = 20;
    const pairs = rows * heads;
    const o1 = randFloats(r, pairs * hd);
    const o2 = randFloats(r, pairs * hd);
    const lse1 = randFloats(r, pairs, 5);
    const lse2 = randFloats(r, pairs, 5);
    for (let i = 0; i < pairs; i++) {
      if (i % 5 === 0) lse1[i] = Number.NEGATIVE_INFINITY;
      if (i % 7 === 0) lse2[i] = Number.NEGATIVE_INFINITY;
      if (i % 5 === 0) o1.fill(0, i * hd, (i + 1) * hd);
      if (i % 7 === 0) o2.fill(0, i * hd, (i + 1) * hd);
    }
    const ref = mergePartials(
      Float64Array.from(o1),
      Float64Array.from(lse1),
      Float64Array.from(o2),
      Float64Array.from(lse2),
      hd,
    );
    const eo = new Float64Array(pairs * hd);
    const el = new Float64Array(pairs);
    for (let i = 0; i < pairs; i++) {
      const l1 = lse1[i] as number;
      const l2 = lse2[i] as number;
      const m = Math.max(l1, l2);
      if (m === Number.NEGATIVE_INFINITY) {
        el[i] = m;
        continue;
      }
      const w1 = f32(Math.exp(f32(l1 - m)));
      const w2 = f32(Math.exp(f32(l2 - m)));
      const tot = f32(w1 + w2);
      const a = f32(w1 / tot);
      const b = f32(w2 / tot);
      for (let d = 0; d < hd; d++)
        eo[i * hd + d] = f32(f32(a * (o1[i * hd + d] as number)) + f32(b * (o2[i * hd + d] as number)));
      el[i] = f32(m + f32(Math.log(tot)));
    }
    p.merge(rows, heads, hd, o1, lse1, o2, lse2);
    expectClose('merge o', o1, ref.o, eo);
    expectClose('merge lse', lse1, ref.lse, el, Math.max(scaleOf(ref.lse), 1));
    // Both sides empty: o = 0, lse = -Infinity.
    expect(lse1[0]).toBe(Number.NEGATIVE_INFINITY);
    expect(o1.subarray(0, hd).every((x) => x === 0)).toBe(true);
  });

  test('rmsnorm, direct and through row indices', () => {
    const r = rng(500);
    for (const [n, d] of [
      [1, 1],
      [7, 33],
      [40, 256],
      [3, 1000],
    ] as const) {
      for (const indirect of [false, true]) {
        const xRows = indirect ? n + 4 : n;
        const x = randFloats(r, xRows * d, 3);
        const w = randFloats(r, d);
        const rows = indirect ? randIndices(r, n, xRows) : null;
        const eps = 1e-5;
        const out = new Float32Array(n * d);
        p.rmsnorm(n, d, x, rows, w, eps, out);
        const ref = new Float64Array(n * d);
        const eager = new Float64Array(n * d);
        for (let i = 0; i < n; i++) {
          const xo = (rows ? (rows[i] as number) : i) * d;
          let ss = 0;
          let ss32 = 0;
          for (let j = 0; j < d; j++) {
            const v = x[xo + j] as number;
            ss += v * v;
            ss32 = f32(ss32 + f32(v * v));
          }
          const inv = 1 / Math.sqrt(ss / d + eps);
          const inv32 = f32(1 / f32(Math.sqrt(f32(f32(ss32 / d) + f32(eps)))));
          for (let j = 0; j < d; j++) {
            const v = x[xo + j] as number;
            ref[i * d + j] = v * (w[j] as number) * inv;
            eager[i * d + j] = f32(f32(v * (w[j] as number)) * inv32);
          }
        }
        expectClose(`rmsnorm n=${n} d=${d} rows=${indirect}`, out, ref, eager);
      }
    }
  });

  test('rope (rotate-half pairs)', () => {
    const r = rng(600);
    // The library keeps a table of angles per (theta, hd): the same hd with another theta must not
    // read it, and positions past the table's limit (65,536) are computed per call.
    for (const [n, heads, hd, maxPos, theta] of [
      [1, 1, 2, 4, 10000],
      [9, 3, 16, 100, 10000],
      [33, 4, 64, 4096, 10000],
      [33, 4, 64, 4096, 500000],
      [7, 2, 8, 100_000, 10000],
    ] as const) {
      const x = randFloats(r, n * heads * hd);
      const pos = randIndices(r, n, maxPos);
      const ref = rope64(Float64Array.from(x), pos, heads, hd, theta);
      const half = hd / 2;
      const eager = new Float64Array(x.length);
      for (let row = 0; row < n; row++)
        for (let i = 0; i < half; i++) {
          const freq = f32(theta ** ((-2 * i) / hd));
          const ang = f32((pos[row] as number) * freq);
          const c = f32(Math.cos(ang));
          const s = f32(Math.sin(ang));
          for (let h = 0; h < heads; h++) {
            const base = (row * heads + h) * hd;
            const lo = x[base + i] as number;
            const hi = x[base + i + half] as number;
            eager[base + i] = f32(f32(lo * c) - f32(hi * s));
            eager[base + i + half] = f32(f32(hi * c) + f32(lo * s));
          }
        }
      const out = Float32Array.from(x);
      p.rope(n, heads, hd, out, pos, theta);
      expectClose(`rope n=${n} heads=${heads} hd=${hd}`, out, ref, eager, Math.max(scaleOf(ref), 1));
    }
  });

  test('swiglu (odd lengths, large and small gates)', () => {
    const r = rng(700);
    for (const n of [1, 15, 16, 17, 1000, 100_003]) {
      const gate = randFloats(r, n, 12);
      const up = randFloats(r, n, 2);
      const out = new Float32Array(n);
      p.swiglu(n, gate, up, out);
      const ref = new Float64Array(n);
      const eager = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const g = gate[i] as number;
        ref[i] = (g / (1 + Math.exp(-g))) * (up[i] as number);
        eager[i] = f32(f32(g / f32(1 + f32(Math.exp(-g)))) * (up[i] as number));
      }
      expectClose(`swiglu n=${n}`, out, ref, eager);
    }
  });

  test('embed and copy_rows are exact gathers and scatters', () => {
    const r = rng(800);
    const d = 37;
    const table = randFloats(r, 50 * d);
    const ids = randIndices(r, 20, 50);
    const out = new Float32Array(20 * d);
    p.embed(20, d, table, 0, ids, out);
    for (let i = 0; i < 20; i++)
      expect(out.subarray(i * d, (i + 1) * d)).toEqual(
        table.subarray((ids[i] as number) * d, ((ids[i] as number) + 1) * d),
      );
    expect(() => p.embed(1, d, table, 0, Int32Array.from([50]), out)).toThrow(RangeError);
    // A 16-bit table (every bit pattern: subnormals, infinities, NaN) is widened exactly.
    const bits = Uint16Array.from({ length: 50 * d }, () => Math.floor(r() * 65536));
    for (const [half, dtype] of [
      ['bf16', 1],
      ['f16', 2],
      ['bf16', 3],
    ] as const) {
      const wide = halfToFloat32(bits, half);
      p.embed(20, d, bits, dtype, ids, out);
      for (let i = 0; i < 20; i++) {
        const row = wide.subarray((ids[i] as number) * d, ((ids[i] as number) + 1) * d);
        expect(new Uint32Array(out.slice(i * d, (i + 1) * d).buffer)).toEqual(
          new Uint32Array(row.slice().buffer),
        );
      }
    }
    expect(() => p.embed(1, d, bits, 0, ids, out)).toThrow(TypeError);

    const src = randFloats(r, 10 * d);
    const dst = randFloats(r, 12 * d);
    const before = Float32Array.from(dst);
    const srcRows = Int32Array.from([9, 0, 4]);
    const dstRows = Int32Array.from([11, 2, 5]);
    p.copyRows(3, d, src, srcRows, dst, dstRows);
    for (let row = 0; row < 12; row++) {
      const k = dstRows.indexOf(row);
      const expected =
        k >= 0
          ? src.subarray((srcRows[k] as number) * d, (srcRows[k] as number) * d + d)
          : before.subarray(row * d, row * d + d);
      expect(dst.subarray(row * d, row * d + d)).toEqual(expected);
    }
    // Without index lists: a plain copy of the first n rows.
    const plain = new Float32Array(3 * d);
    p.copyRows(3, d, src, null, plain, null);
    expect(plain).toEqual(src.subarray(0, 3 * d));
    // Large copies, spread over the threads where source and destination rows do not overlap: a
    // gather through an index list; and rows of one buffer each copied onto the next, which must
    // move one after the other, in order, and so carry the first row to every row.
    const [n, w] = [400, 300];
    const big = randFloats(r, n * w);
    const perm = Int32Array.from({ length: n }, (_, i) => (i * 7) % n);
    const gathered = new Float32Array(n * w);
    p.copyRows(n, w, big, perm, gathered, null);
    for (let i = 0; i < n; i++) {
      const from = (perm[i] as number) * w;
      expect(gathered.subarray(i * w, (i + 1) * w)).toEqual(big.subarray(from, from + w));
    }
    // 20 000 rows (20 MB), so that a second thread, had it taken half of them, would start while
    // the first is still copying its own.
    const rows = 20_000;
    const chain = randFloats(r, (rows + 1) * w);
    const first = chain.slice(0, w);
    p.copyRows(rows, w, chain, null, chain.subarray(w), null);
    let wrong = -1;
    for (let i = 0; i <= rows && wrong < 0; i++)
      for (let j = 0; j < w; j++)
        if (chain[i * w + j] !== first[j]) {
          wrong = i;
          break;
        }
    expect(wrong, 'the first row whose copy came from a row not yet overwritten').toBe(-1);
  });

  test('row_drift: 1 - cosine of each row slice, in double; 1 for a never-written cache row', () => {
    const r = rng(900);
    // The largest shape runs on the OpenMP path (a canvas of LLaMA-width rows).
    for (const [n, width] of [
      [1, 1],
      [7, 3],
      [33, 64],
      [19, 257],
      [2048, 1024],
    ] as const) {
      const a = randFloats(r, n * width, 3);
      const b = randFloats(r, n * width, 3);
      // Row 1: b never written (NaN); row 2: both zero; row 3: b a multiple of a (drift 0).
      if (n > 3) {
        b.fill(Number.NaN, width, 2 * width);
        a.fill(0, 2 * width, 3 * width);
        b.fill(0, 2 * width, 3 * width);
        for (let j = 0; j < width; j++) b[3 * width + j] = 2 * (a[3 * width + j] as number);
      }
      for (const [from, to] of [
        [0, width],
        [Math.floor(width / 3), Math.floor((2 * width) / 3) + 1],
        [width, width],
      ]) {
        const lo = from as number;
        const hi = Math.max(lo, to as number);
        const out = new Float64Array(n).fill(-7);
        p.rowDrift(n, width, lo, hi, a, b, out);
        for (let i = 0; i < n; i++) {
          let ab = 0;
          let aa = 0;
          let bb = 0;
          for (let j = i * width + lo; j < i * width + hi; j++) {
            ab += (a[j] as number) * (b[j] as number);
            aa += (a[j] as number) ** 2;
            bb += (b[j] as number) ** 2;
          }
          const want =
            hi === lo || Number.isNaN(b[i * width + lo] as number)
              ? 1
              : aa === 0 && bb === 0
                ? 0
                : 1 - ab / Math.sqrt(aa * bb);
          // Sums of hi - lo exact products in another order: each off by a few ulps per term.
          expect(Math.abs((out[i] as number) - want)).toBeLessThanOrEqual(4 * (hi - lo + 1) * 2 ** -52);
        }
        if (n > 3 && hi > lo)
          expect([out[1], out[2], Math.abs(out[3] as number) < 1e-12]).toEqual([1, 0, true]);
      }
    }
    const a = new Float32Array(8);
    expect(() => p.rowDrift(2, 4, 3, 5, a, a, new Float64Array(2))).toThrow(RangeError);
    expect(() => p.rowDrift(3, 4, 0, 4, a, a, new Float64Array(3))).toThrow(RangeError);
  });

  test('rows_changed: the rows whose bytes differ, in order, copied into the memo', () => {
    const r = rng(960);
    for (const [n, width] of [
      [1, 1],
      [7, 3],
      [160, 1024],
      [33, 17],
    ] as const) {
      const kept = randFloats(r, n * width);
      const a = Float32Array.from(kept);
      const bits = new Uint32Array(a.buffer);
      // Changes a value cannot see: -0 for 0, another NaN payload; and ordinary ones, first and
      // last element of a row.
      const want = new Set<number>();
      for (let i = 0; i < n; i++) {
        const kind = randInt(r, 0, 5);
        if (kind === 0) continue;
        const j = i * width + (kind === 1 ? 0 : kind === 2 ? width - 1 : randInt(r, 0, width - 1));
        if (kind === 3) {
          kept[j] = 0;
          a[j] = -0;
        } else if (kind === 4) {
          bits[j] = 0x7fc00001;
          new Uint32Array(kept.buffer)[j] = 0x7fc00002;
        } else a[j] = (a[j] as number) + 1;
        want.add(i);
      }
      const before = Uint8Array.from(new Uint8Array(kept.buffer));
      const changed = new Int32Array(n).fill(-1);
      const count = p.rowsChanged(n, width, a, kept, changed);
      expect(Array.from(changed.subarray(0, count))).toEqual([...want].sort((x, y) => x - y));
      // Every byte of the memo is a's now; the rows that did not change were a's already.
      expect(Buffer.from(kept.buffer)).toEqual(Buffer.from(a.buffer));
      for (let i = 0; i < n; i++)
        if (!want.has(i))
          expect(Buffer.from(before.subarray(i * width * 4, (i + 1) * width * 4))).toEqual(
            Buffer.from(a.buffer, i * width * 4, width * 4),
          );
      // Nothing changed since: none found.
      expect(p.rowsChanged(n, width, a, kept, changed)).toBe(0);
    }
    const a = new Float32Array(8);
    expect(() => p.rowsChanged(3, 4, a, a, new Int32Array(3))).toThrow(RangeError);
    expect(() => p.rowsChanged(2, 4, a, a, new Int32Array(1))).toThrow(RangeError);
    expect(p.rowsChanged(0, 4, a, a, new Int32Array(0))).toBe(0);
  });

  test('softmax_stats: confidence, margin, entropy and argmax as softmaxStats computes them', () => {
    const r = rng(950);
    // Vocabularies around the vector and block widths, a real one (OpenMP path), the excluded
    // logit anywhere; logits within +-amp, so every z = l - max lies in [-2 amp, 0].
    for (const [rows, v, amp] of [
      [1, 1, 4],
      [3, 2, 4],
      [5, 17, 8],
      [4, 129, 20],
      [6, 1000, 30],
      [16, 126464, 12],
    ] as const) {
      const x = randFloats(r, rows * v, amp);
      // Row 1: a tie for the largest logit (argmax is the lower index, margin 0).
      if (rows > 1 && v > 2) {
        x[v + v - 1] = 2 * amp;
        x[v + 1] = 2 * amp;
      }
      for (const exclude of v > 1 ? [-1, 0, v - 1, Math.floor(v / 2)] : [-1]) {
        const stats = new Float64Array(3 * rows).fill(Number.NaN);
        const argmax = new Int32Array(rows).fill(-7);
        p.softmaxStats(rows, v, x, exclude, stats, argmax);
        for (let i = 0; i < rows; i++) {
          const want = softmaxStats(Float64Array.from(x.subarray(i * v, (i + 1) * v)), exclude);
          expect(argmax[i], `rows ${rows} v ${v} exclude ${exclude} row ${i}`).toBe(want.argmax);
          // Each e = exp(z) from z rounded to float32 (|z| <= 4 amp, so |z| 2^-24 relative) and a
          // float32 exp (2 ulp), summed in float32 eight vectors at a time (128 terms at most, each
          // 2^-24 relative) before the double sums: relative error of sum at most bound; the
          // entropy's mean of z is off by at most bound * 4 amp besides.
          const bound = (4 * amp + 2 + 128) * 2 ** -24;
          const [c, m, e] = [stats[3 * i], stats[3 * i + 1], stats[3 * i + 2]] as [number, number, number];
          expect(Math.abs(c - want.confidence)).toBeLessThanOrEqual(3 * bound * want.confidence);
          expect(Math.abs(m - want.margin)).toBeLessThanOrEqual(3 * bound * want.confidence);
          expect(Math.abs(e - want.entropy)).toBeLessThanOrEqual(3 * bound * (1 + 4 * amp));
        }
        if (rows > 1 && v > 2 && exclude !== v - 1 && exclude !== 1)
          expect([argmax[1], stats[4]]).toEqual([1, 0]);
      }
    }
    // A NaN or an infinity anywhere in a row (the excluded logit too) marks that row alone.
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const x = randFloats(r, 3 * 40, 3);
      x[40 + 37] = bad;
      x[2 * 40 + 5] = bad;
      const stats = new Float64Array(9);
      const argmax = new Int32Array(3);
      p.softmaxStats(3, 40, x, 5, stats, argmax);
      expect([(argmax[0] as number) >= 0, argmax[1], argmax[2]]).toEqual([true, -1, -1]);
      expect(Number.isNaN(stats[3])).toBe(true);
    }
    const x = new Float32Array(8);
    expect(() => p.softmaxStats(2, 4, x, 4, new Float64Array(6), new Int32Array(2))).toThrow(RangeError);
    expect(() => p.softmaxStats(3, 4, x, -1, new Float64Array(9), new Int32Array(3))).toThrow(RangeError);
  });
});
