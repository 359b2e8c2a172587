import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { transposeInto } from '../../src/model/transpose.ts';

describe('transposeInto', () => {
  it('moves element [r][c] to [c][r] for every shape, tile edges included', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 70 }), (rows, cols) => {
        const data = Float32Array.from({ length: rows * cols }, (_, i) => i);
        const out = new Float32Array(rows * cols).fill(-1);
        transposeInto(out, data, rows, cols);
        for (let r = 0; r < rows; r++)
          for (let c = 0; c < cols; c++) expect(out[c * rows + r]).toBe(data[r * cols + c]);
      }),
    );
  });

  it('keeps 16-bit patterns as they are', () => {
    const data = Uint16Array.from({ length: 3 * 40 }, (_, i) => 0xff80 ^ i);
    const out = new Uint16Array(data.length);
    transposeInto(out, data, 3, 40);
    expect(out[39 * 3 + 2]).toBe(data[2 * 40 + 39]);
    expect(out[5 * 3 + 1]).toBe(0xff80 ^ 45);
  });
});
