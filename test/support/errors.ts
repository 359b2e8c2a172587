import { expect } from 'vitest';

/**
 * Calls `f`, which must throw an instance of `errorClass` whose message contains every part;
 * returns the error, for further checks on it or its message.
 */
export function expectThrown<E extends Error>(
  f: () => unknown,
  errorClass: abstract new (...args: never[]) => E,
  ...parts: string[]
): E {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(errorClass);
  const message = (err as E).message;
  for (const p of parts) expect(message).toContain(p);
  return err as E;
}
