import { ops } from '../ir/ops.ts';
import type { Dim, Input, Instr, Output, Stage, Value } from '../ir/types.ts';
import { rowWidth, shapeOf } from '../ir/types.ts';
import type { Buffer, Kernel, KernelProgram } from '../passes/kernelIR.ts';
import type { MemoryPlan } from '../passes/memory.ts';

/**
 * The render walk every backend shares, after tinygrad's renderers: the walk decides what a kernel
 * program means for storage (where each value lives, which gathers fold into their consumers'
 * loads, which values must be materialized because another kernel reads them), and a backend only
 * says, in a table of per-op emitters and a `Target`, how one instruction and one location are
 * spelled (C expressions, WGSL buffer keys, PTX slots and offsets).
 *
 * Views cost nothing on any backend, so the walk renders them itself: a reshape aliases its operand,
 * a gather of canvas rows stays folded (read through its index list) until a consumer needs a plain
 * buffer, and a cache read is the resource's own storage.
 */

/** A gather folded into its consumers' loads: the rows listed in `rows` of `base`. */
export interface Gather<L> {
  readonly base: L;
  readonly rows: L;
}

/**
 * What a backend supplies besides its emitters, one per stage; `L` is its notion of a location (a
 * C expression, a buffer key, a slot and offset).
 */
export abstract class Target<L> {
  /** How messages name the backend ("the CPU backend"). */
  abstract readonly backend: string;
  constructor(readonly maxCanvas: number) {}
  abstract error(message: string): Error;
  /** The long-lived buffer behind a stage input. */
  abstract slot(s: InputSlot): L;
  /** Where a value carried from the previous stage of the phase arrives. */
  abstract carried(name: string): L;
  /** The storage of a persistent resource (a cache, a reused partial). */
  abstract resource(name: string): L;
  /** Called as the walk enters each kernel of the stage, in schedule order. */
  abstract enter(k: Kernel): void;
  /**
   * Where the current kernel leaves `v`. `view` is a reshape of `v` that the kernel writes in its
   * place (the attention output, written as its flattened view): the memory plan may have given
   * the view, not `v`, its buffer.
   */
  abstract place(v: Value, view?: Value): L;
  /** Copies the rows a folded gather reads into `out`, for a consumer that cannot read through a list. */
  abstract gather(v: Value, g: Gather<L>, out: L): void;

  /** Elements per row, which every backend needs as a constant. */
  w(v: Value): number {
    const w = rowWidth(v.type);
    if (w === undefined)
      throw this.error(`inner dimensions must be constants: ${JSON.stringify(shapeOf(v.type).slice(1))}`);
    return w;
  }
  /**
   * A norm's vectors: each row of `v` holds `per` vectors of `d` elements (one per head of a
   * [rows, heads, headDim] q/k norm, else one); a gathered operand has one.
   */
  normed(v: Value, gathered: boolean): { readonly per: number; readonly d: number } {
    const d = shapeOf(v.type).at(-1);
    if (typeof d !== 'number') throw this.error('the normalised dimension must be a constant');
    const per = this.w(v) / d;
    if (gathered && per !== 1) throw this.error('a per-head norm cannot read its rows through a list');
    return { per, d };
  }
  /** The most elements `v` holds: symbolic row counts are bounded by the canvas. */
  elements(v: Value): number {
    const d = rowsDim(v);
    return (typeof d === 'number' ? d : this.maxCanvas) * this.w(v);
  }
}

type Emitter<L, T extends Target<L>> = (ins: Instr, c: Walk<L>, t: T) => void;
export type Emitters<L, T extends Target<L>> = Readonly<Record<string, Emitter<L, T>>>;

/**
 * Pointwise ops (every output element a function of the same element of each operand and of the
 * op's numeric attributes) have no emitter of their own: a backend spells the function in its
 * pointwise table, and its one generic pointwise emitter renders every entry. Adding such an op to
 * a backend is one table entry.
 */
export function pointwiseEmitters<L, T extends Target<L>>(
  table: Readonly<Record<string, unknown>>,
  emit: Emitter<L, T>,
): Emitters<L, T> {
  return Object.fromEntries(Object.keys(table).map((op) => [op, emit]));
}

/** What the generic pointwise kernels of a backend are made from: the op's operand count and numeric attributes. */
export interface PointwiseSignature {
  readonly arity: number;
  /** Numeric attributes in the order the op declares them: uniform or kernel parameters, or literals. */
  readonly attrs: readonly string[];
}

export function pointwiseSignature(op: string): PointwiseSignature {
  const spec = ops[op];
  if (!spec) throw new Error(`no op '${op}' in the catalogue`);
  if (spec.args.some((a) => a.endsWith('?')) || spec.optionalAttrs)
    throw new Error(`pointwise op '${op}' may not have optional operands or attributes`);
  const attrs = Object.entries(spec.attrs).map(([name, kind]) => {
    if (kind !== 'number') throw new Error(`pointwise op '${op}': attribute ${name} is not a number`);
    return name;
  });
  return { arity: spec.args.length, attrs };
}

/** The values of a pointwise instruction's numeric attributes, in signature order. */
export const pointwiseAttrs = (ins: Instr): number[] =>
  pointwiseSignature(ins.op).attrs.map((a) => Number(ins.attrs[a]));

export const product = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);
const roundUp = (n: number, align: number): number => Math.ceil(n / align) * align;

/** The walk's state over one stage: where each value is, as the emitters see it. */
export class Walk<L> {
  readonly loc = new Map<number, L>();
  readonly lazy = new Map<number, Gather<L>>();
  /** Instructions an emitter folded into an earlier one (a merge into attention's epilogue). */
  readonly done = new Set<Instr>();
  /** The kernel being rendered, and its instructions after the one being rendered. */
  kernel?: Kernel;
  rest: readonly Instr[] = [];
  private useCounts?: Map<number, number>;
  /** The reshape of each value the stage reshapes. */
  private readonly views = new Map<number, Value>();

  private readonly buffers: ReadonlyMap<string, Buffer>;

  constructor(
    readonly stage: Stage,
    private readonly t: Target<L>,
    kp: KernelProgram,
  ) {
    this.buffers = new Map(kp.buffers.map((b) => [b.name, b]));
    for (const ins of stage.body)
      if (ins.op === 'reshape' && ins.args[0] && ins.results[0])
        this.views.set(ins.args[0].id, ins.results[0]);
  }

  has(v: Value): boolean {
    return this.loc.has(v.id) || this.lazy.has(v.id);
  }
  bind(v: Value, l: L): L {
    this.loc.set(v.id, l);
    return l;
  }
  /** Places `v` where the current kernel leaves it and records that it is there. */
  out(v: Value): L {
    return this.bind(v, this.t.place(v, this.views.get(v.id)));
  }
  ptr(v: Value): L {
    const l = this.loc.get(v.id);
    if (l !== undefined) return l;
    if (this.lazy.has(v.id))
      throw this.t.error(`%${v.id} is a folded gather used where a plain buffer is needed`);
    throw this.t.error(`no location for %${v.id}`);
  }
  /** `v` as a plain buffer: a folded gather becomes a real copy here. */
  plain(v: Value): L {
    const g = this.lazy.get(v.id);
    if (!g) return this.ptr(v);
    const out = this.t.place(v);
    this.t.gather(v, g, out);
    this.loc.set(v.id, out);
    this.lazy.delete(v.id);
    return out;
  }
  gathered(v: Value): Gather<L> | undefined {
    return this.lazy.get(v.id);
  }
  /** The keys and values of an attention, which every backend reads through their index lists. */
  keysValues(ins: Instr): readonly [Gather<L>, Gather<L>] {
    const k = this.gathered(this.arg(ins, 1));
    const v = this.gathered(this.arg(ins, 2));
    if (!k || !v) throw this.t.error('attention expects its keys and values gathered from the canvas');
    return [k, v];
  }
  /**
   * The weight input `v` is, if it is one, with the layout the layout pass chose for the target:
   * the form GEMM kernels read it in, which every backend realises (a weight other kernels read
   * too, the tied embedding table, keeps its row-major form beside it).
   */
  weight(
    v: Value,
  ): { readonly name: string; readonly shape: readonly number[]; readonly layout: string } | undefined {
    const i = this.stage.inputs.find((x) => x.role === 'weight' && x.value.id === v.id);
    if (i?.value.type.kind !== 'tensor') return undefined;
    const layout = this.buffers.get(i.name)?.layout;
    if (layout === undefined) throw this.t.error(`weight ${i.name} is not a buffer of the kernel program`);
    return { name: i.name, shape: i.value.type.shape as number[], layout };
  }
  /** The weight a GEMM reads, which must be in the layout this backend's GEMM kernel reads. */
  gemmWeight(ins: Instr, layout: string) {
    const w = this.weight(this.arg(ins, 1));
    if (w?.shape.length !== 2) throw this.t.error(`${ins.op} needs a 2-D weight operand`);
    if (w.layout !== layout)
      throw this.t.error(
        `${ins.op} ${w.name}: the layout pass chose ${w.layout}, the ${this.t.backend} GEMM reads ${layout}`,
      );
    return w;
  }
  /** How many times the stage reads `v` (outputs count). */
  uses(v: Value): number {
    if (!this.useCounts) {
      const n = new Map<number, number>();
      for (const ins of this.stage.body) for (const a of ins.args) n.set(a.id, (n.get(a.id) ?? 0) + 1);
      for (const o of this.stage.outputs) n.set(o.value.id, (n.get(o.value.id) ?? 0) + 1);
      this.useCounts = n;
    }
    return this.useCounts.get(v.id) ?? 0;
  }
  arg(ins: Instr, i: number): Value {
    const v = ins.args[i];
    if (!v) throw this.t.error(`${ins.op}: missing operand`);
    return v;
  }
}

export const rowsDim = (v: Value): Dim => shapeOf(v.type)[0] as Dim;
/**
 * Renders the kernels of one stage in schedule order. An instruction whose results an earlier
 * kernel already placed (a view folded there) is skipped; effects (cache writes) always run. Values
 * other kernels read are materialized before the next kernel starts.
 */
export function walkStage<L, T extends Target<L>>(
  stage: Stage,
  kp: KernelProgram,
  t: T,
  emitters: Emitters<L, T>,
  phase?: string,
): Walk<L> {
  const c = new Walk<L>(stage, t, kp);
  for (const i of stage.inputs) {
    if (i.role === 'weight' && i.value.type.kind !== 'tensor')
      throw t.error(`weight ${i.name} is not a tensor`);
    const s = inputSlot(i, t.maxCanvas);
    c.bind(i.value, s ? t.slot(s) : t.carried(i.name));
  }
  const where = (k: Kernel, ins: Instr) =>
    `${phase === undefined ? '' : `phase ${phase}, `}stage ${stage.name}, kernel ${k.name}, instruction ${ins.results.map((r) => `%${r.id}`).join(', ') || '(effect)'} = ${ins.op}`;
  for (const k of kp.kernels.filter((x) => x.stage === stage.name)) {
    t.enter(k);
    c.kernel = k;
    k.instrs.forEach((ins, at) => {
      if (c.done.has(ins)) return;
      if (ins.results.length > 0 && ins.results.every((r) => c.has(r))) return;
      c.rest = k.instrs.slice(at + 1);
      try {
        renderInstr(ins, c, t, emitters);
      } catch (e) {
        // An error names where it arose: the target, phase, stage, kernel and instruction.
        if (!(e instanceof Error)) throw e;
        throw Object.assign(t.error(`${t.backend} backend, ${where(k, ins)}: ${e.message}`), { cause: e });
      }
    });
    for (const ins of k.instrs)
      for (const r of ins.results) if (k.writes.includes(`%${r.id}`) && c.lazy.has(r.id)) c.plain(r);
  }
  return c;
}

function renderInstr<L, T extends Target<L>>(ins: Instr, c: Walk<L>, t: T, emitters: Emitters<L, T>): void {
  const r0 = ins.results[0] as Value;
  switch (ins.op) {
    case 'reshape': {
      const g = c.gathered(c.arg(ins, 0));
      if (g) c.lazy.set(r0.id, g);
      else c.bind(r0, c.ptr(c.arg(ins, 0)));
      return;
    }
    case 'gather':
      if (c.arg(ins, 0).type.kind === 'index')
        throw t.error(`gathering an index list is not supported by the ${t.backend} backend`);
      c.lazy.set(r0.id, { base: c.plain(c.arg(ins, 0)), rows: c.ptr(c.arg(ins, 1)) });
      return;
    case 'cache_read':
      c.bind(r0, t.resource(String(ins.attrs.resource)));
      return;
  }
  const emit = emitters[ins.op];
  if (!emit) throw t.error(`the ${t.backend} backend has no rendering for op '${ins.op}'`);
  emit(ins, c, t);
}

/**
 * A phase's arena as the memory plan lays it out, for backends that place values at its offsets
 * (C, PTX): planned temps at their offsets, anything else a kernel needs in a scratch area after
 * the plan's peak, reused by the next kernel. Offsets are in units of `unitBytes`.
 */
export class Arena {
  private readonly planned = new Map<string, number>();
  /** Values the memory plan puts where their scatter's base was (MemoryPlan.aliases). */
  private readonly aliased: ReadonlySet<string>;
  /** Output name → the value that carries it to the next stage of the phase. */
  private readonly carried = new Map<string, string>();
  private readonly base: number;
  private scratch: number;
  private kernel?: Kernel;
  /** The size of the arena this phase needs, scratch included, in units. */
  high: number;

  constructor(
    mem: MemoryPlan,
    private readonly unitBytes: number,
    private readonly align: number,
    private readonly error: (message: string) => Error,
  ) {
    for (const [name, place] of mem.arena) this.planned.set(name, place.offset / unitBytes);
    this.aliased = new Set(mem.aliases?.keys() ?? []);
    this.base = roundUp(mem.peakBytes / unitBytes, align);
    this.scratch = this.base;
    this.high = this.base;
  }

  enter(k: Kernel): void {
    this.kernel = k;
    this.scratch = this.base;
  }
  /**
   * Where the current kernel leaves `v`, a value of `elements()` 32-bit elements at most: its
   * planned place, or its view's when the kernel writes the view. Anything else goes to scratch,
   * which the next kernel reuses, so a value another kernel reads must never land there (the
   * attention output once did, and the output projection then ran in place over it).
   */
  place(v: Value, elements: () => number, view?: Value): number {
    const planned = (x: Value | undefined) =>
      x && this.kernel?.writes.includes(`%${x.id}`) ? this.planned.get(`%${x.id}`) : undefined;
    const off = planned(v) ?? planned(view);
    if (off !== undefined) return off;
    const here = this.scratch;
    this.scratch += roundUp((elements() * 4) / this.unitBytes, this.align);
    this.high = Math.max(this.high, this.scratch);
    return here;
  }
  /** Whether the scatter result `v` lives where its base does: its rows but the scattered are there. */
  inPlace(v: Value): boolean {
    return this.aliased.has(`%${v.id}`);
  }
  input(name: string): number {
    const buffer = this.carried.get(name);
    const off = buffer === undefined ? undefined : this.planned.get(buffer);
    if (off === undefined) throw this.error(`carried ${name} has no planned buffer`);
    return off;
  }
  /** Where a stage leaves its outputs, recorded for the stages after it. */
  outputs(stage: Stage): Record<string, number> {
    const out: Record<string, number> = {};
    for (const o of stage.outputs) out[o.name] = this.output(stage, o);
    return out;
  }
  private output(stage: Stage, o: Output): number {
    const name = `%${o.value.id}`;
    const off = this.planned.get(name);
    if (off === undefined) throw this.error(`output ${o.name} of ${stage.name} has no planned buffer`);
    this.carried.set(o.name, name);
    return off;
  }
}

/** The bytes the memory plans give a persistent resource. */
export function persistentBytes(
  memory: ReadonlyMap<string, MemoryPlan>,
  name: string,
  error: (message: string) => Error,
): number {
  for (const m of memory.values()) {
    const place = m.persistent.get(name);
    if (place) return place.bytes;
  }
  throw error(`resource ${name} has no place in the memory plan`);
}

/** A stage input other than a carried value: the long-lived buffer it is, by kind. */
export interface InputSlot {
  readonly name: string;
  readonly kind: 'weight' | 'list' | 'tokens' | 'blocks' | 'seqs';
  readonly elements: number;
  readonly dtype: 'f32' | 'i32';
  readonly shape?: readonly number[];
  /** The symbolic size the input brings (an index list's length `#name`). */
  readonly size?: string;
}

/** The buffer behind a stage input; lists, tokens and masks hold one entry per canvas row. */
function inputSlot(i: Input, maxCanvas: number): InputSlot | undefined {
  const t = i.value.type;
  switch (i.role) {
    case 'weight': {
      const shape = t.kind === 'tensor' ? (t.shape as number[]) : [];
      return { name: i.name, kind: 'weight', elements: product(shape), dtype: 'f32', shape };
    }
    case 'index':
      return { name: `list:${i.name}`, kind: 'list', elements: maxCanvas, dtype: 'i32', size: `#${i.name}` };
    case 'positions':
      // Sized by the list whose rows it gives positions of (its type says which).
      return { name: `list:${i.name}`, kind: 'list', elements: maxCanvas, dtype: 'i32' };
    case 'tokens':
      return { name: 'tokens', kind: 'tokens', elements: maxCanvas, dtype: 'i32' };
    case 'blocks':
    case 'seqs':
      return { name: i.role, kind: i.role, elements: maxCanvas, dtype: 'i32' };
    case 'carried':
      return undefined;
  }
}
