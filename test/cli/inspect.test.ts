import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadCheckpointModel } from '../../src/model/hf/load.ts';
import { parameterCount } from '../../src/model/weights.ts';
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
    // bf16: the host and the CPU backend's packed GEMMs hold 2 bytes a weight, WebGPU and PTX 4.
    const mem =
      /weights in memory host ([\d.]+) KiB, cpu ([\d.]+) KiB, webgpu ([\d.]+) KiB, ptx ([\d.]+) KiB/.exec(
        r.stdout,
      );
    const [host, cpu, webgpu] = (mem ?? []).slice(1).map(Number);
    expect(webgpu).toBeCloseTo(2 * (host as number), 0);
    expect(cpu).toBeGreaterThan(host as number);
    expect(cpu).toBeLessThan(webgpu as number);
    expect(r.stdout).toMatch(/AR shift\s+true/);
    expect(r.stdout).toMatch(/files\s+3 \(.*model\.safetensors\.index\.json, …\)/);
    // Dream shifts its logits: plans without the shift cannot run on it, fast_dllm_v2 can.
    expect(r.stdout).toMatch(/baseline\s+no: plan baseline decodes without an AR shift/);
    expect(r.stdout).toMatch(
      /fast_dllm_v2\s+yes, with a warning: plan fast_dllm_v2 attends with block_causal/,
    );
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
    // F32 weights: the host holds them as stored, every backend as floats (the CPU packs GEMMs once).
    expect(j.memory).toEqual({
      host: j.stored.F32,
      cpu: j.stored.F32,
      webgpu: j.stored.F32,
      ptx: j.stored.F32,
    });
    expect(j.plans).toEqual([{ path: 'examples/flashblock.kvp', plan: 'flashblock', fits: 'yes' }]);
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
