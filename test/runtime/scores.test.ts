/**
 * The prediction statistics a step reads (confidence, margin, entropy) are kept between calls and
 * recomputed only for positions whose logits row was stored again: a stale row would decode a
 * position from logits it no longer has.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { ModelConfig } from '../../src/model/config.ts';
import { softmaxStats } from '../../src/model/golden.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
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
});
