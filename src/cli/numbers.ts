/**
 * The one parser of numeric options, as commander argument parsers: a value is a decimal integer
 * inside its documented range or the command stops with a usage error (exit 2) that says what was
 * expected. `0x20`, `1e5`, `abc` and `-1` are refused, never read as something else. See
 * docs/cli.md, "Numeric options".
 */
import { availableParallelism } from 'node:os';
import { InvalidArgumentError } from 'commander';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';

/** A decimal integer in [min, max]. */
export function integerIn(min: number, max: number): (value: string) => number {
  return (value) => {
    const t = value.trim();
    const n = Number(t);
    if (!/^-?\d+$/.test(t) || !Number.isSafeInteger(n))
      throw new InvalidArgumentError(`expected a decimal integer from ${min} to ${max}`);
    if (n < min || n > max) throw new InvalidArgumentError(`must be from ${min} to ${max}, got ${t}`);
    return n;
  };
}

/** A thread count: 0 (every core) up to the cores this machine has. */
export function threadCount(value: string): number {
  const cores = availableParallelism();
  const n = integerIn(0, Number.MAX_SAFE_INTEGER)(value);
  if (n > cores)
    throw new InvalidArgumentError(
      `this machine has ${cores} core${cores === 1 ? '' : 's'}; got ${n} threads`,
    );
  return n;
}

/** Seeds of problems, decode orders and random weights (32 bits, as the generators draw them). */
export const seedValue = integerIn(0, 2 ** 32 - 1);

/** Generated positions of a generating command. */
export const genLengthValue = integerIn(1, maxCanvasPositions);

/** A count of problems or cases, at least one. */
export const countValue = integerIn(1, 1_000_000);

/** Sequences generated together in one canvas. */
export const batchValue = integerIn(1, 1024);
