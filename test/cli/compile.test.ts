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
