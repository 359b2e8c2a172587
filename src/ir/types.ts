/**
 * The kvplan IR: typed SSA programs for one denoising step. A step program is split into stages
 * (embedding, one per layer, head) so that the host may consult the schedule between layers;
 * values cross stages only through named carried values (the hidden state).
 */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32';

/** A dimension: a number, or a symbol — `L` (canvas length), `#name` (size of index list `name`). */
export type Dim = number | string;

export type IRType =
  | { readonly kind: 'tensor'; readonly dtype: DType; readonly shape: readonly Dim[] }
  /** A runtime list of canvas positions, built by the inspector each step (never a constant). */
  | { readonly kind: 'index'; readonly size: Dim };

export interface Value {
  readonly id: number;
  readonly type: IRType;
}

export type AttrValue = number | string | boolean | readonly number[];

export interface Instr {
  readonly op: string;
  readonly results: readonly Value[];
  readonly args: readonly Value[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

/** How a stage input is supplied at run time. */
export type InputRole =
  /** token ids of the canvas, i32[L] */
  | 'tokens'
  /** block index of each position (-1 for the prompt), i32[L] */
  | 'blocks'
  /** the sequence of each position when several sequences share the canvas (a batch), i32[L] */
  | 'seqs'
  /** an index list from the inspector */
  | 'index'
  /** the positions within their own sequence of an index list's rows (what RoPE rotates by) */
  | 'positions'
  /** a model weight, by its HF-style name */
  | 'weight'
  /** a value carried from the previous stage (the hidden state) */
  | 'carried';

export interface Input {
  readonly name: string;
  readonly role: InputRole;
  readonly value: Value;
}

export interface Output {
  readonly name: string;
  readonly value: Value;
}

/** Persistent state that survives from step to step: a cache of one kind for one layer. */
export interface Resource {
  readonly name: string;
  readonly kind: 'kv' | 'attn' | 'ffn' | 'hidden' | 'partial';
  readonly dtype: DType;
  /** Rows first: the first dimension is always the canvas (`L`). */
  readonly shape: readonly Dim[];
}

export interface Stage {
  readonly name: string;
  readonly inputs: readonly Input[];
  readonly body: readonly Instr[];
  readonly outputs: readonly Output[];
}

/** One phase of a plan: the stages of a step and the resources they read and write. */
export interface StepProgram {
  readonly name: string;
  readonly resources: readonly Resource[];
  readonly stages: readonly Stage[];
}

export const tensor = (dtype: DType, shape: readonly Dim[]): IRType => ({ kind: 'tensor', dtype, shape });
export const index = (size: Dim): IRType => ({ kind: 'index', size });

export const printDim = (d: Dim): string => String(d);
export function printType(t: IRType): string {
  return t.kind === 'index' ? `index[${printDim(t.size)}]` : `${t.dtype}[${t.shape.map(printDim).join(',')}]`;
}
export const sameType = (a: IRType, b: IRType): boolean => printType(a) === printType(b);

/** The dims of a value: an index list is one-dimensional. */
export const shapeOf = (t: IRType): readonly Dim[] => (t.kind === 'index' ? [t.size] : t.shape);

/** Elements per row (all dims but the first), which renderers need as a constant. */
export function rowWidth(t: IRType): number | undefined {
  const inner = shapeOf(t).slice(1);
  return inner.every((d) => typeof d === 'number')
    ? inner.reduce<number>((a, d) => a * (d as number), 1)
    : undefined;
}
