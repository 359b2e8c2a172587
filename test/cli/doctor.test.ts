/** `kvplan doctor`: what a user pastes into a bug report, with optional pieces absent, exit 0. */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { type DoctorReport, formatDoctor } from '../../src/cli/doctor.ts';
import { runCli } from '../support/cli.ts';

let root = '';
const saved = { ...process.env };
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'kvplan-doctor-test-'));
});
afterEach(() => {
  for (const key of ['KVPLAN_CC', 'KVPLAN_CACHE_DIR', 'KVPLAN_PTXAS']) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('kvplan doctor', () => {
  test('reports every piece, one line each, and exits 0', async () => {
    process.env.KVPLAN_CACHE_DIR = join(root, 'cache');
    const r = await runCli(['doctor']);
    expect(r.code).toBe(0);
    for (const label of [
      'kvplan',
      'node',
      'C compiler',
      'OpenMP',
      'CPU',
      'build target',
      '  AVX2',
      '  FMA',
      '  F16C',
      '  AVX-512',
      '  AVX512_BF16',
      'WebGPU',
      'ptxas',
      'CUDA driver',
      'cache',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^${label} +\\S`, 'm'));
    }
    expect(r.stdout).toMatch(/^node +v\d+\.\d+\.\d+ /m);
    expect(r.stdout).toMatch(/^OpenMP +yes, \d+ threads$/m);
    expect(r.stdout).toMatch(/^ {2}AVX2 +cpu (yes|no), build (yes|no) \(8-lane kernels\)$/m);
    expect(r.stdout).toMatch(/^cache +\S+ \(mode 700, uid \d+\): ok$/m);
    expect(r.stdout).toContain(` ${join(root, 'cache')} (mode 700`);
  });

  test('--json is the same report as data', async () => {
    process.env.KVPLAN_CACHE_DIR = join(root, 'cache-json');
    const r = await runCli(['doctor', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(Object.keys(report)).toEqual([
      'kvplan',
      'node',
      'platform',
      'compiler',
      'openmp',
      'cpu',
      'webgpu',
      'ptxas',
      'cuda',
      'cache',
    ]);
    expect(report.node).toBe(process.version);
    expect(report.compiler).toMatchObject({ ok: true, command: 'cc' });
    expect(report.cpu.features.map((f) => f.name)).toEqual(['AVX2', 'FMA', 'F16C', 'AVX-512', 'AVX512_BF16']);
    expect(report.cache).toMatchObject({ ok: true, dir: join(root, 'cache-json'), mode: '700' });
  });

  test('missing compiler and ptxas, an unsafe cache: still exit 0, each absent with its reason', async () => {
    process.env.KVPLAN_CC = 'kvplan-no-such-cc';
    process.env.KVPLAN_PTXAS = join(root, 'no-ptxas');
    const open = join(root, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    process.env.KVPLAN_CACHE_DIR = open;
    const r = await runCli(['doctor']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^C compiler +absent: `kvplan-no-such-cc` is not on PATH/m);
    expect(r.stdout).toMatch(/^OpenMP +absent: no C compiler$/m);
    expect(r.stdout).toMatch(/^ptxas +absent: ptxas is not on PATH/m);
    expect(r.stdout).toMatch(/^build target +unknown/m);
    expect(r.stdout).toMatch(/^cache +.*: refused: .*writable by group or others \(mode 777\)/m);
  });

  test('the text form of a report with absent pieces', () => {
    const absent = (reason: string) => ({ ok: false, reason }) as const;
    const report: DoctorReport = {
      kvplan: '9.9.9',
      node: 'v20.0.0',
      platform: 'linux x64',
      compiler: absent('no cc'),
      openmp: absent('no C compiler'),
      cpu: { model: null, target: null, features: [{ name: 'AVX2', cpu: true, build: false, use: 'x' }] },
      webgpu: absent('no adapter'),
      ptxas: { ok: true, path: '/p/ptxas', version: 'release 13.0' },
      cuda: absent('no CUDA device: none'),
      cache: { ok: false, dir: '/c', reason: 'bad' },
    };
    expect(formatDoctor(report)).toBe(
      [
        'kvplan        9.9.9',
        'node          v20.0.0 (linux x64)',
        'C compiler    absent: no cc',
        'OpenMP        absent: no C compiler',
        'CPU           unknown',
        'build target  unknown (the compiler did not say)',
        '  AVX2        cpu yes, build no (x)',
        'WebGPU        absent: no adapter',
        'ptxas         /p/ptxas: release 13.0',
        'CUDA driver   absent: no CUDA device: none',
        'cache         /c: refused: bad',
        '',
      ].join('\n'),
    );
  });
});
