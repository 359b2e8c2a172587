/**
 * What `generate`, `eval` and `verify` check before they start (docs/cli.md, "Work estimates and
 * limits"): the canvas within the largest a command accepts, the memory within the machine's, and
 * one line estimating the work when it is long. Everything here is computed from declared sizes;
 * nothing is allocated.
 */
import { statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { canvasBound } from '../eval/evaluate.ts';
import type { Problem } from '../eval/tasks.ts';
import type { ModelConfig } from '../model/config.ts';
import { layerPrefix, parameterCount, storedForm } from '../model/weights.ts';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';
import type { OpenedModel } from '../runtime/openModel.ts';
import {
  backendMemory,
  canvasBytes,
  estimateLine,
  forwardFlops,
  type MemoryLimit,
  type MemoryNeed,
  memoryRefusal,
} from '../runtime/workEstimate.ts';
import { parseByteSize } from './byteSize.ts';
import { Exit, type Io } from './io.ts';

/**
 * `KVPLAN_MEMORY_LIMIT` when set (a size such as `8GiB`), else the machine's memory, or the
 * container's limit when that is lower.
 */
function memoryLimit(): MemoryLimit | { readonly bad: string } {
  const set = process.env.KVPLAN_MEMORY_LIMIT;
  if (set !== undefined && set !== '') {
    const bytes = parseByteSize(set);
    return bytes === undefined
      ? { bad: `KVPLAN_MEMORY_LIMIT must be a size such as 8GiB or 500MB (got '${set}')` }
      : { bytes, source: `KVPLAN_MEMORY_LIMIT=${set}` };
  }
  const machine = totalmem();
  const container = process.constrainedMemory?.() ?? 0;
  return container > 0 && container < machine
    ? { bytes: container, source: "this container's memory limit" }
    : { bytes: machine, source: "this machine's memory" };
}

const count = (n: number): string => n.toLocaleString('en-US');

/**
 * Refuses (exit 2) a canvas of more than `maxCanvasPositions` positions: `prompt` positions plus
 * `generated`; `fix` says which options make it shorter. True when it fits.
 */
export function canvasFits(prompt: number, generated: number, fix: string, io: Io): boolean {
  const rows = prompt + generated;
  if (rows <= maxCanvasPositions) return true;
  io.err(
    `kvplan: the canvas would hold ${count(prompt)} prompt + ${count(generated)} generated = ${count(rows)} positions; ` +
      `kvplan runs at most ${count(maxCanvasPositions)} (${fix})\n`,
  );
  return false;
}

/**
 * What a generation on an opened model holds: its weights in host memory (an ONNX file's float32
 * copy, and the CPU backend's packed copy; the GPU backends hold theirs on the device, the
 * reference interpreter widens one tensor at a time), and `canvases` canvases of `rows` rows.
 */
export function runMemory(model: OpenedModel, backend: string, rows: number, canvases: number): MemoryNeed {
  const c = model.config;
  const half = storedForm(model.weights, `${layerPrefix(0)}.self_attn.q_proj.weight`)?.half;
  const checkpoint = statSync(model.path).isDirectory();
  const stored = backendMemory(c, half, checkpoint ? 0 : parameterCount(c) * 4);
  return {
    weights: stored.host + (backend === 'cpu' ? stored.cpu : 0),
    canvas: canvases * canvasBytes(c, rows, backend === 'reference' ? 8 : 4),
    rows,
    canvases,
  };
}

/**
 * What `runs` generations of each problem on a model cost at most, each over `rowsPerPrompt`
 * generated rows (and so at most that many steps) after its prompt: the rows of one sequence's
 * canvas, the FLOPs, and the memory of `batch` canvases at once.
 */
export function generationsCost(
  model: OpenedModel,
  problems: readonly Problem[],
  rowsPerPrompt: number,
  runs: number,
  o: { readonly batch: number; readonly backend: string },
): { rows: number; flops: number; memory: MemoryNeed } {
  const rows = canvasBound(problems, model.tokenizer, rowsPerPrompt, 1);
  return {
    rows,
    flops: runs * problems.length * rowsPerPrompt * forwardFlops(model.config, rows),
    memory: runMemory(model, o.backend, rows, Math.min(o.batch, problems.length)),
  };
}

export interface RunCost {
  /** The command, as the estimate line starts. */
  readonly command: string;
  /** The run in words: `50 problems, at most 64 steps each on a 4-layer model`. */
  readonly what: string;
  /** The rate the time is estimated at. */
  readonly backend: string;
  /** At most this many FLOPs of forward passes. */
  readonly flops: number;
  readonly memory: MemoryNeed;
  /** How to ask for less, for a refusal. */
  readonly fix: string;
}

/**
 * Refuses a run that needs more memory than the limit (exit 1, naming both figures) or a bad
 * `KVPLAN_MEMORY_LIMIT` (exit 2); otherwise prints the estimate line of a long run and returns
 * undefined, to go on.
 */
export function checkRunCost(cost: RunCost, io: Io): number | undefined {
  const limit = memoryLimit();
  if ('bad' in limit) {
    io.err(`kvplan: ${limit.bad}\n`);
    return Exit.usage;
  }
  const refusal = memoryRefusal(cost.memory, limit, cost.fix);
  if (refusal !== undefined) {
    io.err(`kvplan: ${cost.command}: ${refusal}\n`);
    return Exit.failed;
  }
  const line = estimateLine(cost.command, cost.what, cost.flops, cost.backend);
  if (line !== undefined) io.err(line);
  return undefined;
}

/** `a 4-layer model`, `2- to 7-layer models`. */
export function modelsWord(configs: readonly ModelConfig[]): string {
  const layers = configs.map((c) => c.layers);
  const lo = Math.min(...layers);
  const hi = Math.max(...layers);
  if (configs.length === 1) return `a ${lo}-layer model`;
  return lo === hi ? `${lo}-layer models` : `${lo}- to ${hi}-layer models`;
}
