import { describe, expect, test } from 'vitest';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';

describe('the canvas block layout', () => {
  const blocks = (c: Canvas) => Array.from({ length: c.length }, (_, i) => c.blockOf(i));

  test('by default the prompt is one block (-1) and blocks start where it ends', () => {
    const c = new Canvas(6, 8, 4);
    expect(c.origin).toBe(6);
    expect(blocks(c)).toEqual([-1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1]);
    expect(c.numBlocks).toBe(2);
    expect(c.blockRange(1)).toEqual([10, 14]);
  });

  test('aligned, blocks count from position 0: whole prompt blocks come first, its tail shares block 0', () => {
    const c = new Canvas(6, 8, 4, true);
    expect(c.origin).toBe(4);
    expect(blocks(c)).toEqual([-1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
    expect(c.numBlocks).toBe(3);
    expect([0, 1, 2].map((b) => c.blockRange(b))).toEqual([
      [4, 8],
      [8, 12],
      [12, 14],
    ]);
    // Block 0 holds two prompt tokens and two masks; once those are decoded the schedule moves on.
    expect(c.maskedInBlock(0)).toBe(2);
    c.commit([6, 7]);
    c.advance();
    expect(c.block).toBe(1);
  });

  test('aligned, a prompt that ends on a boundary is the same layout as the default, its blocks apart', () => {
    const a = new Canvas(8, 4, 4, true);
    expect(a.origin).toBe(8);
    expect(blocks(a)).toEqual([-2, -2, -2, -2, -1, -1, -1, -1, 0, 0, 0, 0]);
    expect(blocks(new Canvas(8, 4, 4)).slice(8)).toEqual(blocks(a).slice(8));
  });
});
