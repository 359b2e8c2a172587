import fc from 'fast-check';
import { expect, test } from 'vitest';
import { members, positionsOf } from '../../src/dsl/semantics/evaluate.ts';

test('positionsOf lists the positions a mask holds, ascending, as members does', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const mask = Uint8Array.from(bytes, (b) => b & 1);
      expect(Array.from(positionsOf(mask))).toEqual(members(mask));
    }),
  );
});
