/**
 * Generated rows of logits for the device kernels of the softmax statistics (WGSL `softmax_stats`,
 * PTX `kvp_softmax_stats`), and the check of a kernel's results against softmaxStats of
 * src/model/golden.ts in float64, within bounds derived from the kernels' float32 arithmetic.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { softmaxStats } from '../../src/model/golden.ts';

const EPS = 2 ** -24;

/** Threads per row in both kernels: each sums ceil(v / 256) terms in order. */
const THREADS = 256;

/**
 * How far float32 statistics may be from the float64 ones of a row, for a kernel whose threads
 * each sum n = ceil(v / 256) terms in order before `levels` rounds of adds join them: with
 * nonnegative terms the sum is off by at most (n + levels) eps of itself. Each term e = exp(z) has
 * z = l - max rounded (|z| eps) and an exp within 3 + 2|z| ulps (2 eps each: WGSL's rule; PTX's
 * ex2.approx of z log2(e) is within 2 ulps, its argument off by |z| eps more): (6 + 5|z|) eps of
 * e. So with S = sum e and W = sum e |z|, |dS| <= eps ((n + levels + 6) S + 5 W); the weighted
 * sum, with one more rounding per product, |dW| <= eps ((n + levels + 8) W + 5 sum e z^2). The log
 * is within 2^-21 absolute on [0.5, 2] and 3 ulps beyond (WGSL; PTX's lg2.approx is closer);
 * 1 / S and W / S add an eps each. The margin's 1 - exp(d) (d = second - max) is off by at most
 * (6 + 5|d|) eps exp(d) + eps <= 9 eps (exp(d) |d| <= 1/e; the series near 0 is closer), and
 * scaling it by 1 / S adds dS + eps of a value at most 1 / S.
 */
function bounds(row: Float64Array, exclude: number, levels: number) {
  let max = Number.NEGATIVE_INFINITY;
  row.forEach((l, i) => {
    if (i !== exclude) max = Math.max(max, l);
  });
  let S = 0;
  let W = 0;
  let W2 = 0;
  row.forEach((l, i) => {
    if (i === exclude) return;
    const z = l - max;
    const e = Math.exp(z);
    S += e;
    W += e * -z;
    W2 += e * z * z;
  });
  const n = Math.ceil(row.length / THREADS);
  const dS = (EPS * ((n + levels + 6) * S + 5 * W)) / S;
  const dW = W === 0 ? 0 : (EPS * ((n + levels + 8) * W + 5 * W2)) / W;
  const dLog = dS + Math.max(2 ** -21, 6 * EPS * Math.abs(Math.log(S)));
  return {
    confidence: dS + EPS,
    margin: (10 * EPS + dS) / S,
    entropy: dLog + (W / S) * (dW + dS + EPS),
  };
}

/** Rows of one vocabulary for one launch; `exclude` -1 for none. */
export interface StatsCase {
  readonly v: number;
  readonly rows: Float32Array[];
  readonly exclude: number;
}

const poison = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY] as const;

/**
 * Batches of rows: vocabularies below, at and around the 256 threads, ties for the largest logit,
 * the excluded logit anywhere (the largest too, or not finite), and logits that are not finite.
 */
export const statsCases: fc.Arbitrary<StatsCase> = fc
  .record({
    v: fc.oneof(
      fc.integer({ min: 1, max: 8 }),
      fc.constantFrom(255, 256, 257, 511, 769),
      fc.integer({ min: 9, max: 3000 }),
    ),
    count: fc.integer({ min: 1, max: 5 }),
    amp: fc.constantFrom(1, 8, 40),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    excludeAt: fc.oneof(fc.constant(-1), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })),
    shapes: fc.array(fc.constantFrom('plain', 'tie', 'top-excluded', 'poisoned', 'poisoned-excluded'), {
      minLength: 5,
      maxLength: 5,
    }),
  })
  .map(({ v, count, amp, seed, excludeAt, shapes }) => {
    let s = seed;
    const next = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 2 ** 32;
    };
    const exclude = excludeAt === -1 ? -1 : Math.floor(excludeAt * v);
    const rows = Array.from({ length: count }, (_, r) => {
      const row = Float32Array.from({ length: v }, () => (next() * 2 - 1) * amp);
      const pick = () => Math.floor(next() * v);
      const shape = shapes[r];
      if (shape === 'tie' && v > 1) {
        const [a, b] = [pick(), pick()];
        row[a] = 2 * amp;
        row[b] = 2 * amp;
      } else if (shape === 'top-excluded' && exclude >= 0) row[exclude] = 3 * amp;
      else if (shape === 'poisoned') row[pick()] = poison[Math.floor(next() * 3)] as number;
      else if (shape === 'poisoned-excluded' && exclude >= 0)
        row[exclude] = poison[Math.floor(next() * 3)] as number;
      return row;
    });
    return { v, rows, exclude };
  });

/** The logits of a case, row after row, as a kernel reads them. */
export const caseLogits = ({ v, rows }: StatsCase): Float32Array => {
  const logits = new Float32Array(rows.length * v);
  rows.forEach((r, i) => {
    logits.set(r, i * v);
  });
  return logits;
};

/**
 * Checks a kernel's statistics of a case (src/backends/deviceStats.ts: three floats a row, then
 * the argmax of each row; `levels` rounds of adds after each thread's own sums): the argmax
 * exactly, the rest within the derived bounds; argmax -1 for a row with a logit that is not finite
 * (the excluded one too) or none but the excluded one. Returns how many rows were compared and how
 * many flagged.
 */
export function checkStats(
  c: StatsCase,
  out: Float32Array,
  levels: number,
): { compared: number; flagged: number } {
  const argmax = out.subarray(3 * c.rows.length);
  let compared = 0;
  let flagged = 0;
  c.rows.forEach((row, i) => {
    const wide = Float64Array.from(row);
    const counted = row.length - (c.exclude >= 0 ? 1 : 0);
    if (!wide.every(Number.isFinite) || counted === 0) {
      expect(argmax[i], `row ${i}`).toBe(-1);
      flagged++;
      return;
    }
    const want = softmaxStats(wide, c.exclude);
    const b = bounds(wide, c.exclude, levels);
    expect(argmax[i], `row ${i}`).toBe(want.argmax);
    const [conf, margin, entropy] = [out[3 * i], out[3 * i + 1], out[3 * i + 2]] as number[];
    expect(Math.abs((conf as number) - want.confidence)).toBeLessThanOrEqual(b.confidence * want.confidence);
    expect(Math.abs((margin as number) - want.margin)).toBeLessThanOrEqual(b.margin);
    expect(Math.abs((entropy as number) - want.entropy)).toBeLessThanOrEqual(b.entropy);
    compared++;
  });
  return { compared, flagged };
}

/** A row of 700 logits with the largest twice, at 600 and 300 (different threads' shares). */
export function tieRow(): StatsCase {
  const v = 700;
  const row = Float32Array.from({ length: v }, (_, i) => Math.sin(i));
  row[600] = 5;
  row[300] = 5;
  return { v, rows: [row], exclude: -1 };
}
