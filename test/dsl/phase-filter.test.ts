/**
 * A filter by a step condition (`s[cond]`): the set while the condition holds, none otherwise —
 * how a plan writes phases (SparseD's full attention for the first steps, examples/sparsed.kvp).
 * While the condition does not hold the set is not read, so a selection filtered to the steps
 * after it is chosen is not read before; without the filter the same read is an error.
 */
import { describe, expect, test } from 'vitest';
import type { Expr } from '../../src/dsl/ast.ts';
import { checkSource } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { evaluate, type Mask, members } from '../../src/dsl/semantics/evaluate.ts';

const plan = (attend: string) =>
  checkSource({
    path: 'p.kvp',
    text: `plan p() {
  blocks 4
  select kept = topk(all, attention_mass(masked), 2) at step == 1
  compute all
  attend ${attend}
  decode threshold(0.9) by confidence in current_block
}
`,
  });

describe('filters by a step condition', () => {
  test('keep the whole set while the condition holds and nothing after, and read it only then', () => {
    const checked = plan('all[step < 2] | kept[step >= 2] | current_block').plans[0];
    expect(checked).toBeDefined();
    const stmt = checked?.plan.body.find((s) => s.kind === 'attend');
    const attend = stmt?.kind === 'attend' && stmt.keys.kind === 'keys' ? stmt.keys.set : undefined;
    expect(attend).toBeDefined();
    const read: string[] = [];
    const canvas = new Canvas(3, 8, 4);
    const at = (step: number): Mask => {
      canvas.step = step;
      return evaluate(attend as Expr, {
        canvas,
        bindings: checked?.typed.bindings ?? new Map(),
        hooks: {
          modelScore: () => new Float64Array(canvas.length),
          selection: (name) => {
            read.push(`${name}@${step}`);
            return Uint8Array.from({ length: canvas.length }, (_, i) => (i === 0 || i === 5 ? 1 : 0));
          },
          targets: () => new Uint8Array(canvas.length),
          uncached: () => new Uint8Array(canvas.length),
          dirty: () => 0,
          attnSimilarity: () => 1,
          afterDrift: () => false,
          measuredAt: () => new Float64Array(0),
        },
      }) as Mask;
    };
    expect(members(at(0))).toEqual([...Array(11).keys()]);
    expect(members(at(1))).toEqual([...Array(11).keys()]);
    // From step 2: the selection and the current block (block 0: positions 3..6) only.
    expect(members(at(2))).toEqual([0, 3, 4, 5, 6]);
    expect(read).toEqual(['kept@2']);
  });

  test('the checker accepts the phased read and rejects the unphased one', () => {
    expect(plan('all[step < 2] | kept[step >= 2] | current_block').diagnostics).toEqual([]);
    const bad = plan('all[step < 2] | kept | current_block');
    expect(bad.diagnostics.map((d) => d.message)).toEqual([
      "selection 'kept' is read at step 0 (block 0, block step 0), layer 0 before it is first chosen",
    ]);
  });
});
