/**
 * `measured_at(score, layer)`: the score as measured when that layer is decided this step, the
 * same value on every later layer (ES-dLLM measures once, at its skip layer, and keeps the set).
 */
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { members } from '../../src/dsl/semantics/evaluate.ts';
import { layerRules } from '../../src/dsl/semantics/layerRules.ts';
import { PlanStepper, type StepScores } from '../../src/dsl/semantics/stepper.ts';

const plan = (score: string) => `plan p() {
  blocks 8
  refresh all when block_start
  compute current_block on layers < 1
  compute topk(current_block & masked, ${score}, 2) | newly_decoded on layers >= 1
  cache kv of all
  attend all
  decode per_step(1) in current_block
}
`;

/** The rows each layer computes at the second step, with a score that prefers other rows on each layer. */
function rowsPerLayer(score: string): number[][] {
  const checked = checkSource({ path: 'p.kvp', text: plan(score) });
  expect(checked.diagnostics).toEqual([]);
  const typed = checked.plans[0]?.typed;
  if (!typed) throw new Error('not typed');
  const rules = layerRules(typed, 4);
  const canvas = new Canvas(2, 8, 8);
  const asked: number[] = [];
  // Layer l's confidence prefers block positions 2 + 2l and 3 + 2l.
  const scores: StepScores = {
    score: (_name, _q, layer) => {
      asked.push(layer);
      return Float64Array.from({ length: canvas.length }, (_, i) =>
        i === 2 + 2 * layer || i === 3 + 2 * layer ? 1 : 0,
      );
    },
    attnSimilarity: () => 1,
  };
  const stepper = new PlanStepper(typed, rules, canvas, scores, new Float64Array(canvas.length));
  let rows: number[][] = [];
  for (let s = 0; s < 2; s++) {
    rows = rules.map((r) => {
      const d = stepper.decideLayer(r);
      stepper.commitLayer(d);
      return members(d.rows);
    });
    const chosen = stepper.decide();
    stepper.finishStep();
    canvas.commit(chosen);
    canvas.advance();
  }
  return rows;
}

describe('measured_at', () => {
  test('every layer from the pinned one on reads the measurement of that layer', () => {
    // Step 0 committed position 8 (the decode score is read at the last layer, 3), so the second
    // step recomputes it (newly_decoded) beside the two best of the masked block by layer 1's score.
    expect(rowsPerLayer('measured_at(confidence, 1)')).toEqual([
      [2, 3, 4, 5, 6, 7, 8, 9],
      [4, 5, 8],
      [4, 5, 8],
      [4, 5, 8],
    ]);
  });

  test('without it each layer ranks by its own measurement', () => {
    expect(rowsPerLayer('confidence')).toEqual([
      [2, 3, 4, 5, 6, 7, 8, 9],
      [4, 5, 8],
      [6, 7, 8],
      // Layer 3 prefers 8 (decoded) and 9; the tie among the rest goes to the lowest position.
      [2, 8, 9],
    ]);
  });
});
