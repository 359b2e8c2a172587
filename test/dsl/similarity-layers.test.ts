/**
 * The layers whose attention rows a run remembers after a refresh: only those the plan compares
 * (each one costs a full-canvas attention probe), every layer when `after_drift` may compare any.
 */
import { expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { similarityLayers } from '../../src/dsl/semantics/uses.ts';

const layersOf = (rules: string, params = '') => {
  const text = `plan p(${params}) {
  refresh all when step == 0
  ${rules}
  compute current_block | newly_decoded
  cache kv, hidden of all
  attend all
  decode per_step(1) in current_block
}
`;
  const checked = checkSource({ path: 'p.kvp', text });
  expect(checked.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  const typed = checked.plans[0]?.typed;
  if (!typed) throw new Error('not typed');
  return similarityLayers(typed, [0, 1, 2, 3, 4, 5]);
};

test('a plan remembers the layers its attn_similarity calls name, parameters evaluated', () => {
  expect(layersOf('refresh all when attn_similarity(2) < 0.9 on layers > 2')).toEqual([2]);
  expect(
    layersOf(
      'refresh all when attn_similarity(probe) < 0.9 or attn_similarity(probe + 3) < 0.5 on layers > 4',
      'probe: int = 1 in [0, 3]',
    ),
  ).toEqual([1, 4]);
});

test('after_drift compares every layer below the current one, so every layer is remembered', () => {
  expect(layersOf('refresh all when after_drift(0.9)')).toEqual([0, 1, 2, 3, 4, 5]);
});

test('a plan without similarity remembers nothing', () => {
  expect(layersOf('refresh all when every(2) on layers > 1')).toEqual([]);
});
