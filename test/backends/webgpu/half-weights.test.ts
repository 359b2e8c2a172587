/**
 * 16-bit weights on WebGPU, on the PyTorch-checked checkpoints of test/fixtures/hf: a bf16
 * checkpoint's matrices (GEMM weights, the embedding table) stay bf16 on every adapter and an f16
 * one's stay f16 where the adapter has `shader-f16` (else they are widened at upload), in half the
 * bytes; norms and biases are f32. Generations stay within the float32 budget of the golden
 * forward, which computes PyTorch's logits on these weights (test/model/hf/reference.test.ts).
 * The f16 checkpoint is the bf16 one re-encoded: every value is kept except the few below 2^-17,
 * f16 subnormals, which move by at most 2^-25 (one in the Fast-dLLM v2 fixture), so the same
 * reference holds (the golden each step is compared with runs on the f16 values themselves).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { buildWebGpu, WebGpuRunner, weightFormats } from '../../../src/backends/webgpu/runner.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { f16ToFloat32, type HalfDtype } from '../../../src/model/half.ts';
import { loadCheckpointModel } from '../../../src/model/hf/load.ts';
import { float32ToF16 } from '../../../src/model/hf/write.ts';
import { floatsOf, isHalf, type Tensor, type Weights, weightSpec } from '../../../src/model/weights.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { planOnModel } from '../../../src/runtime/prepare.ts';
import { ReferenceRunner } from '../../../src/runtime/referenceRunner.ts';
import { simulateGeneration } from '../../../src/runtime/simulate.ts';
import { float32Budget } from '../../../src/runtime/verify.ts';
import { examplePlan } from '../../runtime/support.ts';
import { gpuOrSkip, readsFormat } from './support.ts';

const root = 'test/fixtures/hf';
const device = await gpuOrSkip('16-bit weights on WebGPU');
if (device && !readsFormat(device, 'f16'))
  console.log(
    'f16 checkpoints on WebGPU: the adapter has no shader-f16, so f16 weights are widened at upload',
  );

/** The bf16 checkpoint's tensors re-encoded as f16: exactly, but for tiny values (checked). */
function asF16(config: ModelConfig, weights: Weights): Weights {
  const out = new Map<string, Tensor>();
  for (const { name } of weightSpec(config)) {
    const t = weights.get(name) as Tensor;
    const values = Float32Array.from(floatsOf(t));
    const bits = float32ToF16(values);
    f16ToFloat32(bits).forEach((x, i) => {
      const v = values[i] as number;
      expect(Math.abs(x - v), `${name}[${i}] = ${v} in f16`).toBeLessThanOrEqual(
        Math.abs(v) < 2 ** -17 ? 2 ** -25 : 0,
      );
    });
    out.set(name, isHalf(t) ? { shape: t.shape, half: 'f16', bits } : t);
  }
  return out;
}

function load(dir: string, dtype: HalfDtype, planName: string) {
  const m = loadCheckpointModel(join(root, dir));
  const plan = examplePlan(planName);
  const fit = planOnModel(plan, m.config);
  if (!fit.ok) throw new Error(fit.error);
  const weights = dtype === 'bf16' ? m.weights : asF16(m.config, m.weights);
  const tokens: number[] = JSON.parse(readFileSync(join(root, dir, 'reference.json'), 'utf8')).tokens;
  return { plan, config: fit.config, weights, prompt: Int32Array.from(tokens.slice(0, 6)) };
}

const L = 14;

// LLaDA: full attention, its own LM head; Fast-dLLM v2: block-causal, AR shift, QKV bias, and a
// tied embedding table that both the embedding gather and the LM head read in 16 bits.
const cases = (['bf16', 'f16'] as const).flatMap((dtype) =>
  [
    ['llada-bf16', 'baseline'],
    ['fast-dllm-v2-bf16', 'fast-dllm-v2'],
  ].map(([dir, plan]) => [dir as string, dtype, plan as string] as const),
);

describe('16-bit weights on WebGPU', () => {
  test.skipIf(!device).each(cases)(
    '%s stored as %s, plan %s: matrices in 16 bits where the adapter reads them (half the bytes), logits within budget',
    async (dir, dtype, planName) => {
      const gpu = device as GPUDevice;
      const { plan, config, weights, prompt } = load(dir, dtype, planName);
      const build = buildWebGpu(plan, config, L, weightFormats(weights, gpu));
      const kept = readsFormat(gpu, dtype);
      const matrices = new Map(
        weightSpec(config)
          .filter((w) => w.shape.length === 2)
          .map((w) => [w.name, (w.shape[0] as number) * (w.shape[1] as number)]),
      );
      for (const b of build.manifest.buffers.filter((x) => x.role === 'weight'))
        expect(b.format, b.key).toBe(kept && matrices.has(b.weight as string) ? dtype : undefined);
      const variants = build.manifest.shaders.filter((s) => s.startsWith('gemm') || s.startsWith('embed'));
      expect(variants).toEqual(kept ? [`embed_${dtype}`, `gemm_${dtype}`] : ['embed', 'gemm']);

      const bytes = (b: typeof build) => {
        const runner = new WebGpuRunner(b, weights, L, gpu);
        runner.release();
        return runner.allocated.weight as number;
      };
      const f32 = bytes(buildWebGpu(plan, config, L));
      const half = bytes(build);
      const matrixElements = [...matrices.values()].reduce((a, b) => a + b, 0);
      // Every matrix is a whole number of 16-byte blocks in either format, so the saving is exact.
      expect(f32 - half).toBe(kept ? 2 * matrixElements : 0);
      console.log(`${dir} as ${dtype}: weights ${f32} B in f32, ${half} B on the device`);

      const gen = { config, weights, prompt, genLen: 8, seed: 3 };
      const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
      const eager = await simulateGeneration(plan, lowered, {
        ...gen,
        runner: (n) => new ReferenceRunner(lowered, weights, n, true),
      });
      const budget = Math.max(...eager.steps.map((s) => s.deviation));
      const r = await simulateGeneration(plan, build.lowered, {
        ...gen,
        runner: (n) => new WebGpuRunner(build, weights, n, gpu),
      });
      expect(r.steps).toHaveLength(8);
      for (const s of r.steps) expect(s.deviation).toBeLessThanOrEqual(float32Budget(budget, s.scale));
    },
  );

  test.skipIf(!device)('a build for bf16 weights refuses to upload float32 ones', () => {
    const gpu = device as GPUDevice;
    const bf16 = load('llada-bf16', 'bf16', 'baseline');
    const build = buildWebGpu(bf16.plan, bf16.config, L, weightFormats(bf16.weights, gpu));
    const f32 = loadCheckpointModel(join(root, 'llada-f32')).weights;
    expect(() => new WebGpuRunner(build, f32, L, gpu)).toThrow(
      /is built as bf16, but the model stores it as floats/,
    );
  });
});
