/**
 * The CPU runner hands out the hidden states of a step from buffers it reuses (StepRunner.embed):
 * each must keep its values for the rest of its step, while later layers run, since scores
 * measured at one layer may be read at another (the similarity rows `after_drift` compares,
 * `measured_at`). A plan whose scores read every layer's state shows them all.
 * Its logits (StepRunner.head) are a view of its arena, read in float32 by the steps that follow.
 */
import { expect, test, vi } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import { float32Of, float32Tensor, type HostTensor } from '../../../src/ir/tensor.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { generate } from '../../../src/runtime/generate.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { ModelScores } from '../../../src/runtime/scores.ts';
import { backendConfigs, examplePlan } from '../../runtime/support.ts';

/** An example plan on the first backend test model, a prompt of 5 and a canvas for 16 more. */
function setup(name: string) {
  const plan = examplePlan(name);
  const config = modelFor(plan, backendConfigs[0] as ModelConfig);
  const prompt = Int32Array.from([3, 1, 4, 1, 5]);
  return {
    plan,
    config,
    weights: randomWeights(config, 3),
    prompt,
    build: buildCpu(plan, config, prompt.length + 16),
  };
}

test('every hidden state a step returns keeps its values until the step ends', async () => {
  const { plan, config, weights, prompt, build } = setup('elastic-cache-adaptive');
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

test("a step's logits reach the scores and the decode rule in float32, never widened whole", async () => {
  const { plan, config, weights, prompt, build } = setup('fast-dllm-dual');
  // Widening a step's logits (`data`) would copy rows x vocab into float64 every step.
  const unwidened = (t: HostTensor): HostTensor => {
    const narrow = float32Of(t);
    expect(narrow).toBeDefined();
    return Object.defineProperty(float32Tensor(t.shape, narrow as Float32Array), 'data', {
      get: () => {
        throw new Error('the logits were widened');
      },
    });
  };
  let heads = 0;
  let stores = 0;
  const run = (narrowOnly: boolean) =>
    generate({
      model: { config, weights },
      plan,
      lowered: build.lowered,
      prompts: [prompt],
      genLength: 16,
      runner: (L) => {
        const r = new CpuRunner(build, weights, L);
        if (!narrowOnly) return r;
        const { head } = r;
        r.head = (...a) => {
          heads++;
          const h = head.apply(r, a);
          // The CPU runner's logits are a view of its arena: there whether asked for or not.
          return { ...h, logits: unwidened(h.logits as HostTensor) };
        };
        return r;
      },
    });
  const plain = await run(false);
  const { storeLogits } = ModelScores.prototype;
  const spy = vi.spyOn(ModelScores.prototype, 'storeLogits').mockImplementation(function (
    this: ModelScores,
    rows,
    logits,
    step,
  ) {
    stores++;
    storeLogits.call(this, rows, unwidened(logits as HostTensor), step);
  });
  try {
    const narrow = await run(true);
    expect(narrow.sequences[0]?.generated).toEqual(plain.sequences[0]?.generated);
  } finally {
    spy.mockRestore();
  }
  expect(heads).toBeGreaterThan(1);
  expect(stores).toBe(heads);
});
