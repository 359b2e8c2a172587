import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import { type GenerationResult, simulateGeneration } from '../../src/runtime/simulate.ts';
import { float64Bound } from '../../src/runtime/verify.ts';
import { configArb } from '../support/models.ts';
import { examplePlan, examples } from './support.ts';

const caseArb = fc.record({
  config: configArb(3),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
  promptLen: fc.integer({ min: 1, max: 4 }),
});

/** Runs a plan on a model shaped for it (its mask and AR shift are the model's), 2 blocks of 4. */
async function run(
  name: string,
  base: ModelConfig,
  seed: number,
  promptLen: number,
  premise = false,
): Promise<GenerationResult & { L: number; config: ModelConfig }> {
  const plan = examplePlan(name);
  const config = modelFor(plan, base);
  const weights = randomWeights(config, seed, premise ? { attentionOutputScale: 0 } : {});
  const prompt = Int32Array.from({ length: promptLen }, (_, i) => (seed + 7 * i) % (config.vocab - 1));
  const result = await simulateGeneration(plan, compilePlan(plan, config, { target: 'reference' }).lowered, {
    config,
    weights,
    prompt,
    genLen: 8,
    seed,
  });
  return { ...result, L: promptLen + 8, config };
}

const withinBound = (
  r: Awaited<ReturnType<typeof run>>,
  only: (s: GenerationResult['steps'][number]) => boolean = () => true,
) => r.steps.filter(only).every((s) => s.deviation <= float64Bound(r.config, r.L, s.scale));

describe('plans against the golden full forward', () => {
  const exact = examples.filter((e) => examplePlan(e).classification.exact);
  test.each(exact)('exact plan %s equals the golden at every step', async (name) => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ config, seed, promptLen }) => {
        const r = await run(name, config, seed, promptLen);
        expect(r.steps.length).toBeGreaterThan(0);
        expect(withinBound(r)).toBe(true);
      }),
      { numRuns: 6 },
    );
  });

  const approximate = examples.filter((e) => !exact.includes(e));
  test.each(approximate)(
    'approximate plan %s equals the golden when its premise holds, and at refresh steps',
    async (name) => {
      await fc.assert(
        fc.asyncProperty(caseArb, async ({ config, seed, promptLen }) => {
          expect(withinBound(await run(name, config, seed, promptLen, true))).toBe(true);
          const random = await run(name, config, seed, promptLen);
          expect(random.steps.some((s) => s.phase === 'refresh')).toBe(true);
          expect(withinBound(random, (s) => s.phase === 'refresh')).toBe(true);
        }),
        { numRuns: 3 },
      );
    },
  );

  test('the comparison is sensitive: a KV-cache plan drifts from the golden between refreshes', async () => {
    const r = await run('fast-dllm-dual', presets.tiny as ModelConfig, 11, 3);
    const between = r.steps.filter((s) => s.phase === 'cached');
    expect(between.length).toBeGreaterThan(0);
    expect(between.some((s) => s.deviation > 1e3 * float64Bound(r.config, r.L, s.scale))).toBe(true);
  });
});
