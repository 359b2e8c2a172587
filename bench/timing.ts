/** Timing and machine description shared by the benchmark suites. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import koffi from 'koffi';
import type { CpuBuild, CpuRunner } from '../src/backends/cpu/runner.ts';
import type { CheckedPlan } from '../src/dsl/check.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { Weights } from '../src/model/weights.ts';
import { type StepInfo, simulateGeneration } from '../src/runtime/simulate.ts';

export interface Timing {
  /** Median milliseconds of one call. */
  ms: number;
  /** Timed samples (each of `reps` back-to-back calls). */
  samples: number;
  reps: number;
  /** Milliseconds of the first (cold) call. */
  firstMs: number;
  /** The first call took longer than `skipAboveMs`: nothing else was run (ms is NaN). */
  skipped: boolean;
}

export interface MeasureOptions {
  /** Stop after at least this much timed wall time (and `minSamples` samples). */
  minSeconds?: number;
  minSamples?: number;
  /** Calls slower than this: stop after 2 samples once `minSeconds` has passed. */
  slowCallMs?: number;
  /** A first call slower than this ends the measurement (`skipped`). */
  skipAboveMs?: number;
}

/**
 * Warm up (at least one call, up to 3 calls or 0.1 s; one call when it takes over a quarter of
 * `slowCallMs`), then time samples until at least `minSeconds` (0.5 s) and `minSamples` (5)
 * samples have passed; when one call takes longer than `slowCallMs` (1 s), 2 samples are enough. Fast calls are batched so a sample lasts at
 * least 2 ms. Returns the median time of one call.
 */
export async function measure(
  fn: () => unknown | Promise<unknown>,
  opts: MeasureOptions = {},
): Promise<Timing> {
  const minSeconds = opts.minSeconds ?? 0.5;
  const minSamples = opts.minSamples ?? 5;
  const slowCallMs = opts.slowCallMs ?? 1000;
  let t0 = performance.now();
  await fn();
  const firstMs = performance.now() - t0;
  if (opts.skipAboveMs !== undefined && firstMs > opts.skipAboveMs)
    return { ms: Number.NaN, samples: 0, reps: 0, firstMs, skipped: true };
  let best = firstMs;
  const warmStart = performance.now();
  for (let i = 1; i < 3 && firstMs <= slowCallMs / 4 && performance.now() - warmStart < 100; i++) {
    t0 = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t0);
  }
  const reps = Math.max(1, Math.ceil(2 / Math.max(best, 1e-4)));
  const times: number[] = [];
  const start = performance.now();
  for (;;) {
    t0 = performance.now();
    for (let r = 0; r < reps; r++) await fn();
    times.push((performance.now() - t0) / reps);
    const elapsed = (performance.now() - start) / 1000;
    if (elapsed >= minSeconds && times.length >= minSamples) break;
    if (elapsed >= minSeconds && times.length >= 2 && best > slowCallMs) break;
  }
  return { ms: median(times), samples: times.length, reps, firstMs, skipped: false };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export interface Machine {
  cpu: string;
  cores: number;
  node: string;
  os: string;
  memory_gib: number;
  [key: string]: unknown;
}

/** A file's text, trimmed; empty where it cannot be read (a file of Linux's elsewhere). */
function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

/** The SIMD extensions the kernels care about, from /proc/cpuinfo (Linux; empty elsewhere). */
function simdFlags(info: string): string {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? '').trim().split(/\s+/));
  return ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni'].filter((f) => flags.has(f)).join(' ');
}

/**
 * The CPU's family and model numbers and the caches its first core sees (Linux; empty elsewhere).
 * Two of this project's hosts both read "AMD EPYC" with the same SIMD flags: family 25 model 17
 * (Zen 4: one 512-bit FMA a cycle, a 32 KiB L1d) and a family 26 part (Zen 5: two, 48 KiB), with
 * twice the FLOP peak between them and the ratios of every benchmark moved by it.
 */
function cpuIdentity(info: string): { family_model: string; caches: string } {
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(\\d+)$`, 'm').exec(info)?.[1];
  const [family, model] = [field('cpu family'), field('model')];
  const caches: string[] = [];
  for (let i = 0; ; i++) {
    const dir = `/sys/devices/system/cpu/cpu0/cache/index${i}`;
    const [level, type, size] = ['level', 'type', 'size'].map((f) => readText(`${dir}/${f}`));
    if (!level) break;
    if (type !== 'Instruction') caches.push(`L${level}${type === 'Data' ? 'd' : ''} ${size}`);
  }
  return { family_model: family && model ? `${family}/${model}` : '', caches: caches.join(', ') };
}

export function machineInfo(extra: Record<string, unknown> = {}): Machine {
  const cpus = os.cpus();
  const info = readText('/proc/cpuinfo');
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    simd: simdFlags(info),
    ...cpuIdentity(info),
    cores: cpus.length,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    ...extra,
  };
}

/** glibc's memmove, whose result is its destination: where a typed array's bytes lie (null elsewhere). */
let memmove: ((dst: Uint8Array, src: Uint8Array, n: number) => unknown) | null | undefined;

/**
 * n floats from a 64-byte boundary, where the plans' arena puts every buffer (src/passes/memory.ts).
 * A large typed array starts 16 bytes past one, and there attention's key rows (a canvas row apart,
 * 4 KiB at 16 heads of 64) met L1 differently: a change measured 1.1x on such inputs ran 0.9x on
 * aligned ones. Off glibc the array is unaligned.
 */
export function alignedFloats(n: number): Float32Array {
  if (memmove === undefined) {
    try {
      memmove = koffi.load('libc.so.6').func('void *memmove(void *dst, const void *src, size_t n)');
    } catch {
      memmove = null;
    }
  }
  const bytes = new Uint8Array(n * 4 + 64);
  const at = memmove ? koffi.address(memmove(bytes, bytes, 0)) : 0n;
  return new Float32Array(bytes.buffer, Number((64n - (at % 64n)) % 64n), n);
}

/** Deterministic uniform [-1, 1) floats (mulberry32), so runs are reproducible; 64-byte aligned. */
export function randomFloats(n: number, seed: number): Float32Array {
  const out = alignedFloats(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** A random sorted subset of 0..n-1 of size k (deterministic). */
export function randomSubset(n: number, k: number, seed: number): Int32Array {
  const r = randomFloats(n, seed);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(((r[i] as number) * 0.5 + 0.5) * (i + 1));
    const t = idx[i] as number;
    idx[i] = idx[j] as number;
    idx[j] = t;
  }
  return Int32Array.from(idx.slice(0, k).sort((a, b) => a - b));
}

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat; null elsewhere. */
function systemBusy(): number | null {
  try {
    const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ = 100 on Linux
  } catch {
    return null;
  }
}

/**
 * Starts watching the machine; the function returned gives the cores other processes kept busy on
 * average since then (the noise indicator of a run), to two decimals, or null off Linux.
 */
export function otherProcessesMeter(): () => number | null {
  const t0 = performance.now();
  const cpu0 = systemBusy();
  const own0 = process.cpuUsage();
  return () => {
    const cpu1 = systemBusy();
    if (cpu0 === null || cpu1 === null) return null;
    const own = process.cpuUsage(own0);
    const seconds = (performance.now() - t0) / 1000;
    const cores = Math.max(0, (cpu1 - cpu0 - (own.user + own.system) / 1e6) / seconds);
    return Math.round(cores * 100) / 100;
  };
}

/**
 * One generation of `plan` on a CPU runner kept across generations (its weights packed once): the
 * tokens, the steps and the milliseconds spent in them (seed 1, no comparison with a golden).
 */
export async function timedGeneration(
  plan: CheckedPlan,
  build: CpuBuild,
  runner: CpuRunner,
  model: { readonly config: ModelConfig; readonly weights: Weights },
  prompt: Int32Array,
  genLen: number,
  onStep?: (info: StepInfo) => void,
): Promise<{ tokens: Int32Array; steps: number; ms: number }> {
  let ms = 0;
  let steps = 0;
  const r = await simulateGeneration(plan, build.lowered, {
    ...model,
    prompt,
    genLen,
    seed: 1,
    compare: false,
    runner: () => runner,
    onStep: (info) => {
      ms += info.ms;
      steps++;
      onStep?.(info);
    },
  });
  return { tokens: r.tokens, steps, ms };
}
