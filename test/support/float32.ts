import { expect } from 'vitest';
import { derivedBound, maxError, type Values } from './bounds.ts';

/** Tools for comparing float32 kernels with float64 references under a derived error budget. */
export * from './bounds.ts';

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
