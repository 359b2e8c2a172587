import { describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import { checkSource } from '../../../src/dsl/check.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { exampleCases, examplePlan } from '../../runtime/support.ts';
import { generateInLockstep } from '../lockstep.ts';
import { expectCpuMatchesReference } from './againstReference.ts';

describe('CPU backend against the float64 reference, step by step', () => {
  test.each(exampleCases)(
    '%s on %s: every step within the float32 budget derived from eager float32',
    async (name, _configName, base) => {
      const plan = examplePlan(name);
      await expectCpuMatchesReference(plan, modelFor(plan, base), 21);
    },
  );

  // DPad has no full step to compare with the golden; against the plan's own reference it has all.
  test('dpad (dropped suffix at every step) in lockstep with the reference running the plan', async () => {
    const plan = examplePlan('dpad');
    const config = modelFor(plan, presets.tiny as ModelConfig);
    const weights = randomWeights(config, 21);
    const prompt = Int32Array.from([3, 1, 4, 1, 5]);
    const build = buildCpu(plan, config, prompt.length + 8);
    const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
    const { result } = await generateInLockstep(
      plan,
      lowered,
      build.lowered,
      weights,
      { config, prompt, genLen: 8, seed: 21 },
      (n) => new CpuRunner(build, weights, n),
    );
    expect(result.steps.every((s) => s.phase === 'cached')).toBe(true);
  });

  /*
   * A cached layer writes its fresh K and V over the cache, reads the cache as the overlay, and
   * puts back the rows it computed but does not cache (kv_overlay_save / kv_overlay_restore). Here
   * a decoded row of the current block keeps the entry written when it was newly decoded while it
   * is recomputed at every later step of its block, and the next block reads that entry.
   */
  test('a row computed but not cached keeps its older entry for later steps', async () => {
    const text = `plan leave(block: int = 4 in [1, 64]) {
  blocks block
  refresh all when block_start
  compute current_block | newly_decoded
  cache kv of prompt | masked | newly_decoded
  attend all
  decode steps(4) by confidence
}
`;
    const plan = checkSource({ path: 'leave.kvp', text }).plans[0];
    if (!plan) throw new Error('leave.kvp does not check');
    await expectCpuMatchesReference(plan, modelFor(plan, presets.tiny as ModelConfig), 21);
  });
});
