// Checkpoints of every family, written by an independent PyTorch implementation of each
// (test/oracle/hf_reference.py, from the families' published model code): kvplan loads them, its
// float64 golden forward computes PyTorch's logits, and every backend runs plans on them within
// the float32 budget of that golden. bf16 checkpoints are compared with PyTorch run on the same
// bf16-rounded weights.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../../src/backends/cpu/runner.ts';
import { buildWebGpu, WebGpuRunner } from '../../../src/backends/webgpu/runner.ts';
import { checkSource } from '../../../src/dsl/check.ts';
import { goldenForward } from '../../../src/model/golden.ts';
import type { Family } from '../../../src/model/hf/families.ts';
import { loadCheckpointModel } from '../../../src/model/hf/load.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { planOnModel } from '../../../src/runtime/prepare.ts';
import { ReferenceRunner } from '../../../src/runtime/referenceRunner.ts';
import type { StepRunner } from '../../../src/runtime/runner.ts';
import { type GenerationResult, simulateGeneration } from '../../../src/runtime/simulate.ts';
import { float32Budget, float64Bound } from '../../../src/runtime/verify.ts';
import { gpuOrSkip } from '../../backends/webgpu/support.ts';

const root = 'test/fixtures/hf';
const fixtures = readdirSync(root)
  .filter((d) => d.endsWith('-f32') || d.endsWith('-bf16'))
  .sort();

interface Reference {
  readonly family: Family;
  readonly tokens: number[];
  readonly logits: number[][];
}
/** The largest difference of `logits` [12, V] from PyTorch's, and the largest PyTorch logit. */
function against(ref: Reference, logits: Float64Array, V: number): { error: number; scale: number } {
  let error = 0;
  let scale = 0;
  ref.logits.forEach((row, i) => {
    row.forEach((x, v) => {
      error = Math.max(error, Math.abs((logits[i * V + v] as number) - x));
      scale = Math.max(scale, Math.abs(x));
    });
  });
  return { error, scale };
}

const reference = (dir: string): Reference =>
  JSON.parse(readFileSync(join(root, dir, 'reference.json'), 'utf8'));

/** An exact plan for the family: every row, every key, one token per step, the model's mask and AR shift. */
function exactPlan(family: Family) {
  const mask = family === 'sdar' || family === 'fast-dllm-v2' ? ' mask block_causal' : '';
  const shift = family === 'dream' || family === 'fast-dllm-v2' ? ' ar_shift' : '';
  const text = `plan exact_${family.replace(/-/g, '_')}() {
  blocks 4
  compute all
  attend all${mask}
  decode steps(4) by confidence in current_block${shift}
}
`;
  const r = checkSource({ path: `${family}.kvp`, text });
  const plan = r.plans[0];
  if (!plan) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  return plan;
}

const device = await gpuOrSkip('checkpoints on WebGPU');

describe('Hugging Face checkpoints against PyTorch', () => {
  test('every family is there, in f32 and sharded bf16', () => {
    expect(fixtures.map((f) => reference(f).family).sort()).toEqual([
      'dream',
      'dream',
      'fast-dllm-v2',
      'fast-dllm-v2',
      'llada',
      'llada',
      'sdar',
      'sdar',
    ]);
  });

  test('the CPU backend keeps the GEMM weights and the embedding table of a bf16 checkpoint in 16 bits', () => {
    const plan = exactPlan('llada');
    const slots = (dir: string) => {
      const { config, weights } = loadCheckpointModel(join(root, dir));
      return new CpuRunner(buildCpu(plan, config, 14), weights, 14).weightBytes;
    };
    const f32 = slots('llada-f32');
    const bf16 = slots('llada-bf16');
    // The GEMM weights: 2 layers of q and o (32 x 32), k and v (16 x 32: 2 kv heads of 8), gate,
    // up and down (64 x 32), and the head (48 x 32); and the embedding table (48 x 32).
    const halves = 2 * (2 * 32 * 32 + 2 * 16 * 32 + 3 * 64 * 32) + 48 * 32 + 48 * 32;
    expect(f32 - bf16).toBe(2 * halves);
  });

  // PyTorch ran all 12 positions in blocks of 4 from position 0; with blocks aligned, so does a
  // golden whose prompt ends anywhere, a partial last prompt block sharing the first generated one.
  test.each(fixtures.flatMap((dir) => [4, 6, 8].map((promptLen) => [dir, promptLen] as const)))(
    '%s, a prompt of %i: the golden forward computes the PyTorch logits',
    (dir, promptLen) => {
      const ref = reference(dir);
      const { config, weights } = loadCheckpointModel(join(root, dir));
      expect(config.alignedBlocks === true).toBe(config.attention === 'block_causal');
      const tokens = Int32Array.from(ref.tokens);
      const layout = { promptLen, blockLen: 4, aligned: config.alignedBlocks === true };
      const { error, scale } = against(
        ref,
        goldenForward(config, weights, tokens, layout).logits,
        config.vocab,
      );
      expect(scale).toBeGreaterThan(0.5);
      expect(error).toBeLessThanOrEqual(float64Bound(config, tokens.length, scale));
      // Counting blocks from the end of the prompt instead is a different model once the prompt
      // is longer than a block.
      if (config.attention === 'block_causal' && promptLen > 4) {
        const unaligned = goldenForward(config, weights, tokens, { ...layout, aligned: false }).logits;
        expect(against(ref, unaligned, config.vocab).error).toBeGreaterThan(1e-3);
      }
    },
  );

  const backends: readonly (readonly [string, boolean])[] = [
    ['reference', true],
    ['cpu', true],
    ['webgpu', device !== undefined],
  ];
  for (const [backend, available] of backends)
    test.skipIf(!available).each(fixtures)(
      `%s: the ${backend} backend runs an exact plan within budget`,
      async (dir) => {
        const ref = reference(dir);
        const { config: model, weights } = loadCheckpointModel(join(root, dir));
        const plan = exactPlan(ref.family);
        const fit = planOnModel(plan, model);
        if (!fit.ok) throw new Error(fit.error);
        expect(fit.warning).toBeUndefined();
        const { config } = fit;
        const gen = { config, weights, prompt: Int32Array.from(ref.tokens.slice(0, 6)), genLen: 8, seed: 3 };
        const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
        const run = (runner?: (n: number) => StepRunner): Promise<GenerationResult> =>
          simulateGeneration(plan, lowered, { ...gen, ...(runner ? { runner } : {}) });
        const worst = (r: GenerationResult) => Math.max(...r.steps.map((s) => s.deviation));
        if (backend === 'reference') {
          const r = await run();
          for (const s of r.steps) expect(s.deviation).toBeLessThanOrEqual(float64Bound(config, 14, s.scale));
          return;
        }
        const eager = worst(await run((n) => new ReferenceRunner(lowered, weights, n, true)));
        let r: GenerationResult;
        if (backend === 'cpu') {
          const build = buildCpu(plan, config, 14);
          r = await simulateGeneration(plan, build.lowered, {
            ...gen,
            runner: (n) => new CpuRunner(build, weights, n),
          });
        } else {
          const build = buildWebGpu(plan, config, 14);
          const gpu = device as GPUDevice;
          r = await simulateGeneration(plan, build.lowered, {
            ...gen,
            runner: (n) => new WebGpuRunner(build, weights, n, gpu),
          });
        }
        expect(r.steps.length).toBe(8);
        for (const s of r.steps) expect(s.deviation).toBeLessThanOrEqual(float32Budget(eager, s.scale));
      },
    );
});
