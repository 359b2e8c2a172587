/**
 * The `cpu` hardware: this machine's float32 peak and memory bandwidth, measured through the CPU
 * backend's own C primitives (the roofline holds a plan to what our kernels can reach, DESIGN.md
 * section 5), in about a second, and kept in the per-user kvplan cache directory so that later
 * runs on the same CPU reuse it.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { defaultCacheDir, prepareCacheDir } from '../backends/cpu/compiler.ts';
import { loadPrimitives } from '../backends/cpu/primitives.ts';
import type { Hardware } from './hardware.ts';

export interface CpuMeasurement {
  /** The CPU model and core count the measurement is kept under. */
  readonly cpu: string;
  readonly cores: number;
  /** Threads the primitives ran on (all cores). */
  readonly threads: number;
  readonly peakFlops: number;
  readonly bandwidth: number;
  /** ISO time of the measurement. */
  readonly measuredAt: string;
}

/** Seconds of the fastest of repeated calls within `budget` seconds: noise only ever slows a call. */
function fastest(f: () => void, budget: number): number {
  f();
  let best = Number.POSITIVE_INFINITY;
  const end = performance.now() + budget * 1000;
  for (let i = 0; i < 3 || performance.now() < end; i++) {
    const t = performance.now();
    f();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return best;
}

/**
 * Peak: kv_gemm of 1024 x 1024 x 1024 with a packed weight, the GEMM the kernel benchmark
 * measures against onnxruntime (bench/kernels.ts). Bandwidth: kv_rmsnorm over 128 MiB of rows of
 * 1024, a STREAM "scale": it reads each float once and writes it once, with a few FLOPs per element,
 * and is counted as reads plus writes, as the kernels' byte costs are.
 */
export async function measureCpu(): Promise<CpuMeasurement> {
  const p = await loadPrimitives();
  p.setThreads(0);
  const n = 1024;
  const a = new Float32Array(n * n).fill(0.5);
  const packed = p.packWeight(n, n, new Float32Array(n * n).fill(0.25));
  const c = new Float32Array(n * n);
  const gemm = fastest(() => p.gemm(n, n, n, a, n, null, packed, null, c, n, false), 0.4);
  // Two arrays of 128 MiB, so that the stream comes from memory, not from the last-level cache
  // (32 to 96 MiB on a Zen 4 core complex).
  const rows = (128 * 2 ** 20) / 4 / n;
  const x = new Float32Array(rows * n).fill(0.5);
  const y = new Float32Array(rows * n);
  const w = new Float32Array(n).fill(1);
  const stream = fastest(() => p.rmsnorm(rows, n, x, null, w, 1e-5, y), 0.3);
  return {
    ...machine(),
    threads: p.getThreads(),
    peakFlops: (2 * n * n * n) / gemm,
    bandwidth: (2 * x.byteLength) / stream,
    measuredAt: new Date().toISOString(),
  };
}

const machine = () => ({ cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length });
const cacheKey = (m: { cpu: string; cores: number }) => `${m.cpu} x${m.cores}`;
const CACHE_FILE = 'cpu-roofline.json';

function readCache(file: string): Record<string, CpuMeasurement> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, CpuMeasurement>) : {};
  } catch {
    // absent or unreadable: measured again and rewritten
    return {};
  }
}

const isMeasurement = (m: CpuMeasurement | undefined): m is CpuMeasurement =>
  m !== undefined && m.peakFlops > 0 && m.bandwidth > 0;

export interface CpuHardwareOptions {
  /** Where the measurement is kept (default: the CPU backend's cache directory). */
  readonly cacheDir?: string;
  /** Measure even when a measurement of this CPU is kept. */
  readonly remeasure?: boolean;
  /** What measures (tests give a fixed one). */
  readonly measure?: () => Promise<CpuMeasurement>;
}

/** This machine as the advisor's `cpu` hardware: its kept measurement, or a new one. */
export async function cpuHardware(o: CpuHardwareOptions = {}): Promise<Hardware> {
  const dir = o.cacheDir ?? defaultCacheDir();
  prepareCacheDir(dir);
  const file = join(dir, CACHE_FILE);
  const kept = readCache(file);
  const key = cacheKey(machine());
  let m = o.remeasure ? undefined : kept[key];
  if (!isMeasurement(m)) {
    m = await (o.measure ?? measureCpu)();
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ ...kept, [key]: m }, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, file);
  }
  return {
    name: 'cpu',
    description: `${m.cpu}, ${m.cores} cores, ${m.threads} threads (measured ${m.measuredAt.slice(0, 10)})`,
    peakFlops: m.peakFlops,
    peakDtype: 'f32, kv_gemm 1024x1024x1024',
    bandwidth: m.bandwidth,
    weights: 'f32',
    backend: 'cpu',
    source: `measured on this machine (${CACHE_FILE} in ${dir}; remeasured when the CPU changes)`,
  };
}
