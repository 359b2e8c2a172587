/**
 * The drift scores (`value_drift`, `key_drift`, `hidden_drift`) decide which rows a plan recomputes from the
 * backend's own caches: the backend hands its cached K or V to the host (`cachePart`; WebGPU mirrors
 * the parts a plan's drifts read). Step-by-step checks cannot see a wrong drift — an approximate
 * plan's cached steps are not compared with the golden forward — so here each backend must make
 * the same choices as the reference: the same tokens and the same agreement with golden decoding
 * at every step. Without the WebGPU mirror of K, `key_drift` scored every row 1 and this failed.
 */
import { describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../src/backends/cpu/runner.ts';
import { buildWebGpu, WebGpuRunner } from '../../src/backends/webgpu/runner.ts';
import type { LoweredPlan } from '../../src/ir/lower.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import type { StepRunner } from '../../src/runtime/runner.ts';
import { type GenerationResult, simulateGeneration } from '../../src/runtime/simulate.ts';
import { backendConfigs, examplePlan } from '../runtime/support.ts';
import { gpuOrSkip } from './webgpu/support.ts';

const device = await gpuOrSkip('WebGPU drift scores');

const plans = ['dllm-cache', 'dllm-cache-key-drift', 'es-dllm'];
// The key drift on a model with SDAR's q/k norm: the cached keys are normed and rotated.
const configOf = (name: string) =>
  backendConfigs[name === 'dllm-cache' ? 0 : name === 'es-dllm' ? 1 : 3] as ModelConfig;
const mirroredOf: Record<string, string[]> = {
  'dllm-cache': ['v'],
  'dllm-cache-key-drift': ['k'],
  'es-dllm': ['hidden'],
};

async function generate(name: string, runner: 'reference' | 'cpu' | 'webgpu'): Promise<GenerationResult> {
  const plan = examplePlan(name);
  const config = modelFor(plan, configOf(name));
  const weights = randomWeights(config, 33);
  const prompt = Int32Array.from([3, 1, 4, 1, 5]);
  const genLen = 12;
  const L = prompt.length + genLen;
  let lowered: LoweredPlan;
  let make: (n: number) => StepRunner;
  if (runner === 'cpu') {
    const build = buildCpu(plan, config, L);
    lowered = build.lowered;
    make = (n) => new CpuRunner(build, weights, n);
  } else if (runner === 'webgpu') {
    const build = buildWebGpu(plan, config, L);
    expect(build.mirrored).toEqual(mirroredOf[name]);
    lowered = build.lowered;
    make = (n) => new WebGpuRunner(build, weights, n, device as GPUDevice);
  } else {
    const reference = compilePlan(plan, config, { target: 'reference' }).lowered;
    lowered = reference;
    make = (n) => new ReferenceRunner(reference, weights, n, true);
  }
  return simulateGeneration(plan, lowered, { config, weights, prompt, genLen, seed: 33, runner: make });
}

const choices = (r: GenerationResult) => ({
  tokens: Array.from(r.tokens),
  agrees: r.steps.map((s) => s.agrees),
});

describe('drift scores read the backend caches', () => {
  test.each(plans)('%s: the CPU backend chooses as the reference does', async (name) => {
    const reference = choices(await generate(name, 'reference'));
    // Not a trivial run: some steps disagree with golden decoding, so a different choice shows.
    expect(reference.agrees).toContain(false);
    expect(choices(await generate(name, 'cpu'))).toEqual(reference);
  });

  test.skipIf(!device).each(plans)('%s: the WebGPU backend chooses as the reference does', async (name) => {
    expect(choices(await generate(name, 'webgpu'))).toEqual(choices(await generate(name, 'reference')));
  });

  test.skipIf(!device)('a plan without drift scores mirrors no cache on WebGPU', () => {
    const plan = examplePlan('fast-dllm-dual');
    expect(buildWebGpu(plan, modelFor(plan, configOf('dllm-cache')), 16).mirrored).toEqual([]);
  });
});
