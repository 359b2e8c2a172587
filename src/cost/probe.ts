/**
 * The `cpu` hardware: this machine's float32 peak and memory bandwidth, and the figures of its own
 * kernels the roofline needs besides (the rate GEMM weights stream at, how much of that traffic the
 * arithmetic hides, attention's rates, the cost of reading a hidden state back to the host),
 * measured through the CPU backend's own C primitives (the roofline holds a plan to what our
 * kernels can reach, DESIGN.md section 5), in about 4 seconds, and kept in the per-user kvplan
 * cache directory so that later runs on the same CPU reuse it. Measure on an idle machine: another
 * process on one of the cores halves the peak and divides the weight rate by ten (docs/perf.md).
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { defaultCacheDir, prepareCacheDir } from '../backends/cpu/compiler.ts';
import { loadPrimitives, type Primitives, primitivesSource } from '../backends/cpu/primitives.ts';
import type { Hardware } from './hardware.ts';
import type { Roofline } from './roofline.ts';

export interface CpuMeasurement {
  /** The CPU model and core count the measurement is kept under. */
  readonly cpu: string;
  readonly cores: number;
  /** Threads the primitives ran on (all cores). */
  readonly threads: number;
  /** FLOP/s of kv_gemm at 1024 x 1024 x 1024 (operands in cache). */
  readonly peakFlops: number;
  /** Bytes/s of a stream through kv_rmsnorm (read and write), from memory. */
  readonly bandwidth: number;
  /** Bytes/s of packed weights streamed from memory by kv_gemm of one row. */
  readonly weightBandwidth: number;
  /** FLOP/s of kv_attention, 1024 queries over 1024 keys. */
  readonly attentionFlops: number;
  /** FLOP/s of kv_attention_mass (the score probes' kernel) on the same shapes, counted as costProbe counts it. */
  readonly massFlops: number;
  /**
   * The part of the shorter of compute and weight-streaming time that kv_gemm hides under the
   * longer, at the row count where the two are equal (src/cost/roofline.ts, `overlap`).
   */
  readonly overlap: number;
  /** Rows of the GEMM `overlap` was measured at (the ridge of peakFlops and weightBandwidth). */
  readonly ridgeRows: number;
  /** Bytes/s of hidden states copied out of the arena into fresh buffers, as the runner reads them back. */
  readonly readbackBandwidth: number;
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
 * The overlap (src/cost/roofline.ts) that makes a kernel of `compute` and `memory` seconds take
 * `measured`: 1 when it takes the longer of them, 0 when it takes their sum (or more), clamped.
 */
export function overlapOf(compute: number, memory: number, measured: number): number {
  const shorter = Math.min(compute, memory);
  if (!(shorter > 0)) return 1;
  return Math.min(1, Math.max(0, (compute + memory - measured) / shorter));
}

/**
 * What the runner does to read the hidden state of the canvas back (CpuRunner.hidden): a slice of
 * the arena, a fresh buffer each time, the old ones left to the garbage collector; 8 of 4 MiB a
 * round, the median of 16 rounds (a fresh buffer costs its page faults, unless the collector has
 * just handed back memory: the fastest round would be that exception, not the rule).
 */
function readback(): number {
  const floats = 2 ** 20;
  const arena = new Float32Array(9 * floats).fill(0.5);
  let kept: Float32Array[] = [];
  const rounds: number[] = [];
  for (let r = 0; r < 17; r++) {
    const t = performance.now();
    kept = Array.from({ length: 8 }, (_, i) => arena.slice(i * floats, (i + 1) * floats));
    if (r > 0) rounds.push((performance.now() - t) / 1000);
  }
  rounds.sort((a, b) => a - b);
  const median = ((rounds[7] as number) + (rounds[8] as number)) / 2;
  return (kept.length * floats * 4) / median;
}

/** Packed weights streamed by the GEMM probes: 8 matrices of 4096 x 1024, 128 MiB, past the last-level cache. */
const STREAMED = { count: 8, n: 4096, k: 1024 } as const;

/**
 * The two kernels of the pure roofline. Peak: kv_gemm of 1024 x 1024 x 1024 with a packed weight,
 * the GEMM the kernel benchmark measures against onnxruntime (bench/kernels.ts). Bandwidth:
 * kv_rmsnorm over 128 MiB of rows of 1024, a STREAM "scale": it reads each float once and writes it
 * once, with a few FLOPs per element, and is counted as reads plus writes, as the kernels' byte
 * costs are.
 */
function pureKernels(p: Primitives) {
  const n = 1024;
  const a = new Float32Array(n * n).fill(0.5);
  const packed = p.packWeight(n, n, new Float32Array(n * n).fill(0.25));
  const c = new Float32Array(n * n);
  // Two arrays of 128 MiB, so that the stream comes from memory, not from the last-level cache
  // (32 to 96 MiB on a Zen 4 core complex).
  const rows = (128 * 2 ** 20) / 4 / n;
  const x = new Float32Array(rows * n).fill(0.5);
  const y = new Float32Array(rows * n);
  const w = new Float32Array(n).fill(1);
  return {
    gemm: () => p.gemm(n, n, n, a, n, null, packed, null, c, n, false),
    stream: () => p.rmsnorm(rows, n, x, null, w, 1e-5, y),
    peakFlops: (seconds: number) => (2 * n * n * n) / seconds,
    bandwidth: (seconds: number) => (2 * x.byteLength) / seconds,
  };
}

/**
 * A meter of the pure roofline (peak and bandwidth only), its buffers allocated once, read as often
 * as asked in about a second: this host's bandwidth has phases of seconds to minutes (docs/perf.md),
 * so a benchmark that holds a minute of work to one measurement taken before it holds most of that
 * work to another phase's machine. A reading's `threads`: as measureCpu's (0: all cores).
 */
export async function pureRooflineMeter(): Promise<(threads?: number) => Roofline> {
  const p = await loadPrimitives();
  const pure = pureKernels(p);
  return (threads = 0) => {
    p.setThreads(threads);
    let gemm = Number.POSITIVE_INFINITY;
    let stream = Number.POSITIVE_INFINITY;
    for (let pass = 0; pass < 2; pass++) {
      gemm = Math.min(gemm, fastest(pure.gemm, 0.2));
      stream = Math.min(stream, fastest(pure.stream, 0.2));
    }
    return { peakFlops: pure.peakFlops(gemm), bandwidth: pure.bandwidth(stream) };
  };
}

/**
 * Peak and bandwidth: pureKernels. Weight bandwidth: kv_gemm of one row through 128 MiB of packed
 * weights, the traffic of a cached step that computes few rows.
 * Overlap: the same GEMMs at the ridge, the row count whose FLOPs at the peak take as long as their
 * weights at the weight bandwidth; were the two overlapped, that would take one of those times, and
 * were they not, both. Attention: kv_attention of 1024 queries over 1024 keys, 16 heads of 64, and
 * kv_attention_mass, the score probes' kernel, on the same shapes. Readback: see `readback`.
 * `threads`: the primitives' thread count (0: all cores, what the advisor costs).
 */
export async function measureCpu(threads = 0): Promise<CpuMeasurement> {
  const p = await loadPrimitives();
  p.setThreads(threads);
  const pure = pureKernels(p);
  const { count, n: wn, k: wk } = STREAMED;
  const one = p.packWeight(wn, wk, new Float32Array(wn * wk).fill(0.01));
  const weights = Array.from({ length: count }, () => one.slice());
  const act = new Float32Array(256 * wk).fill(0.5);
  const out = new Float32Array(256 * wn);
  const through = (m: number) => () => {
    for (const pw of weights) p.gemm(m, wn, wk, act, wk, null, pw, null, out, wn, false);
  };
  const [nq, heads, hd] = [1024, 16, 64];
  const q = new Float32Array(nq * heads * hd).fill(0.03);
  const kv = new Float32Array(nq * heads * hd).fill(0.01);
  const pos = Int32Array.from({ length: nq }, (_, i) => i);
  const o = new Float32Array(nq * heads * hd);
  const lse = new Float32Array(nq * heads);
  const mass = new Float64Array(nq);
  const kernels = {
    gemm: pure.gemm,
    stream: pure.stream,
    weights: through(1),
    attention: () => p.attention(nq, nq, heads, heads, hd, 0.125, q, kv, kv, pos, pos, null, o, lse),
    mass: () => p.attentionMass(nq, nq, heads, heads, hd, 0.125, q, kv, pos, pos, null, mass),
  };
  // Two passes over the kernels, a few tenths of a second each: a burst of load on a shared machine
  // slows what runs meanwhile, and the other pass is likely to miss it.
  const best = Object.fromEntries(Object.keys(kernels).map((k) => [k, Number.POSITIVE_INFINITY])) as Record<
    keyof typeof kernels,
    number
  >;
  for (let pass = 0; pass < 2; pass++)
    for (const [k, f] of Object.entries(kernels) as [keyof typeof kernels, () => void][])
      best[k] = Math.min(best[k], fastest(f, 0.2));
  const peakFlops = pure.peakFlops(best.gemm);
  const weightBytes = count * wn * wk * 4;
  const weightBandwidth = weightBytes / best.weights;
  // FLOPs per weight byte of a GEMM of m rows: 2m / 4; the ridge is where that is peak / bandwidth.
  const ridgeRows = Math.max(1, Math.min(256, Math.round((2 * peakFlops) / weightBandwidth)));
  const computeTime = (2 * ridgeRows * wn * wk * count) / peakFlops;
  const memoryTime = weightBytes / weightBandwidth;
  const atRidge = Math.min(fastest(through(ridgeRows), 0.2), fastest(through(ridgeRows), 0.2));
  return {
    ...machine(),
    threads: p.getThreads(),
    readbackBandwidth: readback(),
    peakFlops,
    bandwidth: pure.bandwidth(best.stream),
    weightBandwidth,
    attentionFlops: (4 * nq * nq * heads * hd) / best.attention,
    massFlops: (2 * nq * nq * heads * hd + 5 * nq * nq * heads) / best.mass,
    overlap: overlapOf(computeTime, memoryTime, atRidge),
    ridgeRows,
    measuredAt: new Date().toISOString(),
  };
}

const machine = () => ({ cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length });
/**
 * A measurement is kept per CPU and per version of the primitives it timed: a faster kernel
 * (explicit FMAs took the GEMM from 136 to 187 GFLOP/s here) makes the kept peak wrong.
 */
const cacheKey = (m: { cpu: string; cores: number }, kernels: string) =>
  `${m.cpu} x${m.cores} kernels ${kernels}`;
const primitivesVersion = () => createHash('sha256').update(primitivesSource()).digest('hex').slice(0, 12);
const CACHE_FILE = 'cpu-roofline.json';

/** Where cpu-roofline.json keeps the measurement of this machine with these primitives. */
export const keptMeasurementKey = (): string => cacheKey(machine(), primitivesVersion());

function readCache(file: string): Record<string, CpuMeasurement> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, CpuMeasurement>) : {};
  } catch {
    // absent or unreadable: measured again and rewritten
    return {};
  }
}

/** A kept measurement with every figure this version uses (an older probe's is measured again). */
const isMeasurement = (m: CpuMeasurement | undefined): m is CpuMeasurement =>
  m !== undefined &&
  m.peakFlops > 0 &&
  m.bandwidth > 0 &&
  m.weightBandwidth > 0 &&
  m.attentionFlops > 0 &&
  m.massFlops > 0 &&
  m.overlap >= 0 &&
  m.overlap <= 1 &&
  m.readbackBandwidth > 0;

export interface CpuHardwareOptions {
  /** Where the measurement is kept (default: the CPU backend's cache directory). */
  readonly cacheDir?: string;
  /** Measure even when a measurement of this CPU is kept. */
  readonly remeasure?: boolean;
  /** What measures (tests give a fixed one). */
  readonly measure?: () => Promise<CpuMeasurement>;
  /** The version of the primitives measured (default: a hash of their C source). */
  readonly kernels?: string;
}

/** This machine as the advisor's `cpu` hardware: its kept measurement, or a new one. */
export async function cpuHardware(o: CpuHardwareOptions = {}): Promise<Hardware> {
  const dir = o.cacheDir ?? defaultCacheDir();
  prepareCacheDir(dir);
  const file = join(dir, CACHE_FILE);
  const kept = readCache(file);
  const key = o.kernels === undefined ? keptMeasurementKey() : cacheKey(machine(), o.kernels);
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
    weightBandwidth: m.weightBandwidth,
    attentionFlops: m.attentionFlops,
    massFlops: m.massFlops,
    overlap: m.overlap,
    readbackBandwidth: m.readbackBandwidth,
    weights: 'f32',
    backend: 'cpu',
    source: `measured on this machine (${CACHE_FILE} in ${dir}; remeasured when the CPU or the kernels change)`,
  };
}
