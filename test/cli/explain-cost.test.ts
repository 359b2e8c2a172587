// `kvplan explain --cost`: the advisor through the command line (its predictions are tested in
// test/cost); published hardware only, so that no probe runs.
import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';

const dual = 'examples/fast-dllm-dual.kvp';
const sizes = ['--config', 'llada-8b', '--prompt-length', '64', '--gen-length', '128'];

describe('explain --cost', () => {
  test('prints the prediction, the bounding kernels and the crossover instead of the lowering', async () => {
    const r = await runCli(['explain', dual, '--cost', '--hardware', 'h100', ...sizes]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^fast_dllm_dual on llada-8b, h100/);
    expect(r.stdout).toMatch(/predicted: .* speedup [\d.]+x/);
    expect(r.stdout).toMatch(/crossover: /);
    expect(r.stdout).not.toMatch(/^program /m);
  });

  test('--json is one object whose speedup is the ratio of its two predicted times', async () => {
    const r = await runCli([
      'explain',
      dual,
      '--cost',
      '--json',
      '--hardware',
      'h200',
      '--batch',
      '4',
      ...sizes,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const a = JSON.parse(r.stdout) as {
      batch: number;
      cache: { seconds: number };
      twin: { seconds: number };
      speedup: number;
      assumptions: string;
    };
    expect(a.batch).toBe(4);
    expect(a.speedup).toBeCloseTo(a.twin.seconds / a.cache.seconds, 6);
    expect(a.assumptions).toMatch(/roofline/);
  });

  test('an unknown hardware is a usage error with a suggestion', async () => {
    const r = await runCli(['explain', dual, '--cost', '--hardware', 'h10', ...sizes]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--hardware: no hardware named 'h10' \(did you mean 'h100'\?\)/);
    expect(r.stdout).toBe('');
  });

  test('an advisor option without --cost is a usage error, not silently ignored', async () => {
    const r = await runCli(['explain', dual, '--hardware', 'h100', '--batch', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('kvplan: --hardware, --batch only apply with --cost\n');
  });
});
