import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { type Pairs, pairedDifference, pairsOf, wilson, z95 } from '../../src/eval/pairedCi.ts';

const pairsArb = fc
  .record({
    both: fc.nat(60),
    onlyA: fc.nat(60),
    onlyB: fc.nat(60),
    neither: fc.nat(60),
  })
  .filter((p) => p.both + p.onlyA + p.onlyB + p.neither > 0);

const swap = (p: Pairs): Pairs => ({ ...p, onlyA: p.onlyB, onlyB: p.onlyA });

describe("Newcombe's interval for a paired difference of accuracies", () => {
  test('reproduces published values', () => {
    // Wilson's interval for 0 of 20: [0, 0.1611].
    expect(wilson(0, 20).hi).toBeCloseTo(0.1611, 4);
    // Complete response before and after consolidation therapy (Cavo et al. 2012), as in Fagerland,
    // Lydersen and Laake, "Statistical Analysis of Contingency Tables" (2017), chapter 8, and the R
    // package contingencytables (Newcombe_square_and_add_CI_paired_2x2): -0.0621 (-0.1186 to -0.0046).
    const r = pairedDifference({ both: 59, onlyA: 6, onlyB: 16, neither: 80 });
    expect(r.delta).toBeCloseTo(-0.0621, 4);
    expect(r.lo).toBeCloseTo(-0.1186, 4);
    expect(r.hi).toBeCloseTo(-0.0046, 4);
  });

  test('holds the estimate, stays in [-1, 1], and mirrors when A and B swap', () => {
    fc.assert(
      fc.property(pairsArb, (p) => {
        const r = pairedDifference(p);
        const n = p.both + p.onlyA + p.onlyB + p.neither;
        expect(r.delta).toBeCloseTo((p.onlyA - p.onlyB) / n, 12);
        expect(r.lo).toBeLessThanOrEqual(r.delta + 1e-12);
        expect(r.hi).toBeGreaterThanOrEqual(r.delta - 1e-12);
        expect(r.lo).toBeGreaterThanOrEqual(-1 - 1e-12);
        expect(r.hi).toBeLessThanOrEqual(1 + 1e-12);
        const s = pairedDifference(swap(p));
        expect(s.lo).toBeCloseTo(-r.hi, 12);
        expect(s.hi).toBeCloseTo(-r.lo, 12);
      }),
    );
  });

  test('is not a point when no problem is discordant, and narrows as n grows', () => {
    const few = pairedDifference({ both: 8, onlyA: 0, onlyB: 0, neither: 0 });
    expect(few.hi - few.lo).toBeGreaterThan(0.2);
    const many = pairedDifference({ both: 800, onlyA: 0, onlyB: 0, neither: 0 });
    expect(many.hi - many.lo).toBeLessThan(few.hi - few.lo);
  });

  test('agrees with the normal approximation on the paired differences at large n', () => {
    const p = { both: 3000, onlyA: 900, onlyB: 600, neither: 1500 };
    const n = 6000;
    const d = (p.onlyA - p.onlyB) / n;
    const se = Math.sqrt((p.onlyA + p.onlyB) / n - d * d) / Math.sqrt(n);
    const r = pairedDifference(p);
    expect(r.lo).toBeCloseTo(d - z95 * se, 3);
    expect(r.hi).toBeCloseTo(d + z95 * se, 3);
  });

  test('pairs per-problem results, and refuses results of different problem sets', () => {
    expect(pairsOf([true, true, false, false], [true, false, true, false])).toEqual({
      both: 1,
      onlyA: 1,
      onlyB: 1,
      neither: 1,
    });
    expect(() => pairsOf([true], [true, false])).toThrow(RangeError);
  });
});
