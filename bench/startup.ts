/**
 * Start-up and compile latency of the installed CLI as a user meets it: each case is a fresh
 * `node bin/kvplan.mjs …` process (the built dist/), run `runs` times, the cases interleaved so
 * that a change in machine load hits all of them alike; min and median are reported. A plan
 * compile for the CPU backend is timed with everything cached (the plan's library is found by its
 * hash), cold with the primitives library cached (gcc compiles the plan's own unit: what every new
 * plan or model costs), and cold with nothing cached (gcc compiles the primitives too, once per
 * machine and compiler). The in-process cases time, inside one Node process, the CPU backend's
 * buildCpu (passes, C rendering, cache lookup) and the public API's compilePlan writing a CPU
 * build, with the libraries cached: the first call of the process and the later ones. Targets
 * (issue 20): --version < 300 ms, check < 500 ms, a cold compile within 1 s of gcc, a cached one
 * < 50 ms of compile work beyond start-up.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
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
  /**
   * The compiled-library cache: one shared by all runs (warm), a fresh empty one for every run
   * (cold), or a fresh one holding only the primitives library (glue).
   */
  readonly cache?: 'cold' | 'warm' | 'glue';
}

const compile = ['compile', 'examples/fast-dllm-dual.kvp', '--target', 'cpu', '-o'];

const cases: readonly Case[] = [
  { name: 'node -e 0 (Node itself)', args: [] },
  { name: 'kvplan --version', args: ['--version'] },
  { name: 'kvplan check examples/baseline.kvp', args: ['check', 'examples/baseline.kvp'] },
  { name: 'kvplan compile fast-dllm-dual --target cpu -o, cached', args: compile, cache: 'warm' },
  { name: 'the same, cold, the primitives library cached', args: compile, cache: 'glue' },
  { name: 'the same, cold, nothing cached', args: compile, cache: 'cold' },
];

/**
 * Times, in a fresh process, five CPU builds of fast-dllm-dual (the `small` preset, the CLI's
 * canvas) with the libraries cached, after checking the plan: buildCpu alone (BENCH_CALL=build),
 * or the API's compilePlan writing the build to BENCH_OUT (BENCH_CALL=api: it also computes the
 * compile statistics). Prints the times as JSON.
 */
const IN_PROCESS = `
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
const dist = (p) => new URL('./dist/' + p, 'file://' + process.cwd() + '/').href;
const { checkPlanFile, compilePlan } = await import(dist('index.js'));
const { buildCpu } = await import(dist('backends/cpu/runner.js'));
const { presets } = await import(dist('model/presets.js'));
const plan = checkPlanFile('examples/fast-dllm-dual.kvp').plans[0];
const calls = {
  build: async () => { if (!buildCpu(plan, presets.small, 64 + 256).cached) throw new Error('not cached'); },
  api: (i) => compilePlan(plan, { target: 'cpu', outDir: join(process.env.BENCH_OUT, String(i)) }),
};
const times = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  await calls[process.env.BENCH_CALL](i);
  times.push(performance.now() - t0);
}
console.log(JSON.stringify(times));
`;

const inProcessCases = {
  build: ['in-process buildCpu, cached: first call', 'in-process buildCpu, cached: later calls'],
  api: [
    'in-process API compilePlan -> outDir: first call',
    'in-process API compilePlan -> outDir: later calls',
  ],
} as const;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

/** A fresh cache directory for one run: empty, or holding the primitives library of `warm`. */
function cacheFor(c: Case, scratch: string, run: number, primitives: string | undefined): string {
  const warm = join(scratch, 'cache-warm');
  if (c.cache === 'warm') return warm;
  const dir = join(scratch, `cache-${c.cache}-${run}`);
  if (c.cache === 'glue') {
    if (!primitives) throw new Error('the warm-up found no primitives library');
    mkdirSync(dir, { mode: 0o700 });
    for (const ext of ['so', 'sha256', 'c'])
      copyFileSync(join(warm, `${primitives}.${ext}`), join(dir, `${primitives}.${ext}`));
  }
  return dir;
}

function timeOnce(c: Case, scratch: string, run: number, primitives?: string): number {
  const env = { ...process.env };
  if (c.cache) env.KVPLAN_CACHE_DIR = cacheFor(c, scratch, run, primitives);
  // -o takes a directory of its own per run: writing into an existing build is refused.
  const args = c.args.at(-1) === '-o' ? [...c.args, join(scratch, `out-${c.cache}-${run}`)] : c.args;
  const argv = args.length === 0 ? ['-e', '0'] : [BIN, ...args];
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { cwd: REPO, env, encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${c.name} exited ${r.status}: ${r.stderr}`);
  return ms;
}

/** The hash of the primitives library a CPU build in `out` is linked against (its file name). */
function primitivesHash(out: string): string | undefined {
  if (!existsSync(out)) return undefined;
  for (const f of readdirSync(out)) {
    const m = /^kvplan-([0-9a-f]{64})\.so$/.exec(f);
    if (m) return m[1];
  }
  return undefined;
}

/** The times of one in-process run of `call`, call by call. */
function inProcessOnce(call: keyof typeof inProcessCases, scratch: string, run: number): number[] {
  const env = {
    ...process.env,
    KVPLAN_CACHE_DIR: join(scratch, 'cache-warm'),
    BENCH_CALL: call,
    BENCH_OUT: join(scratch, `out-api-${run}`),
  };
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', IN_PROCESS], {
    cwd: REPO,
    env,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`the in-process case ${call} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export async function startupSuite(o: StartupOptions): Promise<void> {
  if (!existsSync(join(REPO, 'dist/cli/main.js'))) throw new Error('dist/ is not built: run npm run build');
  const scratch = mkdtempSync(join(tmpdir(), 'kvplan-startup-'));
  const load = { before: os.loadavg()[0] ?? 0 };
  const names = [...cases.map((c) => c.name), ...Object.values(inProcessCases).flat()];
  const times = new Map<string, number[]>(names.map((n) => [n, []]));
  const add = (name: string, ms: number) => times.get(name)?.push(ms);
  try {
    // One warm-up of each (the page cache, the warm compiled-library cache), then interleaved runs.
    let primitives: string | undefined;
    for (const c of cases) {
      timeOnce(c, scratch, -1, primitives);
      primitives ??= primitivesHash(join(scratch, 'out-warm--1'));
    }
    for (let run = 0; run < o.runs; run++) {
      for (const c of cases) add(c.name, timeOnce(c, scratch, run, primitives));
      for (const call of ['build', 'api'] as const) {
        const [first = Number.NaN, ...later] = inProcessOnce(call, scratch, run);
        add(inProcessCases[call][0], first);
        for (const t of later) add(inProcessCases[call][1], t);
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  const rows = [...times].map(([name, t]) => ({
    case: name,
    runs: t.length,
    min_ms: Math.min(...t),
    median_ms: median(t),
  }));
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
