import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';

describe('kvplan compile', () => {
  test('--stats --json prints one object with kernels, costs and the memory plan', async () => {
    const r = await runCli([
      'compile',
      'examples/fast-dllm-dual.kvp',
      '--stats',
      '--json',
      '--config',
      'small',
    ]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.phases).toEqual({ refresh: 31, cached: 31 });
    expect(s.kernels).toBe(62);
    // Recomputing one block of 32 out of 320 rows costs about a tenth of a full step.
    const ratio = s.flops_per_step.cached / s.flops_per_step.refresh;
    expect(ratio).toBeGreaterThan(0.08);
    expect(ratio).toBeLessThan(0.15);
    expect(s.peak_bytes).toBeLessThan(s.naive_bytes);
    // K and V of 4 layers, 320 rows, 4 kv heads of 16 floats.
    expect(s.cache_bytes).toBe(4 * 2 * 320 * 4 * 16 * 4);
    expect(s.passes.map((p: { pass: string }) => p.pass)).toContain('fusion');
  });
  test('--dump-all prints the program after every pass (pinned for the baseline on tiny)', async () => {
    const r = await runCli([
      'compile',
      'examples/baseline.kvp',
      '--dump-all',
      '--config',
      'tiny',
      '--set',
      'steps_per_block=4',
      '--gen-length',
      '8',
      '--prompt-length',
      '4',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatchSnapshot();
  });
  test('an unknown pass or target is a usage error', async () => {
    const bad = await runCli(['compile', 'examples/baseline.kvp', '--dump-after', 'fuse']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no such pass; passes: set-algebra, canonicalize/);
    expect((await runCli(['compile', 'examples/baseline.kvp', '--target', 'metal'])).code).toBe(2);
  });
});

describe('kvplan compile --target cpu -o', () => {
  test('writes the C source, the compiled library and a manifest with the launch order', async () => {
    const { mkdtempSync, readFileSync, existsSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'kvplan-cpu-'));
    try {
      const r = await runCli([
        'compile',
        'examples/fast-dllm-dual.kvp',
        '--target',
        'cpu',
        '-o',
        dir,
        '--config',
        'tiny',
        '--gen-length',
        '32',
      ]);
      expect(r.code).toBe(0);
      expect(existsSync(join(dir, 'fast_dllm_dual.so'))).toBe(true);
      expect(readFileSync(join(dir, 'fast_dllm_dual.c'), 'utf8')).toContain(
        'void kvp_cached_layer_0(const int32_t *N)',
      );
      const manifest = JSON.parse(readFileSync(join(dir, 'fast_dllm_dual.manifest.json'), 'utf8'));
      expect(manifest.launchOrder.cached).toEqual([
        'kvp_cached_embed',
        'kvp_cached_layer_0',
        'kvp_cached_layer_1',
        'kvp_cached_head',
      ]);
      expect(manifest.maxCanvas).toBe(64 + 32);
      const wgsl = await runCli([
        'compile',
        'examples/fast-dllm-dual.kvp',
        '--target',
        'wgsl',
        '-o',
        dir,
        '--config',
        'tiny',
      ]);
      expect(wgsl.code).toBe(0);
      expect(readFileSync(join(dir, 'attention.wgsl'), 'utf8')).toContain('@compute');
      const dispatch = JSON.parse(readFileSync(join(dir, 'fast_dllm_dual.wgsl-manifest.json'), 'utf8'));
      expect(Object.keys(dispatch.phases).sort()).toEqual(['cached', 'refresh']);
      expect(
        (await runCli(['compile', 'examples/fast-dllm-dual.kvp', '--target', 'reference', '-o', dir])).code,
      ).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
