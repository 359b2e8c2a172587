import { expect } from 'vitest';

/** Tools for comparing float32 kernels with float64 references under a derived error budget. */
export const f32 = Math.fround;
export const EPS32 = 2 ** -24;
export type Values = ArrayLike<number>;

/** Largest |x| over the finite values. */
export function scaleOf(...arrays: Values[]): number {
  let s = 0;
  for (const a of arrays)
    for (let i = 0; i < a.length; i++) {
      const x = Math.abs(a[i] as number);
      if (Number.isFinite(x) && x > s) s = x;
    }
  return s;
}

/** max |x - ref| over entries where ref is finite (NaN propagates). */
export function maxError(x: Values, ref: Values): number {
  let e = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i] as number;
    if (!Number.isFinite(r)) continue;
    const d = Math.abs((x[i] as number) - r);
    if (!(d <= e)) e = d;
  }
  return e;
}

/** The derived budget: 4 * max|eager32 - ref64| + 4 * 2^-24 * scale of the reference. */
export function derivedBound(ref64: Values, eager32: Values, scale = scaleOf(ref64)): number {
  return 4 * maxError(eager32, ref64) + 4 * EPS32 * scale;
}

/**
 * Checks a kernel's result against the reference under the derived bound; non-finite reference
 * entries (-Infinity for empty rows) must be reproduced exactly, and the result never holds NaN.
 * Returns the error.
 */
export function expectClose(
  label: string,
  got: Values,
  ref64: Values,
  eager32: Values,
  scale?: number,
): number {
  expect(got.length, `${label}: length`).toBe(ref64.length);
  for (let i = 0; i < ref64.length; i++) {
    const r = ref64[i] as number;
    const x = got[i] as number;
    if (Number.isNaN(x)) throw new Error(`${label}: NaN at ${i} (reference ${r})`);
    if (!Number.isFinite(r) && x !== r) throw new Error(`${label}: entry ${i} is ${x}, expected ${r}`);
  }
  const bound = derivedBound(ref64, eager32, scale);
  const err = maxError(got, ref64);
  expect(err, `${label}: error ${err} exceeds the derived bound ${bound}`).toBeLessThanOrEqual(bound);
  return err;
}
