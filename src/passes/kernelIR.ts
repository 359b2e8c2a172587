import type { Cost, KernelKind } from '../ir/ops.ts';
import { type Dim, type DType, type Instr, type IRType, shapeOf } from '../ir/types.ts';

export type { Cost, KernelKind } from '../ir/ops.ts';

/**
 * The target-neutral kernel IR: what renderers (C, WGSL, PTX) turn into code. A phase becomes a
 * linear schedule of kernels over named buffers; each kernel keeps the IR instructions fused into
 * it (so that it can be interpreted and checked) and states its index space and cost.
 */
export type BufferKind =
  /** host-provided each step: token ids, block ids, index lists */
  | 'input'
  /** model weights, read-only, outside the arena */
  | 'weight'
  /** intermediate values; live ranges decide where they sit in the arena */
  | 'temp'
  /** caches and partials that persist across steps; their own region */
  | 'persistent'
  /**
   * a value computed inside one kernel and read only there (Kernel.locals): stored only by a
   * backend that runs a kernel's instructions as separate dispatches (WebGPU), which the
   * whole-buffer memory plan gives them slots for
   */
  | 'local';

export interface Buffer {
  readonly name: string;
  readonly kind: BufferKind;
  readonly dtype: DType;
  /** Rows first; `L` is the canvas, `#name` an index list's length. */
  readonly shape: readonly Dim[];
  /** Memory layout chosen by the layout pass and realised by the backends: `row-major`, `packed-k16`, `k-major`. */
  readonly layout: string;
}

export interface Kernel {
  readonly name: string;
  readonly kind: KernelKind;
  /** The stage (layer) this kernel belongs to. */
  readonly stage: string;
  readonly reads: readonly string[];
  readonly writes: readonly string[];
  /** The iteration space, outermost first, e.g. [`#rows.0`, 96] for a GEMM producing 96 columns. */
  readonly grid: readonly Dim[];
  /** Gathers folded into the kernel's loads (indirect rows): the index lists it reads through. */
  readonly indirect: readonly string[];
  /** Operations fused after the main one, in order (bias, rope, swiglu, residual, scatter, merge, …). */
  readonly epilogue: readonly string[];
  /**
   * Merges computed inside an attention of this kernel, as its LSE-merge epilogue: `attention` and
   * `merge` are the ids of their first results. A merge folds when it merges exactly that attention's
   * partial, which nothing else reads, with one that exists before the attention runs; the merged
   * result is then written where the merge's would be, and the partial never materialises.
   */
  readonly folds?: readonly MergeFold[];
  /** Its `local` buffers (`%id`): values it computes and reads itself, between its loads and stores. */
  readonly locals?: readonly string[];
  /** Floating-point operations and bytes moved, as functions of the dims (see cost.ts). */
  readonly flops: Cost;
  readonly bytes: Cost;
  /** The IR instructions this kernel computes, in order. */
  readonly instrs: readonly Instr[];
  /**
   * Buffer names of the stage inputs the instructions read, by value id (any other value `v` is
   * the buffer `%v.id`): a weight or an index list by its own name, a carried value by the buffer
   * of the earlier stage's output that carries it.
   */
  readonly homes?: ReadonlyMap<number, string>;
}

export interface MergeFold {
  readonly attention: number;
  readonly merge: number;
}

export interface KernelProgram {
  readonly name: string;
  readonly buffers: readonly Buffer[];
  readonly kernels: readonly Kernel[];
}

/** Evaluates a cost for concrete sizes of the symbolic dims. */
export function evalCost(c: Cost, size: (d: Dim) => number): number {
  return c.reduce((sum, [coef, ...dims]) => sum + dims.reduce<number>((p, d) => p * size(d), coef), 0);
}

export const dtypeBytes: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4 };

/** The bytes of a value of type t, as a cost term: its element size times its dims. */
export const typeBytes = (t: IRType): [number, ...Dim[]] => [
  t.kind === 'index' ? 4 : dtypeBytes[t.dtype],
  ...shapeOf(t),
];
