/**
 * The decode rules' commits (src/dsl/semantics/decodeRule.ts), rule by rule on hand-made steps,
 * and the invariants every rule keeps on random ones: it commits only candidates, best first,
 * each once, and at least one while there is any (so that every block finishes).
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodeRules } from '../../src/dsl/builtins.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { ruleCommits } from '../../src/dsl/semantics/decodeRule.ts';

/** A canvas of a 4-token prompt and 16 generated positions in blocks of 8; `decoded` are committed. */
function canvasWith(decoded: number[] = [], blockStep = 0): Canvas {
  const c = new Canvas(4, 16, 8);
  for (const i of decoded) c.decodedAt[i] = 0;
  c.blockStep = blockStep;
  return c;
}

/** The candidates (positions with scores), ranked best first as decideCommits ranks them. */
function ranked(scored: Record<number, number>, canvas = canvasWith(), lowIsBetter = false) {
  const positions = Object.keys(scored)
    .map(Number)
    .sort((a, b) => {
      const d = lowIsBetter
        ? (scored[a] as number) - (scored[b] as number)
        : (scored[b] as number) - (scored[a] as number);
      return d !== 0 ? d : a - b;
    });
  return { positions, scores: positions.map((i) => scored[i] as number), lowIsBetter, canvas };
}

describe('decode rules', () => {
  test('prophet commits every candidate once their mean score reaches the gap, else the k best', () => {
    const settled = ranked({ 4: 0.9, 5: 0.8, 6: 0.7, 7: 0.6 }); // mean 0.75
    expect(ruleCommits('prophet', [0.75, 1], settled)).toEqual([4, 5, 6, 7]);
    expect(ruleCommits('prophet', [0.76, 1], settled)).toEqual([4]);
    expect(ruleCommits('prophet', [0.76, 3], settled)).toEqual([4, 5, 6]);
    // A low-is-better score (entropy): settled when the mean is at most the bar.
    const low = ranked({ 4: 0.1, 5: 0.3 }, canvasWith(), true);
    expect(ruleCommits('prophet', [0.2, 1], low)).toEqual([4, 5]);
    expect(ruleCommits('prophet', [0.19, 1], low)).toEqual([4]);
  });

  test('slow_fast commits one a step for the first k steps of a block, then by threshold', () => {
    const scores = { 4: 0.95, 5: 0.92, 6: 0.5 };
    expect(ruleCommits('slow_fast', [2, 0.9], ranked(scores, canvasWith([], 0)))).toEqual([4]);
    expect(ruleCommits('slow_fast', [2, 0.9], ranked(scores, canvasWith([], 1)))).toEqual([4]);
    expect(ruleCommits('slow_fast', [2, 0.9], ranked(scores, canvasWith([], 2)))).toEqual([4, 5]);
    expect(ruleCommits('slow_fast', [0, 0.9], ranked(scores, canvasWith([], 0)))).toEqual([4, 5]);
    // Nothing reaches tau in the fast phase: still one, so the block finishes.
    expect(ruleCommits('slow_fast', [0, 0.99], ranked(scores, canvasWith([], 0)))).toEqual([4]);
  });

  test('local_leap commits the anchors and, with the relaxed bar, the candidates near an anchor', () => {
    // 6 is an anchor; 7 (next to it) passes the relaxed bar; 16 passes it but no anchor is within
    // radius 1; 8 is two from the anchor; 18 is below the relaxed bar.
    const r = ranked({ 6: 0.95, 7: 0.7, 8: 0.65, 16: 0.8, 18: 0.1 });
    expect(ruleCommits('local_leap', [0.9, 0.6, 1], r)).toEqual([6, 7]);
    expect(ruleCommits('local_leap', [0.9, 0.6, 2], r)).toEqual([6, 7, 8]);
    expect(ruleCommits('local_leap', [0.9, 0.5, 12], r)).toEqual([6, 16, 7, 8]);
    // No anchor: the best candidate only, as the floor.
    expect(ruleCommits('local_leap', [0.99, 0.6, 4], r)).toEqual([6]);
  });

  test('every rule commits only candidates, best first, each once, at least one', () => {
    const rules = Object.keys(decodeRules);
    const argsFor: Record<string, fc.Arbitrary<number[]>> = {
      per_step: fc.tuple(fc.integer({ min: 1, max: 20 })),
      steps: fc.tuple(fc.integer({ min: 1, max: 20 })),
      threshold: fc.tuple(fc.double({ min: 0.01, max: 1, noNaN: true })),
      factor: fc.tuple(fc.double({ min: 0.01, max: 4, noNaN: true })),
      prophet: fc.tuple(fc.double({ min: 0.01, max: 1, noNaN: true }), fc.integer({ min: 1, max: 20 })),
      slow_fast: fc.tuple(fc.integer({ min: 0, max: 8 }), fc.double({ min: 0.01, max: 1, noNaN: true })),
      local_leap: fc.tuple(
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 4 }),
      ),
      wino: fc.tuple(
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
      ),
    };
    expect(Object.keys(argsFor).sort()).toEqual([...rules].sort());
    fc.assert(
      fc.property(
        fc
          .constantFrom(...rules)
          .chain((rule) => fc.tuple(fc.constant(rule), argsFor[rule] as fc.Arbitrary<number[]>)),
        fc.uniqueArray(fc.integer({ min: 4, max: 19 }), { minLength: 1, maxLength: 16 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 7 }),
        fc.boolean(),
        fc.uniqueArray(fc.integer({ min: 4, max: 19 }), { maxLength: 6 }),
        ([rule, args], cands, s, blockStep, low, decodedRaw) => {
          const decoded = decodedRaw.filter((i) => !cands.includes(i));
          const r = ranked(
            Object.fromEntries(cands.map((i, k) => [i, s[k] as number])),
            canvasWith(decoded, blockStep),
            low,
          );
          const out = ruleCommits(rule, args, r);
          expect(out.length).toBeGreaterThanOrEqual(1);
          expect(new Set(out).size).toBe(out.length);
          // Best first: the commits appear in the ranking's order.
          const at = out.map((i) => r.positions.indexOf(i));
          expect(at.every((k) => k >= 0)).toBe(true);
          expect([...at].sort((a, b) => a - b)).toEqual(at);
        },
      ),
    );
  });
});
