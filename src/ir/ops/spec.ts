import type { HostInts, HostTensor, RuntimeValue } from '../tensor.ts';
import { type AttrValue, type Dim, type IRType, printType, tensor } from '../types.ts';

export type AttrKind = 'number' | 'string' | 'boolean' | 'numbers';

/** A cost as a sum of products of dims and constants: [[coef, dim, dim, …], …]. */
export type Cost = readonly (readonly [number, ...Dim[]])[];

export type KernelKind = 'embed' | 'norm' | 'gemm' | 'attention' | 'elementwise' | 'copy' | 'logits';

/** Where the fusion pass puts an op. */
export type Fusion =
  /** Opens a kernel of this kind. */
  | { readonly anchor: KernelKind }
  /** Moves no data: folded into the loads of whichever kernel consumes the result. */
  | { readonly view: 'load' }
  /**
   * Moves no data: joins the kernel that produces its first operand (named in that kernel's
   * epilogue when `epilogue` is set), or folds into its consumers' loads when no kernel does.
   */
  | { readonly view: 'result'; readonly epilogue?: string }
  /** Joins the kernel of its latest producer as an epilogue, or opens a kernel of this kind alone. */
  | { readonly alone: KernelKind };

/**
 * What the interpreter hands an op's evaluator: its operands, checked on access, and the resource
 * store. The operand count and attribute kinds are checked before the evaluator runs.
 */
export interface OpContext {
  readonly op: string;
  readonly attrs: Readonly<Record<string, AttrValue>>;
  /** How many operands the instruction has (optional ones may be missing). */
  readonly count: number;
  /** The canvas length. */
  readonly L: number;
  fail(detail: string): never;
  arg(i: number): RuntimeValue;
  float(i: number, rank?: number): HostTensor;
  ints(i: number, rank?: number): HostInts;
  list(i: number): Int32Array;
  num(name: string): number;
  str(name: string): string;
  same(a: HostTensor, b: HostTensor, what: string): void;
  /** Fails unless every entry lies in [0, bound) (the canvas by default). */
  positions(list: Int32Array, what: string, bound?: number): void;
  /** The live tensor of a resource: writes to it are visible to later reads. */
  resource(name: string): HostTensor;
}

/**
 * Every fact about one operation of the IR, in one place: its operands, attributes, result types,
 * meaning (`doc` and `interpret`), cost and fusion class. Backends add one emitter each.
 */
export interface OpSpec {
  /** Operand names; a trailing `?` marks an optional operand (only last ones may be optional). */
  readonly args: readonly string[];
  readonly attrs: Readonly<Record<string, AttrKind>>;
  readonly optionalAttrs?: Readonly<Record<string, AttrKind>>;
  /** Ops with an effect (cache writes) have no results and are never removed as dead. */
  readonly effect?: boolean;
  /** Two-operand ops whose operands commute: canonicalization orders them so that CSE sees one form. */
  readonly commutative?: boolean;
  /** The result types, or a message saying what is wrong with the operands. */
  readonly results: (
    args: readonly IRType[],
    attrs: Readonly<Record<string, AttrValue>>,
  ) => IRType[] | string;
  readonly doc: string;
  /** The float64 reference semantics: evaluates the op exactly as `doc` says. */
  readonly interpret: (c: OpContext) => RuntimeValue[];
  /** Floating-point work, given the shape of the first result (a tensor) and the operand types. */
  readonly flops?: (
    result: readonly Dim[],
    args: readonly IRType[],
    attrs: Readonly<Record<string, AttrValue>>,
  ) => Cost;
  readonly fusion: Fusion;
  /**
   * Operands a kernel reads row by row through the index list of a gather feeding them (every
   * backend folds such a gather into its loads); a gather feeding any other operand is materialised.
   */
  readonly listLoads?: readonly number[];
}

export type T = Extract<IRType, { kind: 'tensor' }>;
export const isTensor = (t: IRType | undefined): t is T => t?.kind === 'tensor';
export const sameDim = (a: Dim | undefined, b: Dim | undefined): boolean => a === b;
export const rank = (t: T, n: number) => t.shape.length === n;
export const show = (t: IRType | undefined) => (t ? printType(t) : 'nothing');
export const f32 = (shape: readonly Dim[]) => tensor('f32', shape);

class TypeMismatch extends Error {}

export function need(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new TypeMismatch(msg);
}

/** Wraps a result rule so that `need` failures become messages. */
export const rule =
  (f: (a: readonly IRType[], attrs: Readonly<Record<string, AttrValue>>) => IRType[]) =>
  (a: readonly IRType[], attrs: Readonly<Record<string, AttrValue>>): IRType[] | string => {
    try {
      return f(a, attrs);
    } catch (e) {
      if (e instanceof TypeMismatch) return e.message;
      throw e;
    }
  };
