import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { opFamilies, ops } from '../../src/ir/ops.ts';

const doc = readFileSync(new URL('../../docs/ir.md', import.meta.url), 'utf8');
const documented = [...doc.matchAll(/^#### `([a-z_]+)`$/gm)].map((m) => m[1]);

describe('docs/ir.md', () => {
  it('documents every op of the catalogue, and no other', () => {
    expect([...documented].sort()).toEqual(Object.keys(ops).sort());
  });

  it('documents the families of the catalogue under their titles, each op in catalogue order', () => {
    const ops4 = doc.split('## 4. Ops')[1]?.split(/^## /m)[0] ?? '';
    const sections = [...ops4.matchAll(/^### (.+)$/gm)].map((m) => m[1]);
    const families = opFamilies.map((f) => f.title);
    expect(sections.filter((s) => families.includes(s as string))).toEqual(families);
    for (const f of opFamilies) {
      const section = ops4.split(`### ${f.title}\n`)[1]?.split(/^### /m)[0] ?? '';
      const listed = [...section.matchAll(/^#### `([a-z_]+)`$/gm)].map((m) => m[1]);
      expect(listed, f.title).toEqual(Object.keys(f.ops));
    }
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
