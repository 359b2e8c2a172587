import { describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { ReferenceRunner } from '../../../src/runtime/referenceRunner.ts';
import { simulateGeneration } from '../../../src/runtime/simulate.ts';
import { float32Budget } from '../../../src/runtime/verify.ts';
import { exampleCases, examplePlan } from '../../runtime/support.ts';

describe('CPU backend against the float64 reference, step by step', () => {
  test.each(exampleCases)(
    '%s on %s: every step within the float32 budget derived from eager float32',
    async (name, _configName, base) => {
      const plan = examplePlan(name);
      const config = modelFor(plan, base);
      const weights = randomWeights(config, 21);
      const prompt = Int32Array.from([3, 1, 4, 1, 5]);
      const L = prompt.length + 8;
      const build = buildCpu(plan, config, L);
      const gen = { config, weights, prompt, genLen: 8, seed: 21 };
      const cpu = await simulateGeneration(plan, build.lowered, {
        ...gen,
        runner: (n) => new CpuRunner(build, weights, n),
      });
      const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
      const eager = await simulateGeneration(plan, lowered, {
        ...gen,
        runner: (n) => new ReferenceRunner(lowered, weights, n, true),
      });
      const exactSteps = (r: typeof cpu) =>
        r.steps.filter((s) => plan.classification.exact || s.phase === 'refresh');
      const eagerError = Math.max(...exactSteps(eager).map((s) => s.deviation));
      expect(exactSteps(cpu).length).toBeGreaterThan(0);
      for (const s of exactSteps(cpu))
        expect(s.deviation).toBeLessThanOrEqual(float32Budget(eagerError, s.scale));
      // Where the plan is exact or refreshes, CPU and reference commit the same tokens.
      if (plan.classification.exact) expect(cpu.tokens).toEqual(eager.tokens);
    },
  );
});
