import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';
import { expectOnlyProgress } from './progressLines.ts';

describe('kvplan explain', () => {
  test('prints phases, schedule, sample index lists and the IR of each phase', async () => {
    const r = await runCli(['explain', 'examples/flashblock.kvp', '--set', 'block=4']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('phases: flashblock.refresh');
    expect(r.stdout).toContain('flashblock.reuse');
    expect(r.stdout).toMatch(
      /layer 0: reuse phase for 'external' until `dirty\(current_block\) >= dirty_limit or block_start`/,
    );
    expect(r.stdout).toMatch(/index lists for a sample token state: step \d+/);
    expect(r.stdout).toMatch(/rows\.0 \(\d+\): positions/);
    expect(r.stdout).toContain('program flashblock.cached {');
    expect(r.stdout).toContain('attention');
  });
  test('a bad --config is a usage error naming it', async () => {
    const r = await runCli(['explain', 'examples/baseline.kvp', '--config', 'lada-8b']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--config lada-8b: .*llada-8b/);
  });
});

describe('kvplan verify', () => {
  test('an exact and an approximate plan pass, with one summary line each', async () => {
    const r = await runCli([
      'verify',
      'examples/baseline.kvp',
      'examples/fast-dllm-dual.kvp',
      '--set',
      'block=4',
      '--cases',
      '1',
    ]);
    expectOnlyProgress(r.stderr, 'verify', 2, 'cases');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^ok {2}examples\/baseline\.kvp {2}baseline {2}exact {2}cases 1 .*exact ok/);
    expect(lines[1]).toMatch(
      /^ok {2}examples\/fast-dllm-dual\.kvp .*premise ok .*refresh ok .*decode agreement \d+\.\d%/,
    );
  });
  test('an unknown backend and a model too large for the reference interpreter are usage errors', async () => {
    expect((await runCli(['verify', 'examples/baseline.kvp', '--backend', 'cuda'])).code).toBe(2);
    const big = await runCli(['verify', 'examples/baseline.kvp', '--config', 'llada-8b', '--cases', '1']);
    expect(big.code).toBe(2);
    expect(big.stderr).toMatch(/parameters/);
  });
});

describe('kvplan verify --backend ptx', () => {
  test('assembles every kernel for sm_80 and sm_90 with ptxas, then launches or reports the missing GPU', async () => {
    const { findPtxas } = await import('../../src/backends/cuda-ptx/ptxas.ts');
    const { cudaAvailable } = await import('../../src/backends/cuda-ptx/driver.ts');
    const r = await runCli(['verify', 'examples/fast-dllm-dual.kvp', '--backend', 'ptx', '--config', 'tiny']);
    expect(r.code).toBe(0);
    if (!findPtxas()) {
      console.log('skipped: ptxas not found');
      expect(r.stdout).toContain('skipped: ptxas not found');
      return;
    }
    const ptxas =
      /^ok {2}examples\/fast-dllm-dual\.kvp {2}fast_dllm_dual {2}ptx {2}ptxas ok \(\d+ kernels for sm_80 and sm_90, at most \d+ registers, no spills\)/;
    if (cudaAvailable().ok) {
      expect(r.stdout).toMatch(ptxas);
      expect(r.stdout).toMatch(
        /^ok {2}examples\/fast-dllm-dual\.kvp {2}fast_dllm_dual {2}approximate .*premise ok/m,
      );
      return;
    }
    expect(r.stdout).toMatch(new RegExp(`${ptxas.source} {2}skipped: no CUDA device`));
  });
});
