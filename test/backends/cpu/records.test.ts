/**
 * The CPU runner hands out the hidden states of a step from buffers it reuses (StepRunner.embed):
 * each must keep its values for the rest of its step, while later layers run, since scores
 * measured at one layer may be read at another (es-dllm's `measured_at`, the similarity rows).
 */
import { expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import { float32Of, type HostTensor } from '../../../src/ir/tensor.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { generate } from '../../../src/runtime/generate.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { backendConfigs, examplePlan } from '../../runtime/support.ts';

test('every hidden state a step returns keeps its values until the step ends', async () => {
  const plan = examplePlan('es-dllm');
  const config = modelFor(plan, backendConfigs[0] as ModelConfig);
  const weights = randomWeights(config, 3);
  const prompt = Int32Array.from([3, 1, 4, 1, 5]);
  const build = buildCpu(plan, config, prompt.length + 16);
  let step: { tensor: HostTensor; copy: Float32Array }[] = [];
  // The float32 storage itself: `data` widens it once, on first read, and would hide a change.
  const storage = (h: HostTensor) => float32Of(h) ?? Float32Array.from(h.data);
  let steps = 0;
  let checked = 0;
  const runner = (L: number) => {
    const r = new CpuRunner(build, weights, L);
    const keep = (h: HostTensor | undefined) => {
      if (h) step.push({ tensor: h, copy: storage(h).slice() });
      return h;
    };
    const { embed, layer, head } = r;
    r.embed = (...a) => {
      step = [];
      return keep(embed.apply(r, a));
    };
    r.layer = (...a) => keep(layer.apply(r, a));
    r.head = (...a) => {
      steps++;
      for (const { tensor, copy } of step) {
        expect(storage(tensor)).toEqual(copy);
        checked++;
      }
      // Distinct buffers: a step's records do not share storage.
      expect(new Set(step.map((s) => storage(s.tensor).buffer)).size).toBe(step.length);
      return head.apply(r, a);
    };
    return r;
  };
  await generate({
    model: { config, weights },
    plan,
    lowered: build.lowered,
    prompts: [prompt],
    genLength: 16,
    runner,
  });
  expect(steps).toBeGreaterThan(1);
  // The embedding and every layer but the last are read in each step.
  expect(checked).toBeGreaterThanOrEqual(steps * config.layers);
});
