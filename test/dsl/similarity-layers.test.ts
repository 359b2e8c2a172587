/**
 * The layers whose attention rows a run remembers after a refresh: only those the plan compares
 * (each one costs a full-canvas attention probe), every layer when `after_drift` may compare any.
 */
import { expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { hiddenLayers, similarityLayers } from '../../src/dsl/semantics/uses.ts';

const typedOf = (rules: string, params = '') => {
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
  return typed;
};
const layersOf = (rules: string, params = '') => similarityLayers(typedOf(rules, params), [0, 1, 2, 3, 4, 5]);
const readOf = (rules: string, params = '') => hiddenLayers(typedOf(rules, params), [0, 1, 2, 3, 4, 5]);

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

test('the hidden state is read at the compared layers only when attn_similarity is the only internal score', () => {
  expect(
    readOf('refresh all when attn_similarity(probe) < 0.9 on layers > probe', 'probe: int = 2 in [0, 3]'),
  ).toEqual([2]);
  // Any other score measured from the hidden state reads the layer its rule is evaluated on.
  expect(
    readOf(
      'refresh all when attn_similarity(1) < 0.9 or count(keep(masked, rollout, 0.5)) > 3 on layers > 1',
    ),
  ).toEqual([0, 1, 2, 3, 4, 5]);
  expect(readOf('refresh all when after_drift(0.9)')).toEqual([0, 1, 2, 3, 4, 5]);
  expect(readOf('refresh all when every(2) on layers > 1')).toEqual([]);
});

test('scores pinned by measured_at are read at the pinned layer only; the same score unpinned, everywhere', () => {
  const keep = (score: string) => `compute keep(masked, ${score}, 0.5) | newly_decoded on layers >= 3`;
  expect(
    readOf(keep('measured_at(hidden_drift + (1.0 - confidence), skip)'), 'skip: int = 3 in [1, 5]'),
  ).toEqual([3]);
  expect(
    readOf(`${keep('measured_at(rollout, 3)')}\n  refresh all when attn_similarity(1) < 0.5 on layers > 1`),
  ).toEqual([1, 3]);
  expect(readOf(keep('measured_at(rollout, 3) + hidden_drift'))).toEqual([0, 1, 2, 3, 4, 5]);
});
