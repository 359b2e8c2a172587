/**
 * The CPU runner's probe computes the softmax statistics of each step's logits natively
 * (kv_softmax_stats), and the decode rule and the score-driven sets read them from there. Decided
 * from them, a generation commits the same tokens at the same steps as from the statistics
 * src/model/golden.ts computes in JavaScript, for every sequence of a batch (each reads its own
 * rows of the step's statistics).
 */
import { expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import { float32Of } from '../../../src/ir/tensor.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { generate } from '../../../src/runtime/generate.ts';
import { NonFiniteLogits } from '../../../src/runtime/generationError.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import type { Probe } from '../../../src/runtime/probe.ts';
import { backendConfigs, examplePlan } from '../../runtime/support.ts';

const prompts = [
  [3, 1, 4],
  [1, 5, 9, 2, 6],
  [5, 3, 5, 8, 9, 7, 9],
].map((p) => Int32Array.from(p));

// Confidence decides fast-dllm-dual's commits, margin prophet's; es-dllm's compute set reads
// confidence too.
test.each(['fast-dllm-dual', 'prophet', 'es-dllm'])(
  '%s: native statistics decide as the JavaScript ones, for each sequence of a batch',
  async (name) => {
    const plan = examplePlan(name);
    const config = modelFor(plan, backendConfigs[0] as ModelConfig);
    const weights = randomWeights(config, 5);
    const genLength = 8;
    const build = buildCpu(
      plan,
      config,
      prompts.reduce((a, p) => a + p.length + genLength, 0),
    );
    let native = 0;
    const run = (withStats: boolean) =>
      generate({
        model: { config, weights },
        plan,
        lowered: build.lowered,
        prompts,
        genLength,
        batchSize: prompts.length,
        runner: (L) => {
          const r = new CpuRunner(build, weights, L);
          const probe = r.probe;
          const wrapped: Probe = {
            measure: probe.measure.bind(probe),
            rowDrift: probe.rowDrift.bind(probe),
            ...(withStats
              ? {
                  predictionStats: (...a: Parameters<typeof probe.predictionStats>) => {
                    native++;
                    return probe.predictionStats(...a);
                  },
                }
              : {}),
          };
          return Object.defineProperty(r, 'probe', { value: wrapped });
        },
      });
    const js = await run(false);
    expect(native).toBe(0);
    const withNative = await run(true);
    expect(native).toBeGreaterThan(1);
    expect(withNative.sequences.map((s) => [s.generated, s.steps])).toEqual(
      js.sequences.map((s) => [s.generated, s.steps]),
    );
  },
);

test('a logit that is not finite, found by the native statistics, ends the generation naming its position', async () => {
  const plan = examplePlan('fast-dllm-dual');
  const config = modelFor(plan, backendConfigs[0] as ModelConfig);
  const weights = randomWeights(config, 5);
  const build = buildCpu(plan, config, 5 + 8);
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    let heads = 0;
    let poisoned = -1;
    let native = 0;
    const run = generate({
      model: { config, weights },
      plan,
      lowered: build.lowered,
      prompts: [Int32Array.from([1, 5, 9, 2, 6])],
      genLength: 8,
      runner: (L) => {
        const r = new CpuRunner(build, weights, L);
        const probe = r.probe;
        const { head } = r;
        r.head = (program, out) => {
          const t = head.call(r, program, out);
          // The third step's second row: one logit, not the mask's.
          if (++heads === 3) {
            (float32Of(t) as Float32Array)[config.vocab + 2] = bad;
            poisoned = out[1] as number;
          }
          return t;
        };
        const counted: Probe = {
          measure: probe.measure.bind(probe),
          predictionStats: (...a: Parameters<typeof probe.predictionStats>) => {
            native++;
            return probe.predictionStats(...a);
          },
        };
        return Object.defineProperty(r, 'probe', { value: counted });
      },
    });
    await expect(run).rejects.toThrow(NonFiniteLogits);
    await expect(run).rejects.toThrow(`canvas position ${poisoned} are not finite (${bad})`);
    expect(native).toBe(3);
  }
});
