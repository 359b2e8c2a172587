import { expect } from 'vitest';
import type { CheckedPlan } from '../../src/dsl/check.ts';
import type { LoweredPlan } from '../../src/ir/lower.ts';
import type { Weights } from '../../src/model/weights.ts';
import { LockstepRunner } from '../../src/runtime/lockstep.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import type { StepRunner } from '../../src/runtime/runner.ts';
import { type GenerationCase, simulateGeneration } from '../../src/runtime/simulate.ts';
import { float32Budget } from '../../src/runtime/verify.ts';

/**
 * Generates with `runner` and with the eager float32 reference, each beside the float64 reference
 * running the same plan on the same lists (LockstepRunner); checks that every step of the backend,
 * cached steps of approximate plans included, is within the float32 budget of the plan's own
 * reference. Returns both generations for the checks against the golden.
 */
export async function generateInLockstep(
  plan: CheckedPlan,
  lowered: LoweredPlan,
  backendLowered: LoweredPlan,
  weights: Weights,
  gen: Omit<GenerationCase, 'weights' | 'runner'>,
  runner: (L: number) => StepRunner,
) {
  const paired = async (on: LoweredPlan, primary: (L: number) => StepRunner) => {
    let pair: LockstepRunner | undefined;
    const result = await simulateGeneration(plan, on, {
      ...gen,
      weights,
      runner: (n) => {
        pair = new LockstepRunner(primary(n), new ReferenceRunner(lowered, weights, n));
        return pair;
      },
    });
    return { result, gaps: pair?.gaps ?? [] };
  };
  const backend = await paired(backendLowered, runner);
  const eager = await paired(lowered, (n) => new ReferenceRunner(lowered, weights, n, true));
  const eagerGap = Math.max(...eager.gaps.map((g) => g.deviation));
  expect(backend.gaps.length).toBeGreaterThan(0);
  for (const g of backend.gaps) expect(g.deviation).toBeLessThanOrEqual(float32Budget(eagerGap, g.scale));
  return { result: backend.result, eager: eager.result };
}
