/**
 * `after_drift(gamma)`, Elastic-Cache's adaptive layer boundary: a refresh that holds on every
 * layer above the first one whose attention drifted this step, with each layer's similarity
 * measured once however many layers ask.
 */
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { members } from '../../src/dsl/semantics/evaluate.ts';
import { layerRules } from '../../src/dsl/semantics/layerRules.ts';
import { PlanStepper } from '../../src/dsl/semantics/stepper.ts';

const source = (scope = '') => `plan p(gamma: float = 0.9 in [0.0, 1.0]) {
  blocks 4
  refresh all when step == 0
  refresh all when after_drift(gamma)${scope}
  compute current_block | newly_decoded
  cache kv, hidden of all
  attend all
  decode per_step(1) in current_block
}
`;

/** Runs steps with the given per-layer similarities; returns the rows of each layer and the layers measured. */
function run(similarities: number[][], scope = '') {
  const checked = checkSource({ path: 'p.kvp', text: source(scope) });
  expect(checked.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  const typed = checked.plans[0]?.typed;
  if (!typed) throw new Error('not typed');
  const rules = layerRules(typed, 4);
  const canvas = new Canvas(2, 8, 4);
  let measured: number[] = [];
  const scores = {
    score: () => new Float64Array(canvas.length).fill(0.5),
    attnSimilarity: (l: number) => {
      measured.push(l);
      return similarities[canvas.step]?.[l] ?? 1;
    },
  };
  const stepper = new PlanStepper(typed, rules, canvas, scores, new Float64Array(canvas.length));
  return similarities.map(() => {
    measured = [];
    const rows = rules.map((r) => {
      const d = stepper.decideLayer(r);
      stepper.commitLayer(d);
      return members(d.rows).length;
    });
    const chosen = stepper.decide();
    stepper.finishStep();
    canvas.commit(chosen);
    canvas.advance();
    return { rows, measured };
  });
}

describe('after_drift', () => {
  test('refreshes every layer above the first that drifted, measuring each layer once', () => {
    const steps = run([
      [1, 1, 1, 1],
      [1, 0.5, 1, 0.2],
      [1, 1, 1, 1],
      [0.1, 1, 1, 1],
    ]);
    // 10 rows, the current block 4: step 0 is a full forward; at step 1 layer 1 drifts, so layers
    // 2 and 3 run every row (layer 3's own drift is not looked at: it is not below a layer).
    expect(steps.map((s) => s.rows)).toEqual([
      [10, 10, 10, 10],
      [4, 4, 10, 10],
      [4, 4, 4, 4],
      [4, 10, 10, 10],
    ]);
    expect(steps[1]?.measured).toEqual([0, 1]);
    expect(steps[2]?.measured).toEqual([0, 1, 2]);
    expect(steps[3]?.measured).toEqual([0]);
  });

  test('a drift exactly at gamma is no drift', () => {
    const steps = run([
      [1, 1, 1, 1],
      [0.9, 0.9, 0.9, 0.9],
    ]);
    expect(steps[1]?.rows).toEqual([4, 4, 4, 4]);
  });

  test('a layer scope narrows the refresh as usual', () => {
    const steps = run(
      [
        [1, 1, 1, 1],
        [0.5, 1, 1, 1],
      ],
      ' on layers >= 3',
    );
    expect(steps[1]?.rows).toEqual([4, 4, 4, 10]);
  });

  test('a refresh scoped to layer 0 alone is rejected: it could never fire', () => {
    for (const scope of [' on layer 0', ' on layers <= 0', ' on layers < 1', ' on layers 0..0']) {
      const d = checkSource({ path: 'p.kvp', text: source(scope) }).diagnostics;
      expect(d.map((x) => x.message)).toEqual([
        '`after_drift` looks at the layers below the one it decides, so on layer 0 it is always false and this refresh never fires',
      ]);
    }
    for (const scope of [' on layers < 2', ' on layers != 0', ' on layers 0..1', ' on layer 1'])
      expect(checkSource({ path: 'p.kvp', text: source(scope) }).diagnostics).toEqual([]);
  });
});
