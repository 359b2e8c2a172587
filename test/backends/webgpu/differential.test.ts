import { describe, expect, test } from 'vitest';
import { buildWebGpu, WebGpuRunner } from '../../../src/backends/webgpu/runner.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { float32Budget } from '../../../src/runtime/verify.ts';
import { exampleCases, examplePlan } from '../../runtime/support.ts';
import { generateInLockstep } from '../lockstep.ts';
import { gpuOrSkip } from './support.ts';

// Acquired while collecting, so that a missing adapter skips visibly (with its reason) instead of passing.
const device = await gpuOrSkip('WebGPU differential tests');

describe('WebGPU backend against the float64 reference, step by step', () => {
  test.skipIf(!device).each(exampleCases)(
    '%s on %s: every step within the float32 budget of the reference running the plan, and of the golden where exact',
    async (name, _configName, base) => {
      const gpu = device as GPUDevice;
      const plan = examplePlan(name);
      const config = modelFor(plan, base);
      const weights = randomWeights(config, 21);
      const prompt = Int32Array.from([3, 1, 4, 1, 5]);
      const L = prompt.length + 8;
      const build = buildWebGpu(plan, config, L);
      const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
      const { result, eager } = await generateInLockstep(
        plan,
        lowered,
        build.lowered,
        weights,
        { config, prompt, genLen: 8, seed: 21 },
        (n) => new WebGpuRunner(build, weights, n, gpu),
      );
      const exactSteps = (r: typeof result) =>
        r.steps.filter((s) => plan.classification.exact || s.phase === 'refresh');
      const eagerError = Math.max(...exactSteps(eager).map((s) => s.deviation));
      expect(exactSteps(result).length).toBeGreaterThan(0);
      for (const s of exactSteps(result))
        expect(s.deviation).toBeLessThanOrEqual(float32Budget(eagerError, s.scale));
      console.log(
        `${name}: max |webgpu - golden| ${Math.max(...exactSteps(result).map((s) => s.deviation)).toExponential(2)} (eager float32 ${eagerError.toExponential(2)})`,
      );
      if (plan.classification.exact) expect(result.tokens).toEqual(eager.tokens);
    },
  );
});
