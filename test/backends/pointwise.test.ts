// Adding a pointwise op to kvplan is its IR entry plus one table entry per backend: with the
// test-only `scale` added to exactly those four places (mocked here), a plan whose lowering uses
// it runs on the CPU and WebGPU backends as the float64 reference interprets it, and its PTX kernel
// assembles. The op changes the model's output, so a backend that skipped it would fail.
import { describe, expect, test, vi } from 'vitest';
import { buildCpu, CpuRunner } from '../../src/backends/cpu/runner.ts';
import { assemble } from '../../src/backends/cuda-ptx/ptxas.ts';
import { buildPtx } from '../../src/backends/cuda-ptx/runner.ts';
import { buildWebGpu, WebGpuRunner } from '../../src/backends/webgpu/runner.ts';
import type { LoweredPlan } from '../../src/ir/lower.ts';
import type { HostTensor } from '../../src/ir/tensor.ts';
import type { Instr, StepProgram, Value } from '../../src/ir/types.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import type { StepRunner } from '../../src/runtime/runner.ts';
import { simulateGeneration } from '../../src/runtime/simulate.ts';
import { examplePlan } from '../runtime/support.ts';
import { gpuOrSkip } from './webgpu/support.ts';

/** The factor the lowering's `scale` uses; undefined lowers the plan as it is. */
const state = vi.hoisted(() => ({ factor: undefined as number | undefined }));

vi.mock('../../src/ir/ops.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/ir/ops.ts')>();
  const { scale } = await import('../ir/scaleOp.ts');
  return { ...real, ops: { ...real.ops, scale } };
});
vi.mock('../../src/backends/cpu/pointwise.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/backends/cpu/pointwise.ts')>();
  const { scaleC } = await import('../ir/scaleOp.ts');
  return { ...real, pointwise: { ...real.pointwise, scale: scaleC } };
});
vi.mock('../../src/backends/webgpu/pointwise.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/backends/webgpu/pointwise.ts')>();
  const { scaleWgsl } = await import('../ir/scaleOp.ts');
  return { ...real, pointwise: { ...real.pointwise, scale: scaleWgsl } };
});
vi.mock('../../src/backends/cuda-ptx/kernels/pointwise.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/backends/cuda-ptx/kernels/pointwise.ts')>();
  const { scalePtx } = await import('../ir/scaleOp.ts');
  return { ...real, pointwise: { ...real.pointwise, scale: scalePtx } };
});
// The lowering scales every FFN activation (the swiglu result) when a factor is set.
vi.mock('../../src/ir/lower.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/ir/lower.ts')>();
  const withScale = (p: StepProgram, factor: number): StepProgram => {
    let next =
      1 +
      Math.max(...p.stages.flatMap((s) => s.body.flatMap((i) => [...i.results, ...i.args].map((v) => v.id))));
    const stages = p.stages.map((s) => {
      const renamed = new Map<number, Value>();
      const use = (v: Value) => renamed.get(v.id) ?? v;
      const body: Instr[] = [];
      for (const ins of s.body) {
        body.push({ ...ins, args: ins.args.map(use) });
        const r = ins.results[0];
        if (ins.op !== 'swiglu' || !r) continue;
        const scaled = { id: next++, type: r.type };
        body.push({ op: 'scale', args: [r], results: [scaled], attrs: { factor } });
        renamed.set(r.id, scaled);
      }
      return { ...s, body, outputs: s.outputs.map((o) => ({ ...o, value: use(o.value) })) };
    });
    return { ...p, stages };
  };
  const lowerPlan: typeof real.lowerPlan = (plan, config) => {
    const l = real.lowerPlan(plan, config);
    const f = state.factor;
    if (f === undefined) return l;
    const { refresh, cached, reuse } = l.programs;
    return {
      ...l,
      programs: {
        refresh: withScale(refresh, f),
        cached: withScale(cached, f),
        reuse: reuse && withScale(reuse, f),
      },
    } satisfies LoweredPlan;
  };
  return { ...real, lowerPlan };
});

const config = presets.tiny as ModelConfig;
const plan = examplePlan('baseline');
const weights = randomWeights(config, 5);
const prompt = Int32Array.from([3, 1, 4, 1, 5]);
const L = prompt.length + 4;

/** The logits of the first step (the same canvas whatever the backend decides later). */
async function firstLogits(runner?: (n: number) => StepRunner): Promise<Float64Array> {
  const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
  let first: Float64Array | undefined;
  await simulateGeneration(plan, lowered, {
    config,
    weights,
    prompt,
    genLen: 4,
    seed: 1,
    compare: false,
    runner: runner ?? ((n) => new ReferenceRunner(lowered, weights, n)),
    onStep: (s) => {
      first ??= Float64Array.from((s.logits as HostTensor).data);
    },
  });
  if (!first) throw new Error('no step ran');
  return first;
}

const maxDiff = (a: Float64Array, b: Float64Array) =>
  Math.max(...a.map((x, i) => Math.abs(x - (b[i] as number))));

const device = await gpuOrSkip('the scale op on WebGPU');

describe('a pointwise op added in four places', () => {
  test('lowered with it, the plan computes something else, and the C, WGSL and PTX code use it', async () => {
    state.factor = undefined;
    const plain = await firstLogits();
    state.factor = 1.5;
    const scaled = await firstLogits();
    expect(maxDiff(plain, scaled)).toBeGreaterThan(1e-3);
    expect(buildCpu(plan, config, L).source).toMatch(/\[i\] = 1\.5f \* \(A \+ (\d+|I\[\d+\])\)\[i\];/);
    const wgsl = buildWebGpu(plan, config, L).manifest;
    expect(wgsl.shaders).toContain('pointwise_scale');
    const ptx = buildPtx(plan, config, L).render;
    const kernel = ptx.files.get('kvp_scale');
    expect(kernel).toMatch(/mul\.f32\s+%f\d+, %f\d+, %f\d+;/);
    expect(assemble(kernel as string, 'sm_80', 'kvp_scale').length).toBe(1);
    const launches = Object.values(ptx.manifest.phases).flatMap((st) => st.flatMap((s) => s.launches));
    const scaleLaunch = launches.find((l) => l.kernel === 'kvp_scale');
    expect(scaleLaunch?.params.find((p) => p.name === 'p_attr_factor')?.binding).toEqual({
      kind: 'f32',
      value: 1.5,
    });
  });

  test('the CPU backend runs it as the reference does', async () => {
    state.factor = 1.5;
    const reference = await firstLogits();
    const build = buildCpu(plan, config, L);
    const cpu = await firstLogits((n) => new CpuRunner(build, weights, n));
    state.factor = undefined;
    const plain = await firstLogits();
    // Float32 against float64 on a two-layer model: far below what leaving the op out would change.
    expect(maxDiff(cpu, reference)).toBeLessThan(maxDiff(plain, reference) / 100);
  });

  test.skipIf(!device)('the WebGPU backend runs it as the reference does', async () => {
    state.factor = 1.5;
    const reference = await firstLogits();
    const build = buildWebGpu(plan, config, L);
    const gpu = await firstLogits((n) => new WebGpuRunner(build, weights, n, device as GPUDevice));
    state.factor = undefined;
    const plain = await firstLogits();
    expect(maxDiff(gpu, reference)).toBeLessThan(maxDiff(plain, reference) / 100);
  });
});
