/**
 * `uncached`: the positions with no valid K/V cache entry at the layer being decided. A window
 * that slides with the decoding frontier reads positions never computed before; computing the
 * attended keys that are `uncached` makes every read valid (examples/streaming-dllm.kvp).
 */
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { members } from '../../src/dsl/semantics/evaluate.ts';
import { layerRules } from '../../src/dsl/semantics/layerRules.ts';
import { PlanStepper } from '../../src/dsl/semantics/stepper.ts';

const plan = (compute: string) => `plan p() {
  let active = leftmost(masked, 2)
  let span = leftmost(masked, 4)
  let keys = prompt | decoded | span
  compute ${compute}
  cache kv of all
  attend keys
  decode per_step(1) in active
}
`;

describe('uncached', () => {
  test('computes each attended key once, when it is first read, and the rows that change', () => {
    const checked = checkSource({ path: 'p.kvp', text: plan('active | newly_decoded | keys & uncached') });
    expect(checked.diagnostics).toEqual([]);
    const typed = checked.plans[0]?.typed;
    if (!typed) throw new Error('not typed');
    const rules = layerRules(typed, 2);
    // 2 prompt positions, 8 generated (positions 2..9), no blocks.
    const canvas = new Canvas(2, 8, 8);
    const scores = { score: () => new Float64Array(canvas.length).fill(0.5), attnSimilarity: () => 1 };
    const stepper = new PlanStepper(typed, rules, canvas, scores, new Float64Array(canvas.length));
    const computed: number[][] = [];
    for (let s = 0; s < 3; s++) {
      const rows = rules.map((r) => {
        const d = stepper.decideLayer(r);
        stepper.commitLayer(d);
        return members(d.rows);
      });
      expect(rows[1]).toEqual(rows[0]);
      computed.push(rows[0] ?? []);
      const chosen = stepper.decide();
      stepper.finishStep();
      canvas.commit(chosen);
      canvas.advance();
    }
    // Step 0: the prompt and the window (2..5); step 1: the active rows (3, 4), the row decoded at
    // step 0 (2) and the one entering the window (6); step 2 likewise with 7.
    expect(computed).toEqual([
      [0, 1, 2, 3, 4, 5],
      [2, 3, 4, 6],
      [3, 4, 5, 7],
    ]);
  });

  test('without it, a position entering the window is read never computed', () => {
    const bad = checkSource({
      path: 'p.kvp',
      text: plan('active | newly_decoded | (prompt | span)[step == 0]'),
    });
    expect(bad.diagnostics.map((d) => d.message)).toEqual([
      // The checker's canvas has 6 prompt positions: the window's first new position is 10.
      'keys at position 10 (masked rows) are read at step 1 (block 0, block step 1), layer 0 but are neither computed in this step nor ever cached',
    ]);
  });
});
