import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../src/backends/cpu/runner.ts';
import { buildWebGpu, WebGpuRunner, weightFormats } from '../../src/backends/webgpu/runner.ts';
import { loadCheckpointModel } from '../../src/model/hf/load.ts';
import { parameterCount } from '../../src/model/weights.ts';
import { planOnModel } from '../../src/runtime/prepare.ts';
import { gpuOrSkip } from '../backends/webgpu/support.ts';
import { examplePlan } from '../runtime/support.ts';
import { runCli } from '../support/cli.ts';

describe('kvplan inspect-model', () => {
  test('a sharded bf16 Dream checkpoint: family, shape, stored dtype, and which plans fit', async () => {
    const dir = 'test/fixtures/hf/dream-bf16';
    const r = await runCli(['inspect-model', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { config } = loadCheckpointModel(dir);
    expect(r.stdout).toMatch(/^test\/fixtures\/hf\/dream-bf16: Dream \(Hugging Face checkpoint\)/);
    expect(r.stdout).toContain(`parameters        ${parameterCount(config).toLocaleString('en-US')}`);
    expect(r.stdout).toMatch(/stored\s+BF16 [\d.]+ KiB/);
    // A checkpoint's host holds no weight: each is read when a backend loads it.
    expect(r.stdout).toMatch(
      /weights in memory host 0\.0 KiB, cpu [\d.]+ KiB, webgpu [\d.]+ KiB, ptx [\d.]+ KiB/,
    );
    expect(r.stdout).toMatch(/AR shift\s+true/);
    expect(r.stdout).toMatch(/files\s+3 \(.*model\.safetensors\.index\.json, …\)/);
    // Dream shifts its logits: plans without the shift cannot run on it, fast_dllm_v2 can.
    expect(r.stdout).toMatch(/baseline\s+no: plan baseline decodes without an AR shift/);
    expect(r.stdout).toMatch(
      /fast_dllm_v2\s+yes, with a warning: plan fast_dllm_v2 attends with block_causal/,
    );
    // The longest example plan's name keeps a gap before its verdict.
    expect(r.stdout).toMatch(/\n {4}elastic_cache_adaptive {2,}no: /);
    // Its GEMMs are too shallow to split K on the PTX backend: no scratch.
    expect(r.stdout).toMatch(/ptx scratch\s+none \(no GEMM of this model splits K\)/);
  });

  test('--json describes an SDAR checkpoint as data, q/k norm and trained block size included', async () => {
    const r = await runCli([
      'inspect-model',
      'test/fixtures/hf/sdar-f32',
      '--json',
      '--plan',
      'examples/flashblock.kvp',
    ]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.family).toBe('SDAR');
    expect(j.config).toMatchObject({ qkNorm: true, blockSize: 4, attention: 'block_causal', headDim: 16 });
    expect(Object.keys(j.stored)).toEqual(['F32']);
    // F32 weights, untied: every backend holds them once, as floats; the host none.
    expect(j.memory).toEqual({ host: 0, cpu: j.stored.F32, webgpu: j.stored.F32, ptx: j.stored.F32 });
    expect(j.plans).toEqual([{ path: 'examples/flashblock.kvp', plan: 'flashblock', fits: 'yes' }]);
    expect(j.scratch).toEqual({ ptx: 0, rows: 16_384 });
  });

  // The figures are what the runners then allocate: the CPU backend's loaded slots (plus the
  // packed copy of a tied table, which a tied head reads) and WebGPU's weight buffers.
  test.each([
    ['llada-bf16', 'baseline'],
    ['fast-dllm-v2-bf16', 'fast-dllm-v2'],
    ['sdar-f32', 'baseline'],
  ])('%s: the memory per backend is what the CPU and WebGPU runners hold', async (dir, planName) => {
    const path = `test/fixtures/hf/${dir}`;
    const r = await runCli(['inspect-model', path, '--json', '--plan', `examples/${planName}.kvp`]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    const { config, weights } = loadCheckpointModel(path);
    const plan = examplePlan(planName);
    const fit = planOnModel(plan, config);
    if (!fit.ok) throw new Error(fit.error);
    const L = 16;
    const m = j.stored.BF16 ? 2 : 4;
    const tiedHead = config.tieEmbeddings ? config.vocab * config.dModel * m : 0;
    expect(j.memory.cpu).toBe(
      new CpuRunner(buildCpu(plan, fit.config, L), weights, L).weightBytes + tiedHead,
    );
    const gpu = await gpuOrSkip('inspect-model memory against the WebGPU runner');
    if (!gpu) return;
    const runner = new WebGpuRunner(
      buildWebGpu(plan, fit.config, L, weightFormats(weights, gpu)),
      weights,
      L,
      gpu,
    );
    runner.release();
    expect(j.memory.webgpu).toBe(runner.allocated.weight);
  });

  test('the bundled ONNX model is described too', async () => {
    const r = await runCli([
      'inspect-model',
      'models/tiny-dllm/model.onnx',
      '--plan',
      'examples/baseline.kvp',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/kvplan ONNX \(ONNX\)/);
    expect(r.stdout).toMatch(/tokenizer\s+character \(43 ids\)/);
  });

  test('a path that is not there is a usage error; a directory that is not a checkpoint an input error', async () => {
    const missing = await runCli(['inspect-model', 'no/such/dir']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('kvplan: no/such/dir: no such file or directory\n');
    const dir = mkdtempSync(join(tmpdir(), 'kvplan-inspect-'));
    try {
      const empty = await runCli(['inspect-model', dir]);
      expect(empty.code).toBe(1);
      expect(empty.stderr).toBe(`kvplan: ${dir}: no config.json (not a Hugging Face checkpoint?)\n`);
      expect(empty.stdout).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
