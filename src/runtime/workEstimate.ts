/**
 * What a run will cost, from declared sizes alone, before anything is allocated or simulated: the
 * FLOPs of its forward passes (an upper bound), the memory its weights and canvases take, the
 * refusal of a request the machine cannot hold, and the line a command prints before a long run.
 * See docs/cli.md, "Work estimates and limits".
 */
import type { ModelConfig } from '../model/config.ts';
import type { HalfDtype } from '../model/half.ts';
import { weightSpec } from '../model/weights.ts';

/**
 * FLOPs (a multiply-add is 2) of one forward pass over a canvas of `rows` rows in which every row
 * attends to every row: projections, attention, SwiGLU and the output head. No step of any plan
 * computes more (a cached step recomputes fewer rows or attends to fewer keys).
 */
export function forwardFlops(c: ModelConfig, rows: number): number {
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const perRow = 2 * c.dModel * (q + 2 * kv) + 2 * q * c.dModel + 6 * c.dModel * c.dFF;
  // Scores and the weighted sum of values: 2 FLOPs each per query width, per key.
  const attention = 4 * rows * q;
  return rows * (c.layers * (perRow + attention) + 2 * c.dModel * c.vocab);
}

/**
 * Bytes one canvas of `rows` rows holds while a step runs, in float64 where the reference
 * interpreter computes (`scalar` 8, which verify asks for) and float32 on the float32 backends
 * (`scalar` 4): the K and V caches and a cached hidden state of every layer, the hidden state each
 * layer saw (scores probe it), the logits of every row (the scores' latest and a step's, in the
 * backend's precision; in float64 the golden's too, for verify), and one layer's activations. An
 * estimate on the high side, not a measurement.
 */
export function canvasBytes(c: ModelConfig, rows: number, scalar: 4 | 8): number {
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const caches = c.layers * (2 * kv + c.dModel) * scalar + c.layers * c.dModel * 8;
  const logits = (scalar === 8 ? 3 : 2) * c.vocab * scalar;
  const activations = (q + 2 * kv + 2 * c.dFF + 2 * c.dModel) * 8;
  return rows * (caches + logits + activations);
}

/**
 * Weight memory per backend, from the shape and the stored dtype alone. The host holds
 * `hostBytes` (none for a checkpoint: each tensor is read when a backend loads it). Matrices (GEMM
 * weights and the embedding table) stay in 16 bits where a backend reads them so: the CPU backend
 * (packed GEMMs, and the table the embedding gathers, which a tied head packs a second time);
 * WebGPU for bf16 (f16 needs `shader-f16`, so it is counted widened); PTX for its tensor-core
 * GEMMs, with the gathered table in floats (a tied head's k-major copy in 16 bits). Norms and
 * biases are floats everywhere. The reference interpreter widens one tensor at a time and keeps
 * no copy.
 */
export function backendMemory(
  c: ModelConfig,
  half: HalfDtype | undefined,
  hostBytes: number,
): Record<'host' | 'cpu' | 'webgpu' | 'ptx', number> {
  let linear = 0;
  let vectors = 0;
  for (const w of weightSpec(c)) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    if (w.kind === 'linear') linear += n;
    else if (w.kind !== 'embedding') vectors += n;
  }
  const table = c.vocab * c.dModel;
  const tiedHead = c.tieEmbeddings ? table : 0;
  const m = half ? 2 : 4;
  return {
    host: hostBytes,
    cpu: (linear + table + tiedHead) * m + vectors * 4,
    webgpu: (linear + table) * (half === 'bf16' ? 2 : 4) + vectors * 4,
    ptx: (linear + tiedHead) * m + table * 4 + vectors * 4,
  };
}

const GiB = 2 ** 30;

/** `1.50 GiB`, `12.0 MiB`, `3.0 KiB`. */
export const formatBytes = (n: number): string =>
  n >= GiB
    ? `${(n / GiB).toFixed(2)} GiB`
    : n >= 2 ** 20
      ? `${(n / 2 ** 20).toFixed(1)} MiB`
      : `${(n / 1024).toFixed(1)} KiB`;

/** The memory a run may plan for, and where that figure comes from (for a refusal). */
export interface MemoryLimit {
  readonly bytes: number;
  readonly source: string;
}

/** What a run holds at once, in bytes: its weights, and `canvases` canvases of `rows` rows each (`canvas` in all). */
export interface MemoryNeed {
  readonly weights: number;
  readonly canvas: number;
  readonly rows: number;
  readonly canvases: number;
}

/** The refusal of a run that needs more than `limit`, naming both figures; undefined when it fits. */
export function memoryRefusal(need: MemoryNeed, limit: MemoryLimit, fix: string): string | undefined {
  const total = need.weights + need.canvas;
  if (total <= limit.bytes) return undefined;
  const canvases =
    need.canvases === 1 ? 'a canvas' : `${need.canvases.toLocaleString('en-US')} canvases in a batch`;
  return (
    `this run needs about ${formatBytes(total)} (weights ${formatBytes(need.weights)}, ${canvases} of ` +
    `${need.rows.toLocaleString('en-US')} rows ${formatBytes(need.canvas)}), more than the ` +
    `${formatBytes(limit.bytes)} of ${limit.source}; ${fix}`
  );
}

/**
 * FLOP/s each backend sustains on the bundled model's forward passes, measured on a 2-core
 * machine: the float64 reference interpreter about 0.7 GFLOP/s, the CPU backend about 20 GFLOP/s
 * on one thread. The GPU backends are assumed no slower than the CPU backend.
 */
const typicalFlopRate: Readonly<Record<string, number>> = {
  reference: 0.7e9,
  cpu: 20e9,
  webgpu: 20e9,
  ptx: 20e9,
};

/** Runs expected to take longer than this print their estimate before they start. */
const announceSeconds = 5;

const units: readonly [number, string][] = [
  [1e15, 'P'],
  [1e12, 'T'],
  [1e9, 'G'],
  [1e6, 'M'],
];

/** `1.2 TFLOP`, `350 MFLOP`. */
export function formatFlops(n: number): string {
  const [scale, prefix] = units.find(([s]) => n >= s) ?? [1, ''];
  const x = n / scale;
  return `${x >= 100 ? x.toFixed(0) : x.toPrecision(2)} ${prefix}FLOP`;
}

/** `40 s`, `12 min`, `3.5 h`, `160 days`. */
export function formatDuration(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${(seconds / 3600).toPrecision(2)} h`;
  return `${Math.round(seconds / 86400).toLocaleString('en-US')} days`;
}

/**
 * The line a command prints before a run whose forward passes (at most `flops`) would take longer
 * than `announceSeconds` at the backend's typical rate; undefined for a shorter run. `what`
 * describes the run (`3 plans × 200 cases, at most 64 steps each on 2-layer models`).
 */
export function estimateLine(
  command: string,
  what: string,
  flops: number,
  backend: string,
): string | undefined {
  const rate = typicalFlopRate[backend] ?? (typicalFlopRate.cpu as number);
  const seconds = flops / rate;
  if (seconds < announceSeconds) return undefined;
  return (
    `${command}: ${what}: at most ${formatFlops(flops)}, up to about ${formatDuration(seconds)} at the ` +
    `${backend} backend's typical ${formatFlops(rate).replace('FLOP', 'FLOP/s')}\n`
  );
}
