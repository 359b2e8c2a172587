import { expect } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import type { CheckedPlan } from '../../../src/dsl/check.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { float32Budget } from '../../../src/runtime/verify.ts';
import { generateInLockstep } from '../lockstep.ts';

/**
 * Generates with the CPU backend and with the float64 reference on random weights (`seed`), and
 * checks every step of the CPU run against the reference running the same plan on the same lists,
 * and every exact step (or refresh) against the golden, within the float32 budget derived from the
 * reference's eager float32 mode; where the plan is exact, both commit the same tokens. Returns the
 * build, for checks of the code it ran.
 */
export async function expectCpuMatchesReference(plan: CheckedPlan, config: ModelConfig, seed: number) {
  const weights = randomWeights(config, seed);
  const prompt = Int32Array.from([3, 1, 4, 1, 5]);
  const L = prompt.length + 8;
  const build = buildCpu(plan, config, L);
  const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
  const { result: cpu, eager } = await generateInLockstep(
    plan,
    lowered,
    build.lowered,
    weights,
    { config, prompt, genLen: 8, seed },
    (n) => new CpuRunner(build, weights, n),
  );
  const exactSteps = (r: typeof cpu) =>
    r.steps.filter((s) => plan.classification.exact || s.phase === 'refresh');
  const eagerError = Math.max(...exactSteps(eager).map((s) => s.deviation));
  expect(exactSteps(cpu).length).toBeGreaterThan(0);
  for (const s of exactSteps(cpu))
    expect(s.deviation).toBeLessThanOrEqual(float32Budget(eagerError, s.scale));
  if (plan.classification.exact) expect(cpu.tokens).toEqual(eager.tokens);
  return build;
}
