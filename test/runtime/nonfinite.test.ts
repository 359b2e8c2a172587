// Logits that are not finite end a generation with a NonFiniteLogits error (exit code 1 in the
// CLI) on every backend, instead of tokens decoded from NaN; weights that are not finite are
// refused when a model is loaded.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { prepareBackend, type RunBackend } from '../../src/backends/registry.ts';
import { checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import {
  checkWeights,
  randomWeights,
  type Tensor,
  WeightError,
  type Weights,
} from '../../src/model/weights.ts';
import { generate } from '../../src/runtime/generate.ts';
import { NonFiniteLogits } from '../../src/runtime/generationError.ts';
import { gpuOrSkip } from '../backends/webgpu/support.ts';

const config = presets.tiny as ModelConfig;
const plan = checkSource(
  { path: 'examples/baseline.kvp', text: readFileSync('examples/baseline.kvp', 'utf8') },
  { overrides: new Map([['block', '4']]) },
).plans[0];
if (!plan) throw new Error('baseline does not check');

async function run(backend: RunBackend, weights: Weights) {
  const p = await prepareBackend(backend, plan as NonNullable<typeof plan>, config, weights, 12);
  return generate({
    model: { config: p.config, weights },
    plan: plan as NonNullable<typeof plan>,
    lowered: p.lowered,
    prompts: [Int32Array.from([1, 2, 3, 4])],
    genLength: 8,
    seed: 1,
    ...(p.runner ? { runner: p.runner } : {}),
  });
}

/**
 * Weights whose FFN output overflows float32 in one column: a row of the down projection at 3e38
 * (finite, just under float32's largest value) sums past it; float64 carries it.
 */
function overflowing(): Weights {
  const w = randomWeights(config, 2);
  const down = w.get('model.layers.0.mlp.down_proj.weight');
  if (!down) throw new Error('no down projection');
  const k = down.shape[1] as number;
  down.data = Float64Array.from(down.data, (x, i) => (i < k ? 3e38 : x));
  return w;
}

const device = await gpuOrSkip('non-finite logits on WebGPU');

describe('non-finite values', () => {
  test('a NaN weight is refused with the tensor and element named', () => {
    const w = randomWeights(config, 1);
    (w.get('model.norm.weight')?.data as Float64Array)[3] = Number.NaN;
    expect(() => checkWeights(config, w)).toThrow(WeightError);
    expect(() => checkWeights(config, w)).toThrow(
      'weight "model.norm.weight" of model "tiny" holds a non-finite value (NaN) at element 3',
    );
  });

  test.each([
    ['bf16', 0x7f80, 'Infinity'],
    ['f16', 0x7e00, 'NaN'],
  ] as const)('a %s weight whose bits are %i is refused without widening the others', (half, bad, shown) => {
    const w = new Map<string, Tensor>(randomWeights(config, 1));
    const bits = new Uint16Array(config.dModel).fill(half === 'bf16' ? 0x3f80 : 0x3c00);
    bits[7] = bad;
    w.set('model.norm.weight', { shape: [config.dModel], half, bits });
    expect(() => checkWeights(config, w)).toThrow(
      `weight "model.norm.weight" of model "tiny" holds a non-finite value (${shown}) at element 7`,
    );
    bits[7] = half === 'bf16' ? 0x3f80 : 0x3c00;
    expect(() => checkWeights(config, w)).not.toThrow();
  });

  test('float64 carries the large activations: the reference generates', async () => {
    const r = await run('reference', overflowing());
    expect(r.sequences[0]?.generated).toHaveLength(8);
  });

  test.each([
    ['cpu', true],
    ['webgpu', device !== undefined],
  ] as const)(
    'float32 overflows on %s: the generation ends with NonFiniteLogits',
    async (backend, available) => {
      if (!available) return;
      const failure = run(backend, overflowing());
      await expect(failure).rejects.toThrow(NonFiniteLogits);
      await expect(failure).rejects.toThrow(/^the logits of canvas position \d+ are not finite/);
    },
  );
});
