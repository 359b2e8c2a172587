/**
 * The derived error budget of float32 kernels against float64 references, without vitest: also
 * bundled into the GPU-session check (bench/gpu/check.ts).
 */
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
