/**
 * The interpreter's control flow: threads may leave by a divergent branch to the exit (the
 * element-wise kernels' bounds check), and any other divergent branch is refused, since the
 * interpreter runs a CTA's threads in lockstep and could not follow both sides.
 */
import { expect, test } from 'vitest';
import { generateKernel } from '../../../src/backends/cuda-ptx/kernels/index.ts';
import { interpretPtx } from './interpret.ts';

const BASE = 4096;

function fill(ptx: string, count: number): Float32Array {
  const out = new Float32Array(2 * 256).fill(-1);
  const view = new DataView(out.buffer);
  interpretPtx(ptx, {
    grid: [2, 1, 1],
    block: [256, 1, 1],
    sharedBytes: 0,
    params: { p_out: BASE, p_count: count, p_value: 7 },
    global: (addr, bytes) => {
      const off = addr - BASE;
      if (off < 0 || off + bytes > out.byteLength) throw new Error(`address ${addr} out of range`);
      return { view, off };
    },
  });
  return out;
}

test('threads past the count leave by the exit branch; the others go on', () => {
  const ptx = generateKernel({ op: 'fill' }, 'sm_80').ptx;
  const out = fill(ptx, 300);
  expect(out.subarray(0, 300).every((v) => v === 7)).toBe(true);
  expect(out.subarray(300).every((v) => v === -1)).toBe(true);
});

test('a divergent branch to anywhere but the exit is refused', () => {
  // The same bounds check, branching to a label before the store instead of past it.
  const ptx = generateKernel({ op: 'fill' }, 'sm_80')
    .ptx.replace('bra.uni $L_exit', 'bra.uni $L_mid')
    .replace(/(\n\s*mul\.wide\.u32)/, '\n$L_mid:$1');
  expect(ptx).toContain('$L_mid:');
  expect(() => fill(ptx, 300)).toThrow(/divergent .*: 212 of 256 threads branch/);
  // Uniform, it is followed: every thread of both CTAs stores.
  expect(fill(ptx, 0).every((v) => v === 7)).toBe(true);
});
