/**
 * Interrupts seen as a user sees them: the real CLI (`node bin/kvplan.mjs`) and the benchmark
 * driver (`tsx bench/run.ts`, what `npm run bench` runs), each with a cold compiled-library cache
 * of its own, are signalled while gcc compiles for them. Each must end within 1 s of the signal
 * with 130 (SIGINT) or 143 (SIGTERM), print no stack trace, and leave no compiler running, no
 * temporary file and no half-written entry in the cache. The signal goes either to the whole
 * process group, as a Ctrl-C at a terminal sends it, or to one process, as `kill` does.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { findOnPath } from '../../src/backends/cpu/compiler.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const KVPLAN = join(REPO, 'bin/kvplan.mjs');
const TSX = join(REPO, 'node_modules/tsx/dist/cli.mjs');

/** Time allowed to reach the compile: the process starts and compiles a plan first (seconds on 2 busy cores). */
const REACH_MS = 90_000;
/** Time allowed to end after the signal. */
const EXIT_MS = 1000;

const root = mkdtempSync(join(tmpdir(), 'kvplan-interrupts-'));
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

let running: ChildProcess | undefined;
afterEach(() => {
  // A failed case must not leave its run going.
  if (running?.pid !== undefined && running.exitCode === null && running.signalCode === null) {
    try {
      process.kill(-running.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running = undefined;
});

/** The process's name, or undefined once it is gone or a zombie (which runs nothing and holds no file). */
function liveName(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const m = /^\d+ \((.*)\) (\S)/.exec(stat);
    return m && m[2] !== 'Z' ? m[1] : undefined;
  } catch {
    return undefined;
  }
}

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone meanwhile
  }
  return out;
}

interface Proc {
  readonly pid: number;
  readonly name: string;
}

/** Every live process below `pid`. */
function descendants(pid: number): Proc[] {
  return children(pid).flatMap((c) => {
    const name = liveName(c);
    return name === undefined ? [] : [{ pid: c, name }, ...descendants(c)];
  });
}

async function until<T>(get: () => T | undefined, ms: number, everyMs = 25): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined || Date.now() >= end) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

interface Case {
  /** node's arguments. */
  readonly args: readonly string[];
  readonly signal: 'SIGINT' | 'SIGTERM';
  /** group: the whole process group (a Ctrl-C); process: the started process; worker: its child node process. */
  readonly to: 'group' | 'process' | 'worker';
}

interface Outcome {
  /** What a shell reports: the exit code, or 128 + the signal's number. */
  readonly status: number;
  readonly exitMs: number;
  readonly stderr: string;
  /** Processes of the interrupted compile still running 1 s after the exit. */
  readonly leftRunning: Proc[];
  readonly cache: string[];
}

async function interrupt(c: Case): Promise<Outcome> {
  const cacheDir = join(root, `cache-${Math.random().toString(16).slice(2)}`);
  const child = spawn(process.execPath, c.args, {
    cwd: REPO,
    env: { ...process.env, KVPLAN_CACHE_DIR: cacheDir },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, which a terminal would signal as a whole.
    detached: true,
  });
  running = child;
  const pid = child.pid as number;
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += String(d);
  });
  child.stdout?.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );

  const compiling = await until(() => {
    const tree = descendants(pid);
    return tree.some((p) => p.name === 'cc1') ? tree : undefined;
  }, REACH_MS);
  expect(compiling, `no cc1 under ${c.args.join(' ')}; stderr: ${stderr}`).toBeDefined();
  const tree = compiling ?? [];
  const worker = children(pid).find((p) => liveName(p) === 'node');

  const sent = Date.now();
  if (c.to === 'group') process.kill(-pid, c.signal);
  else if (c.to === 'process') process.kill(pid, c.signal);
  else {
    expect(worker, 'the bench runs in a child node process').toBeDefined();
    process.kill(worker as number, c.signal);
  }
  const { code, signal, at } = await exited;
  const exitMs = at - sent;
  const still = (p: Proc) => liveName(p.pid) === p.name;
  // The guard shell cleans up after the process it served is gone: give it a moment, no more.
  await until(() => (tree.some(still) ? undefined : true), 1000);
  return {
    status: code ?? 128 + constants.signals[signal as NodeJS.Signals],
    exitMs,
    stderr,
    leftRunning: tree.filter(still),
    cache: readdirSync(cacheDir),
  };
}

function expectClean(o: Outcome, signal: Case['signal']): void {
  expect(o.status, o.stderr).toBe(128 + constants.signals[signal]);
  expect(o.exitMs).toBeLessThan(EXIT_MS);
  expect(o.stderr).not.toMatch(/^\s+at \S/m);
  expect(o.stderr).not.toMatch(/\w*Error\b/);
  expect(o.leftRunning).toEqual([]);
  // No temporary file (`.<hash>.<pid>.<rand>.so`, `.….tmp`), and every library has its checksum.
  expect(o.cache.filter((f) => f.startsWith('.'))).toEqual([]);
  const stems = (ext: string) =>
    o.cache
      .filter((f) => f.endsWith(ext))
      .map((f) => f.slice(0, -ext.length))
      .sort();
  expect(stems('.so')).toEqual(stems('.sha256'));
}

const plan = 'examples/fast-dllm-dual.kvp';
const bench = [TSX, 'bench/run.ts', 'quality', '--n', '2'];
const cases: ReadonlyArray<Case & { readonly name: string }> = [
  {
    name: 'kvplan compile, Ctrl-C',
    args: [KVPLAN, 'compile', plan, '--target', 'cpu', '-o', join(root, 'build')],
    signal: 'SIGINT',
    to: 'group',
  },
  {
    name: 'kvplan eval, SIGTERM',
    args: [KVPLAN, 'eval', '--plan', plan, '--n', '2'],
    signal: 'SIGTERM',
    to: 'process',
  },
  { name: 'kvplan demo, SIGINT', args: [KVPLAN, 'demo', '--n', '1'], signal: 'SIGINT', to: 'process' },
  { name: 'the quality bench, Ctrl-C', args: bench, signal: 'SIGINT', to: 'group' },
  { name: 'the quality bench, SIGINT to its worker', args: bench, signal: 'SIGINT', to: 'worker' },
];

describe.skipIf(process.platform !== 'linux' || findOnPath('cc') === undefined)(
  'an interrupt during a C compile',
  () => {
    test.for(cases)('$name', { timeout: REACH_MS + 10_000 }, async (c) => {
      expectClean(await interrupt(c), c.signal);
    });
  },
);
