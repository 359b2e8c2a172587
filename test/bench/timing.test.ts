/**
 * The benchmarks' random inputs lie where the plans' arena puts every buffer, on a 64-byte
 * boundary (bench/timing.ts, alignedFloats): a large typed array of its own starts 16 bytes past
 * one, and attention measured differently there.
 */
import koffi from 'koffi';
import { describe, expect, test } from 'vitest';
import { alignedFloats, randomFloats } from '../../bench/timing.ts';

/** The address of a typed array's first byte: glibc's memchr, asked for the value it holds, returns it. */
const memchr = koffi.load('libc.so.6').func('void *memchr(const void *s, int c, size_t n)');
function addressOf(x: Float32Array): bigint {
  const bytes = new Uint8Array(x.buffer, x.byteOffset, 4);
  return koffi.address(memchr(bytes, bytes[0] as number, 1));
}

describe('benchmark inputs', () => {
  // Small arrays live in V8's heap, large ones in mmap'd blocks 16 bytes past a page.
  const sizes = [1, 15, 1000, 40_000, 163_840, 1_310_720];

  test.each(sizes)('alignedFloats(%i) starts on a 64-byte boundary and holds n zeros', (n) => {
    const x = alignedFloats(n);
    expect(x.length).toBe(n);
    expect(x.every((v) => v === 0)).toBe(true);
    expect(addressOf(x) % 64n).toBe(0n);
  });

  test.each(sizes)('randomFloats(%i) is aligned, in [-1, 1), and the same for the same seed', (n) => {
    const a = randomFloats(n, 7);
    const b = randomFloats(n, 7);
    expect(addressOf(a) % 64n).toBe(0n);
    expect(
      Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
        Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      ),
    ).toBe(true);
    expect(a.every((v) => v >= -1 && v < 1)).toBe(true);
    if (n > 1) expect(randomFloats(n, 8)).not.toEqual(a);
  });
});
