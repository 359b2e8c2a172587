/**
 * A generation that cannot go on, for a reason in the input (the plan, the model, the prompt), not
 * a bug: the CLI reports it with exit code 1.
 */
export class GenerationError extends Error {
  override readonly name: string = 'GenerationError';
}

/** The logits of a step are not finite: the model's weights or activations overflowed. */
export class NonFiniteLogits extends GenerationError {
  override readonly name = 'NonFiniteLogits';
}

/** Throws NonFiniteLogits naming the first row (a canvas position) whose logits are NaN or infinite. */
export function checkFinite(
  logits: Float64Array | Float32Array,
  rows: ArrayLike<number>,
  vocab: number,
): void {
  // A plain loop: this runs over rows x vocab every step where the backend has no native check.
  let bad = 0;
  while (bad < logits.length && Number.isFinite(logits[bad])) bad++;
  if (bad === logits.length) return;
  const row = rows[Math.floor(bad / vocab)];
  throw new NonFiniteLogits(
    `the logits of canvas position ${row} are not finite (${logits[bad]}): the model's weights or activations overflow on this backend`,
  );
}
