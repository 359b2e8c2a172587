/**
 * A 95% confidence interval for the difference of two accuracies measured on the same problems:
 * Newcombe's hybrid score interval for paired proportions (R. G. Newcombe, "Improved confidence
 * intervals for the difference between binomial proportions based on paired data", Statistics in
 * Medicine 17:2635-2650, 1998, method 10). It combines the Wilson score intervals of the two
 * accuracies with the correlation of the pairs. Unlike the normal approximation on the per-problem
 * differences it stays inside [-1, 1] and does not collapse to a point when no problem is
 * discordant, which matters at the small n of a quick run (and at 100% accuracy, which is common).
 */

/** The 0.975 quantile of the standard normal distribution. */
export const z95 = 1.959963984540054;

export interface Interval {
  readonly lo: number;
  readonly hi: number;
}

/** Wilson's score interval for a proportion of `k` in `n` (E. B. Wilson, JASA 22:209-212, 1927). */
export function wilson(k: number, n: number, z = z95): Interval {
  const p = k / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { lo: Math.max(0, centre - half), hi: Math.min(1, centre + half) };
}

/** Counts of a paired comparison: how many problems each of A and B got right. */
export interface Pairs {
  readonly both: number;
  readonly onlyA: number;
  readonly onlyB: number;
  readonly neither: number;
}

export function pairsOf(a: readonly boolean[], b: readonly boolean[]): Pairs {
  if (a.length !== b.length) throw new RangeError(`paired results of ${a.length} and ${b.length} problems`);
  const count = (x: boolean, y: boolean) => a.filter((ai, i) => ai === x && b[i] === y).length;
  return {
    both: count(true, true),
    onlyA: count(true, false),
    onlyB: count(false, true),
    neither: count(false, false),
  };
}

/** The interval for accuracy(A) - accuracy(B), with the point estimate. */
export function pairedDifference(p: Pairs, z = z95): Interval & { readonly delta: number } {
  const n = p.both + p.onlyA + p.onlyB + p.neither;
  if (n === 0) throw new RangeError('no problems to compare');
  const a = p.both + p.onlyA;
  const b = p.both + p.onlyB;
  const [pa, pb] = [a / n, b / n];
  const [ia, ib] = [wilson(a, n, z), wilson(b, n, z)];
  // The correlation of the pairs (the phi coefficient of the 2x2 table), with Newcombe's continuity
  // correction of a positive numerator; 0 when a margin is empty (no correlation to use).
  const margins = a * (n - a) * b * (n - b);
  const cross = p.both * p.neither - p.onlyA * p.onlyB;
  const corrected = cross > n / 2 ? cross - n / 2 : Math.min(cross, 0);
  const phi = margins > 0 ? corrected / Math.sqrt(margins) : 0;
  const lower = Math.sqrt(
    Math.max(0, (pa - ia.lo) ** 2 - 2 * phi * (pa - ia.lo) * (ib.hi - pb) + (ib.hi - pb) ** 2),
  );
  const upper = Math.sqrt(
    Math.max(0, (ia.hi - pa) ** 2 - 2 * phi * (ia.hi - pa) * (pb - ib.lo) + (pb - ib.lo) ** 2),
  );
  const delta = pa - pb;
  return { delta, lo: delta - lower, hi: delta + upper };
}
