/**
 * Start-up and compile latency of the installed CLI as a user meets it: each case is a fresh
 * `node bin/kvplan.mjs …` process (the built dist/), run `runs` times, the cases interleaved so
 * that a change in machine load hits all of them alike; min and median are reported. A plan
 * compile for the CPU backend is timed cold (an empty compiled-library cache: gcc runs) and cached
 * (the library is found by its hash and loaded). Targets (issue 20): --version < 300 ms, check
 * < 500 ms, a cached compile < 1 s end to end (the < 50 ms of the compile itself is what remains
 * after Node's and the CLI's start-up), a cold one within 1 s of gcc.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type Destination, saveResults } from './save.ts';
import { machineInfo } from './timing.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const BIN = join(REPO, 'bin/kvplan.mjs');

export interface StartupOptions {
  readonly runs: number;
  readonly to: Destination;
}

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  /** A fresh compiled-library cache for every run (cold), or one shared by all runs (warm). */
  readonly cache?: 'cold' | 'warm';
}

const cases: readonly Case[] = [
  { name: 'node -e 0 (Node itself)', args: [] },
  { name: 'kvplan --version', args: ['--version'] },
  { name: 'kvplan check examples/baseline.kvp', args: ['check', 'examples/baseline.kvp'] },
  {
    name: 'kvplan compile fast-dllm-dual --target cpu -o, cached',
    args: ['compile', 'examples/fast-dllm-dual.kvp', '--target', 'cpu', '-o'],
    cache: 'warm',
  },
  {
    name: 'kvplan compile fast-dllm-dual --target cpu -o, cold',
    args: ['compile', 'examples/fast-dllm-dual.kvp', '--target', 'cpu', '-o'],
    cache: 'cold',
  },
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function timeOnce(c: Case, scratch: string, run: number): number {
  const env = { ...process.env };
  if (c.cache) env.KVPLAN_CACHE_DIR = join(scratch, c.cache === 'warm' ? 'cache-warm' : `cache-cold-${run}`);
  // -o takes a directory of its own per run: writing into an existing build is refused.
  const args = c.args.at(-1) === '-o' ? [...c.args, join(scratch, `out-${c.cache}-${run}`)] : c.args;
  const argv = args.length === 0 ? ['-e', '0'] : [BIN, ...args];
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { cwd: REPO, env, encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${c.name} exited ${r.status}: ${r.stderr}`);
  return ms;
}

export async function startupSuite(o: StartupOptions): Promise<void> {
  if (!existsSync(join(REPO, 'dist/cli/main.js'))) throw new Error('dist/ is not built: run npm run build');
  const scratch = mkdtempSync(join(tmpdir(), 'kvplan-startup-'));
  const load = { before: os.loadavg()[0] ?? 0 };
  const times = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  try {
    // One warm-up of each (the page cache, the warm compiled-library cache), then interleaved runs.
    for (const c of cases) timeOnce(c, scratch, -1);
    for (let run = 0; run < o.runs; run++)
      for (const c of cases) times.get(c.name)?.push(timeOnce(c, scratch, run));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  const rows = cases.map((c) => {
    const t = times.get(c.name) ?? [];
    return { case: c.name, runs: t.length, min_ms: Math.min(...t), median_ms: median(t) };
  });
  const result = {
    suite: 'startup',
    date: new Date().toISOString(),
    machine: machineInfo({ load_1min_before: load.before, load_1min_after: os.loadavg()[0] }),
    rows,
  };
  console.log(`${'case'.padEnd(56)} ${'min ms'.padStart(8)} ${'median ms'.padStart(10)}`);
  for (const r of rows)
    console.log(
      `${r.case.padEnd(56)} ${r.min_ms.toFixed(0).padStart(8)} ${r.median_ms.toFixed(0).padStart(10)}`,
    );
  console.log(`load (1 min) ${load.before.toFixed(2)} before, ${os.loadavg()[0]?.toFixed(2)} after`);
  saveResults(o.to, result);
}
