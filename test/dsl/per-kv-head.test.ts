/**
 * `select ... per kv_head`: one set per KV head, chosen with each head's own scores, and an attend
 * that reads it gets one key set per head (its union is what the cache-validity check sees).
 */
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { type Mask, members } from '../../src/dsl/semantics/evaluate.ts';
import { layerRules } from '../../src/dsl/semantics/layerRules.ts';
import { PlanStepper, type StepScores } from '../../src/dsl/semantics/stepper.ts';

const text = (score: string) => `plan p() {
  blocks 4
  refresh all when block_start
  select u = topk(prompt, ${score}, 2) at block_start per kv_head
  compute current_block
  cache kv of prompt
  attend u | current_block
  decode per_step(1) in current_block
}
`;

describe('per-KV-head selections', () => {
  // Pinned to layer 1 (`measured_at`), the score is measured for each head as that layer is decided.
  test.each([
    ['attention_mass(current_block)', [0, 1]],
    ['measured_at(attention_mass(current_block), 1)', [undefined, 0, 1]],
  ])('each KV head ranks with its own scores (%s) and attends to its own keys', (score, measured) => {
    const checked = checkSource({ path: 'p.kvp', text: text(score) });
    expect(checked.diagnostics).toEqual([]);
    const typed = checked.plans[0]?.typed;
    if (!typed) throw new Error('not typed');
    const rules = layerRules(typed, 2);
    expect(rules.map((r) => r.perKvHead)).toEqual([true, true]);
    // 6 prompt positions, one block of 4.
    const canvas = new Canvas(6, 4, 4);
    const asked: (number | undefined)[] = [];
    // KV head 0 prefers prompt positions 0 and 1, head 1 positions 4 and 5; the shared mass 2 and 3.
    const favourite: Record<string, readonly number[]> = { '0': [0, 1], '1': [4, 5], shared: [2, 3] };
    const scores: StepScores = {
      score: (name: string, _q: Mask | undefined, _layer: number, head?: number) => {
        if (name === 'attention_mass') asked.push(head);
        const top = favourite[head === undefined ? 'shared' : String(head)] ?? [];
        return Float64Array.from({ length: canvas.length }, (_, i) => (top.includes(i) ? 1 : 0));
      },
      attnSimilarity: () => 1,
    };
    const stepper = new PlanStepper(typed, rules, canvas, scores, new Float64Array(canvas.length), {}, 2);
    const step = () => {
      const ds = rules.map((r) => {
        const d = stepper.decideLayer(r);
        stepper.commitLayer(d);
        return d;
      });
      const chosen = stepper.decide();
      stepper.finishStep();
      canvas.commit(chosen);
      canvas.advance();
      return ds;
    };
    const [full] = step();
    // The refresh at the block start attends to every key, the same for each head.
    expect(full?.full).toBe(true);
    expect(full?.headKeys?.map(members)).toEqual([
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    ]);
    expect(asked).toEqual(measured);
    const [cached] = step();
    expect(cached?.headKeys?.map(members)).toEqual([
      [0, 1, 6, 7, 8, 9],
      [4, 5, 6, 7, 8, 9],
    ]);
    expect(members(cached?.keys as Mask)).toEqual([0, 1, 4, 5, 6, 7, 8, 9]);
  });
});
