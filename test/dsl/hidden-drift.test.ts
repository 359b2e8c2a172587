/**
 * `hidden_drift` compares the hidden state entering a layer with the `hidden` cache of the layer
 * below: the rows it scores need that cache, and layer 0 has no layer below.
 */
import { expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';

const plan = (
  kinds: string,
  layerZero = 'compute all on layer 0',
  scope = 'on layers >= 1',
) => `plan p(rho: float = 0.25 in [0.01, 1.0]) {
  refresh all when step == 0
  ${layerZero}
  compute keep(generated, hidden_drift, rho) | newly_decoded ${scope}
  cache ${kinds} of all
  attend all
  decode steps(64)
}
`;
const messages = (text: string) => checkSource({ path: 'p.kvp', text }).diagnostics.map((d) => d.message);

test('hidden_drift needs the hidden cache of the layer below, and a layer below', () => {
  expect(messages(plan('kv, hidden'))).toEqual([]);
  expect(messages(plan('kv'))).toContain(
    'hidden_drift compares the hidden state entering layer 1 with what layer 0 cached, but positions 6..20, 22..29 (masked rows), position 21 (decoded rows) have no cached hidden state of layer 0 at step 1 (block 0, block step 1), layer 1',
  );
  expect(messages(plan('kv, hidden', '', ''))).toContain(
    'hidden_drift compares the hidden state entering a layer with the hidden state the layer below cached, but it is read at step 1 (block 0, block step 1), layer 0, which has no layer below',
  );
});
