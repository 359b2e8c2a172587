import type { HostTensor } from '../ir/tensor.ts';
import type { CachePart } from './cachePart.ts';
import type { Probe } from './probe.ts';

/** Which step program a stage runs from: `lowered.programs` by name. */
export type Program = 'refresh' | 'cached' | 'reuse';

/** The per-row inputs of a canvas; with a batch, the sequences' canvases one after another. */
export interface CanvasRows {
  readonly tokens: Int32Array;
  /** The block of each row within its own sequence (-1 for the prompt). */
  readonly blocks: Int32Array;
  /** The sequence of each row: attention never crosses from one sequence to another. */
  readonly seqs: Int32Array;
}

export interface StepOutput {
  readonly phase: 'refresh' | 'cached';
  /** The program each layer ran, by layer number: a cached step may serve a stored partial (`reuse`). */
  readonly programs: ReadonlyMap<number, Program>;
  /**
   * Rows whose predictions this step recomputed, and their logits [#out, vocab]: absent where the
   * step did not ask for them and the runner left them on its device (HeadOutput).
   */
  readonly out: Int32Array;
  readonly logits?: HostTensor;
  /** The softmax statistics of those rows, when the runner computed them (HeadOutput). */
  readonly stats?: PredictionStats;
}

/**
 * Softmax statistics of rows of logits (src/model/golden.ts softmaxStats): `stats[3r..3r+2]` the
 * confidence, margin and entropy of row r, `argmax[r]` its most likely token, or -1 where the row
 * holds a logit that is not finite.
 */
export interface PredictionStats {
  readonly stats: Float64Array;
  readonly argmax: Int32Array;
}

/** What a step's head stage gives: its logits, and on a backend that computes them, their statistics. */
export interface HeadOutput {
  /**
   * Present when asked for, and always from a runner without statistics. A runner whose logits
   * are on a device and that computed their statistics there leaves them there when not asked
   * for: a real vocabulary's are megabytes a step to copy back.
   */
  readonly logits?: HostTensor;
  /**
   * The softmax statistics of each row, without the mask token (`config.maskTokenId`), from the
   * logits as the backend holds them: computed where the logits are (a native loop, a shader, a
   * kernel), so that a real vocabulary's rows are not looped over in JavaScript at every step.
   */
  readonly stats?: PredictionStats;
}

type Maybe<T> = T | Promise<T>;

/**
 * What runs a plan's step programs, one stage at a time: the reference interpreter, or a compiled
 * backend. The driver (src/runtime/batch.ts) decides every list; a runner only moves data and runs
 * stages, keeping the hidden state of the canvas between calls. Only the rows a stage's lists name
 * change, so that one layer may run as several calls (one per program) over disjoint rows.
 * Backends whose device works asynchronously (WebGPU) return promises.
 */
export interface StepRunner {
  /**
   * Loads the canvas rows and embeds every token. Returns the hidden state when `read` asks for it
   * (scores probe it), so that a backend can fetch it with the stage's own results. The hidden
   * states a step returns (here and from `layer`) stay valid until the next step's embed: a runner
   * may reuse their storage then.
   */
  embed(program: Program, canvas: CanvasRows, read: boolean): Maybe<HostTensor | undefined>;
  /** Runs one layer stage with the given index lists (a list not given is empty). */
  layer(
    program: Program,
    layer: number,
    lists: ReadonlyMap<string, Int32Array>,
    read: boolean,
  ): Maybe<HostTensor | undefined>;
  /**
   * The logits [#out, vocab] of the rows `out`, from the hidden state after the last layer, and
   * their softmax statistics where the backend computes them next to the logits. The logits may be
   * a view of the runner's own storage (a float32Tensor), valid until the runner's next call; with
   * `logits` false (default true) the caller needs only the statistics, and a runner that computes
   * them may leave the logits where they are.
   */
  head(program: Program, out: Int32Array, logits?: boolean): Maybe<HeadOutput>;
  /**
   * A cache part of a layer, for the drift scores that compare fresh values with cached ones. It
   * may be a view of the runner's own storage, valid until the runner's next call.
   */
  cachePart(part: CachePart, layer: number): HostTensor | undefined;
  /** The backend's compiled score probe; without one, probes run on the reference interpreter. */
  readonly probe?: Probe;
  /** Frees what the runner holds on a device; called once its generation is over. */
  release?(): void;
}
