/**
 * The prediction statistics a step reads (confidence, margin, entropy) are kept between calls and
 * recomputed only for positions whose logits row was stored again: a stale row would decode a
 * position from logits it no longer has.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { float32Tensor, type HostTensor } from '../../src/ir/tensor.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { softmaxStats } from '../../src/model/golden.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { rowsOf } from '../../src/runtime/batch.ts';
import { InterpretedProbe } from '../../src/runtime/probe.ts';
import { ModelScores } from '../../src/runtime/scores.ts';

const stats = ['confidence', 'margin', 'entropy'] as const;

describe('prediction statistics', () => {
  for (const arShift of [false, true]) {
    const config: ModelConfig = { ...(presets.tiny as ModelConfig), arShift };
    const weights = randomWeights(config, 1);
    const L = 6;
    const V = config.vocab;

    test(`after any sequence of stores they equal the statistics of the latest logits (arShift ${arShift})`, () => {
      fc.assert(
        fc.property(
          fc.array(
            fc.record({
              rows: fc.uniqueArray(fc.integer({ min: 0, max: L - 1 }), { minLength: 1, maxLength: L }),
              seed: fc.integer({ min: 0, max: 1000 }),
              ask: fc.constantFrom(...stats),
            }),
            { minLength: 1, maxLength: 6 },
          ),
          (stores) => {
            const scores = new ModelScores(config, weights, L, new Int32Array(L), false, () => undefined);
            stores.forEach(({ rows, seed, ask }, step) => {
              const data = Float64Array.from(
                { length: rows.length * V },
                (_, k) => Math.sin(seed * 7.1 + k * 1.3) * 4,
              );
              scores.storeLogits(Int32Array.from(rows), { shape: [rows.length, V], data }, step);
              const got = scores.score(ask, undefined, 0);
              for (let i = 0; i < L; i++) {
                const row = arShift ? i - 1 : i;
                const expected =
                  row < 0 || (scores.logitsStep[row] ?? -1) < 0
                    ? ask === 'entropy'
                      ? Math.log(V)
                      : 0
                    : softmaxStats(scores.logits.subarray(row * V, (row + 1) * V), config.maskTokenId)[ask];
                expect(got[i]).toBe(expected);
              }
            });
          },
        ),
        { numRuns: 60 },
      );
    });
  }

  test('a caller changing the returned scores does not change the kept ones', () => {
    const config = presets.tiny as ModelConfig;
    const scores = new ModelScores(
      config,
      randomWeights(config, 1),
      3,
      new Int32Array(3),
      false,
      () => undefined,
    );
    const data = Float64Array.from({ length: 3 * config.vocab }, (_, k) => k % 5);
    scores.storeLogits(Int32Array.of(0, 1, 2), { shape: [3, config.vocab], data }, 0);
    const first = scores.score('confidence', undefined, 0);
    const kept = Float64Array.from(first);
    first.fill(-1);
    expect(scores.score('confidence', undefined, 0)).toEqual(kept);
  });

  test("a backend's statistics, stored with the logits, are the ones read; the logits are kept only when asked", () => {
    const config = presets.tiny as ModelConfig;
    const V = config.vocab;
    // Logits whose own statistics differ from the ones handed in: token 0 most likely, by far.
    const data = Float32Array.from({ length: 2 * V }, (_, k) => (k % V === 0 ? 9 : 0));
    const logits = float32Tensor([2, V], data);
    const given = { stats: Float64Array.of(0.25, 0.125, 2.5, 0.5, 0.375, 1.5), argmax: Int32Array.of(3, 4) };
    for (const keep of [true, false]) {
      const scores = new ModelScores(
        config,
        randomWeights(config, 1),
        4,
        new Int32Array(4),
        false,
        () => undefined,
        new Set(),
        undefined,
        keep,
      );
      scores.storeLogits(Int32Array.of(2, 0), logits, 0, given);
      scores.storeLogits(Int32Array.of(1), rowsOf(logits, 1, 1), 0);
      expect(Array.from(scores.score('confidence', undefined, 0))).toEqual([
        0.5,
        softmaxStats(data.subarray(V), config.maskTokenId).confidence,
        0.25,
        0,
      ]);
      expect(Array.from(scores.score('margin', undefined, 0)).slice(0, 3)).toEqual([
        0.375,
        expect.any(Number),
        0.125,
      ]);
      expect([0, 1, 2].map((i) => scores.predicted(i))).toEqual([4, 0, 3]);
      // Row 1 came without statistics: its logits are kept either way; rows 0 and 2 only when asked.
      expect(scores.logits[V]).toBe(9);
      expect([scores.logits[0], scores.logits[2 * V]]).toEqual(keep ? [9, 9] : [0, 0]);
      // Float64 logits after float32 ones widen the store rather than round into it.
      const fine = 1 + 2 ** -40;
      scores.storeLogits(Int32Array.of(3), { shape: [1, V], data: new Float64Array(V).fill(fine) }, 1);
      expect([scores.logits[3 * V], scores.logits[V]]).toEqual([fine, 9]);
    }
  });
});

describe('scores of one KV head', () => {
  const config = presets.tiny as ModelConfig;
  const weights = randomWeights(config, 3);
  const L = 7;
  const K = config.kvHeads;
  const D = config.dModel;
  const cached = {
    shape: [L, K, config.headDim],
    data: Float64Array.from({ length: L * K * config.headDim }, (_, i) => Math.cos(i * 0.7)),
  };
  const scores = new ModelScores(config, weights, L, new Int32Array(L), false, (part) =>
    part === 'k' ? cached : undefined,
  );
  scores.hiddenIn.set(1, {
    shape: [L, D],
    data: Float64Array.from({ length: L * D }, (_, i) => Math.sin(i * 1.9)),
  });
  const queries = Uint8Array.from({ length: L }, (_, i) => (i >= 4 ? 1 : 0));

  test("attention_mass of a KV head is the mass its own query heads give; the heads' masses add up to the mass", () => {
    const all = scores.score('attention_mass', queries, 1);
    const per = Array.from({ length: K }, (_, g) => scores.score('attention_mass', queries, 1, g));
    const group = config.heads / K;
    for (const m of per) expect(m.reduce((a, b) => a + b, 0)).toBeCloseTo(3 * group, 10);
    for (let j = 0; j < L; j++)
      expect(per.reduce((a, m) => a + (m[j] as number), 0)).toBeCloseTo(all[j] as number, 10);
    expect(per[0]).not.toEqual(per[1]);
  });

  test('key drift of a KV head compares its own slice of each K row with the cache', () => {
    const all = scores.score('key_drift', undefined, 1);
    const per = Array.from({ length: K }, (_, g) => scores.score('key_drift', undefined, 1, g));
    const h = scores.hiddenIn.get(1) as HostTensor;
    const fresh = new InterpretedProbe(config, weights).measure('k', 1, h, new Int32Array(0), undefined).data;
    const hd = config.headDim;
    const cos = (a: Float64Array, b: Float64Array) => {
      let ab = 0;
      let aa = 0;
      let bb = 0;
      a.forEach((x, d) => {
        ab += x * (b[d] as number);
        aa += x * x;
        bb += (b[d] as number) ** 2;
      });
      return ab / Math.sqrt(aa * bb);
    };
    for (let g = 0; g < K; g++)
      for (let i = 0; i < L; i++) {
        const at = (i * K + g) * hd;
        const want = 1 - cos(fresh.subarray(at, at + hd), cached.data.subarray(at, at + hd));
        expect(per[g]?.[i]).toBeCloseTo(want, 12);
      }
    expect(per[0]).not.toEqual(all);
    // A score with no per-head form is the same for every head.
    expect(scores.score('confidence', undefined, 1, 1)).toEqual(scores.score('confidence', undefined, 1));
  });
});

describe('attention similarity', () => {
  const config = presets.tiny as ModelConfig;
  const weights = randomWeights(config, 5);
  const L = 9;
  const D = config.dModel;
  const hidden = (seed: number): HostTensor => ({
    shape: [L, D],
    data: Float64Array.from({ length: L * D }, (_, i) => Math.sin(i * 0.37 + seed)),
  });
  /** ModelScores over the reference probe, counting the probe's calls. */
  const counted = () => {
    const inner = new InterpretedProbe(config, weights);
    const calls = { n: 0 };
    const scores = new ModelScores(config, weights, L, new Int32Array(L), false, () => undefined, undefined, {
      measure: (...a) => {
        calls.n++;
        return inner.measure(...a);
      },
    });
    return { scores, calls };
  };

  test('is measured once per hidden state however often it is read, and again on a new one', () => {
    const { scores, calls } = counted();
    scores.hiddenIn.set(1, hidden(0));
    scores.rememberAttention([1]);
    const remembered = calls.n;
    expect(remembered).toBeGreaterThan(0);
    // The state the attention row was remembered on: the row is known, the similarity is 1.
    expect(scores.attnSimilarity(1)).toBeCloseTo(1, 12);
    expect(calls.n).toBe(remembered);
    scores.hiddenIn.set(1, hidden(1));
    const first = scores.attnSimilarity(1);
    expect(calls.n).toBe(2 * remembered);
    for (let i = 0; i < 3; i++) expect(scores.attnSimilarity(1)).toBe(first);
    expect(calls.n).toBe(2 * remembered);
    // The same value a fresh measurement of that state gives, and not the remembered state's.
    const fresh = counted().scores;
    fresh.hiddenIn.set(1, hidden(0));
    fresh.rememberAttention([1]);
    fresh.hiddenIn.set(1, hidden(1));
    expect(fresh.attnSimilarity(1)).toBe(first);
    expect(first).toBeLessThan(1 - 1e-9);
    scores.hiddenIn.set(1, hidden(2));
    expect(scores.attnSimilarity(1)).not.toBe(first);
    expect(calls.n).toBe(3 * remembered);
  });
});
