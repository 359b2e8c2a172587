// `kvplan explain --cost`: the advisor through the command line (its predictions are tested in
// test/cost); no probe runs: `cpu` reads a measurement kept in a temporary cache directory.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cpuCalibration } from '../../src/cost/format.ts';
import { type CpuMeasurement, keptMeasurementKey } from '../../src/cost/probe.ts';
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

describe('explain --cost --hardware cpu', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvplan-cost-cli-'));
  const previous = process.env.KVPLAN_CACHE_DIR;
  afterAll(() => {
    if (previous === undefined) delete process.env.KVPLAN_CACHE_DIR;
    else process.env.KVPLAN_CACHE_DIR = previous;
    rmSync(dir, { recursive: true, force: true });
  });
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const cores = os.cpus().length;
  const kept: CpuMeasurement = {
    cpu,
    cores,
    threads: cores,
    peakFlops: 200e9,
    bandwidth: 40e9,
    weightBandwidth: 20e9,
    attentionFlops: 150e9,
    massFlops: 50e9,
    overlap: 0.1,
    ridgeRows: 20,
    readbackBandwidth: 2e9,
    measuredAt: '2026-01-02T00:00:00.000Z',
  };
  writeFileSync(join(dir, 'cpu-roofline.json'), JSON.stringify({ [keptMeasurementKey()]: kept }));

  test('uses the kept measurement, and states the error bound of the calibration', async () => {
    process.env.KVPLAN_CACHE_DIR = dir;
    const r = await runCli(['explain', dual, '--cost', '--hardware', 'cpu', ...sizes]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('(measured 2026-01-02)');
    expect(r.stdout).toContain('GEMM weights stream at 20.0 GB/s');
    expect(r.stdout).toContain(
      `calibration: predictions within ±${Math.round(100 * cpuCalibration.speedup.max)}% on this machine's ` +
        `calibration: speedups of the 12 example plans within ±${Math.round(100 * cpuCalibration.speedup.max)}% ` +
        `of the measured ones (median ${Math.round(100 * cpuCalibration.speedup.median)}%)`,
    );
    const json = await runCli(['explain', dual, '--cost', '--json', '--hardware', 'cpu', ...sizes]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      hardware: { name: 'cpu', weightBandwidth: 20e9, overlap: 0.1 },
      calibration: expect.stringMatching(/^predictions within ±\d+% on this machine's calibration/),
    });
  });
});
