import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ops } from '../../src/ir/ops.ts';

const doc = readFileSync(new URL('../../docs/ir.md', import.meta.url), 'utf8');
const documented = [...doc.matchAll(/^#### `([a-z_]+)`$/gm)].map((m) => m[1]);

describe('docs/ir.md', () => {
  it('documents every op of the catalogue, and no other', () => {
    expect([...documented].sort()).toEqual(Object.keys(ops).sort());
  });

  it('lists each op with its operands and attributes as in ops.ts', () => {
    for (const [name, spec] of Object.entries(ops)) {
      const section = doc.split(`#### \`${name}\``)[1]?.split('####')[0] ?? '';
      for (const arg of spec.args) expect(section, `${name} operand ${arg}`).toContain(`\`${arg}:`);
      for (const attr of Object.keys({ ...spec.attrs, ...spec.optionalAttrs })) {
        expect(section, `${name} attribute ${attr}`).toContain(`\`${attr}:`);
      }
    }
  });
});
