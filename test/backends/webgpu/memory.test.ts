import { describe, expect, test } from 'vitest';
import { buildWebGpu, WebGpuRunner } from '../../../src/backends/webgpu/runner.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { randomWeights } from '../../../src/model/weights.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { exampleCases, examplePlan } from '../../runtime/support.ts';
import { gpuOrSkip } from './support.ts';

const device = await gpuOrSkip('WebGPU memory tests');

/**
 * The memory `kvplan compile --target wgsl --stats` reports (the largest phase's `peakBytes`) is
 * what the WebGPU runner allocates for activations, measured on the device: its `slot` buffers hold
 * every value, the ones computed and read inside one kernel (Kernel.locals) included, and nothing
 * beyond the fixed parts (weights, caches, lists, masks, rope tables, dummies) is created.
 */
describe('WebGPU activations follow the memory plan', () => {
  test.each(exampleCases)('%s on %s: the runner allocates the planned peak', (name, _c, base) => {
    const plan = examplePlan(name);
    const config = modelFor(plan, base);
    const L = 13;
    const build = buildWebGpu(plan, config, L);
    const memory = compilePlan(plan, config, { target: 'wgsl', canvas: L }).state.memory;
    const peak = Math.max(...[...(memory?.values() ?? [])].map((m) => m.peakBytes));
    const planned = (role: string) =>
      build.manifest.buffers.filter((b) => b.role === role).reduce((s, b) => s + b.elements * 4, 0);
    expect(planned('slot')).toBe(peak);
    const roles = new Set(build.manifest.buffers.map((b) => b.role));
    expect(
      [...roles].filter(
        (r) => !['slot', 'weight', 'persistent', 'list', 'tokens', 'mask', 'rope', 'dummy'].includes(r),
      ),
    ).toEqual([]);
    let allocated = 0;
    if (device) {
      const runner = new WebGpuRunner(build, randomWeights(config, 1), L, device);
      allocated = runner.allocated.slot ?? 0;
      runner.release();
      expect(allocated).toBe(peak);
    }
    console.log(`${name}: plan peak ${peak} B, runner activations ${allocated} B`);
  });

  test('a stage leaves its outputs in the slots of the temps the plan placed, and the next stage reads them there', () => {
    const plan = examplePlan('fast-dllm-dual');
    const config = modelFor(plan, presets.tiny as ModelConfig);
    const { manifest } = buildWebGpu(plan, config, 13);
    for (const stages of Object.values(manifest.phases))
      stages.forEach((st, i) => {
        for (const key of Object.values(st.outputs)) expect(key).toMatch(/^slot:\d+$/);
        const prev = stages[i - 1];
        for (const [input, key] of Object.entries(st.inputs)) expect(key).toBe(prev?.outputs[input]);
      });
  });
});
