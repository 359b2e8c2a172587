/**
 * The read-back layout of the device kernels' statistics (src/backends/deviceStats.ts), and the
 * premise of the vocabulary guard: a float carries every token index below 2^24, not beyond.
 */
import { expect, test } from 'vitest';
import { deviceStatsFit, unpackStats } from '../../src/backends/deviceStats.ts';

test('unpackStats: three statistics a row, then every row argmax; -1 stays -1', () => {
  const out = Float32Array.from([0.5, 0.25, 1.5, 0.125, 0, 2.5, 7, -1]);
  const s = unpackStats(out);
  expect([...s.stats]).toEqual([0.5, 0.25, 1.5, 0.125, 0, 2.5]);
  expect([...s.argmax]).toEqual([7, -1]);
});

test('deviceStatsFit: exactly the vocabularies whose every index a float32 holds', () => {
  const last = 2 ** 24 - 1;
  expect(Math.fround(last)).toBe(last);
  expect(Math.fround(2 ** 24 + 1)).not.toBe(2 ** 24 + 1);
  expect([deviceStatsFit(2 ** 24), deviceStatsFit(2 ** 24 + 1), deviceStatsFit(151_936)]).toEqual([
    true,
    false,
    true,
  ]);
});
