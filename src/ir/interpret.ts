/**
 * The float64 reference interpreter of the IR: the semantics every backend is judged against.
 * It runs each op's `interpret` (its entry under ops/, exactly as its `doc` says), and checks at
 * run time that every value has the shape its declared type gives (numbers equal; each symbolic
 * dimension bound to one size per stage; `L` is the canvas length of the resource store).
 */
import { type AttrKind, type OpContext, ops } from './ops.ts';
import {
  type HostInts,
  type HostTensor,
  isHostInts,
  isHostTensor,
  isIndexList,
  type RuntimeValue,
  sizeOf,
} from './tensor.ts';
import type { AttrValue, Dim, Instr, IRType, Resource, Stage, Value } from './types.ts';

export { rope } from './ops/layer.ts';
export type { HostInts, HostTensor, RuntimeValue } from './tensor.ts';

export class InterpretError extends Error {
  constructor(
    readonly stage: string,
    /** Index of the instruction in the stage body; undefined for inputs and outputs. */
    readonly instr: number | undefined,
    readonly op: string | undefined,
    readonly detail: string,
  ) {
    const where = instr === undefined ? '' : `, instruction ${instr}${op === undefined ? '' : ` (${op})`}`;
    super(`stage '${stage}'${where}: ${detail}`);
    this.name = 'InterpretError';
  }
}

/** Persistent caches, one float64 tensor per resource, rows first (the canvas, `L`). */
export class ResourceStore {
  readonly L: number;
  private readonly specs = new Map<string, Resource>();
  private readonly tensors = new Map<string, HostTensor>();

  constructor(resources: readonly Resource[], dims: { readonly L: number }) {
    if (!(Number.isInteger(dims.L) && dims.L >= 0))
      throw new Error(`canvas length must be a natural number, got ${dims.L}`);
    this.L = dims.L;
    for (const r of resources) {
      if (this.specs.has(r.name)) throw new Error(`resource '${r.name}' is declared twice`);
      if (r.dtype === 'i32') throw new Error(`resource '${r.name}': caches hold floats, not i32`);
      if (r.shape[0] !== 'L') throw new Error(`resource '${r.name}': the first dimension must be L`);
      const shape = r.shape.map((d) => {
        if (d === 'L') return dims.L;
        if (typeof d === 'number' && Number.isInteger(d) && d >= 0) return d;
        throw new Error(`resource '${r.name}': dimension ${String(d)} is neither L nor a number`);
      });
      this.specs.set(r.name, r);
      this.tensors.set(r.name, { shape, data: new Float64Array(sizeOf(shape)) });
    }
    this.reset();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  spec(name: string): Resource {
    const r = this.specs.get(name);
    if (r === undefined) throw new Error(`no resource '${name}'`);
    return r;
  }

  /** The live tensor of a resource (writes to it are visible to later reads). */
  get(name: string): HostTensor {
    const t = this.tensors.get(name);
    if (t === undefined) throw new Error(`no resource '${name}'`);
    return t;
  }

  /** Fills every resource with NaN, so that reading a row no step wrote poisons results visibly. */
  reset(): void {
    for (const t of this.tensors.values()) t.data.fill(Number.NaN);
  }
}

type Fail = (detail: string) => never;

/** Binds symbolic dimensions to sizes and checks runtime values against declared types. */
class Shapes {
  private readonly dims = new Map<string, number>();
  constructor(L: number) {
    this.dims.set('L', L);
  }

  private dim(d: Dim, actual: number, what: string, fail: Fail): void {
    if (typeof d === 'number') {
      if (d !== actual) fail(`${what}: declared ${d}, got ${actual}`);
      return;
    }
    const bound = this.dims.get(d);
    if (bound === undefined) this.dims.set(d, actual);
    else if (bound !== actual) fail(`${what}: ${d} is ${bound} in this stage, got ${actual}`);
  }

  check(type: IRType, v: RuntimeValue, what: string, fail: Fail): void {
    if (type.kind === 'index') {
      if (!isIndexList(v)) fail(`${what}: expected an index list, got a tensor`);
      this.dim(type.size, v.length, `${what} length`, fail);
      return;
    }
    if (isIndexList(v)) fail(`${what}: expected a ${type.dtype} tensor, got an index list`);
    if (type.dtype === 'i32' && !isHostInts(v)) fail(`${what}: expected an i32 tensor, got a float tensor`);
    if (type.dtype !== 'i32' && !isHostTensor(v))
      fail(`${what}: expected a ${type.dtype} tensor, got an i32 tensor`);
    const shape = `[${v.shape.join(',')}]`;
    if (v.shape.length !== type.shape.length)
      fail(`${what}: declared rank ${type.shape.length}, got shape ${shape}`);
    if (v.data.length !== sizeOf(v.shape)) fail(`${what}: ${v.data.length} values do not fill ${shape}`);
    type.shape.forEach((d, i) => {
      this.dim(d, v.shape[i] as number, `${what} dimension ${i} of ${shape}`, fail);
    });
  }
}

const attrKindOk = (kind: AttrKind, v: AttrValue): boolean =>
  kind === 'numbers' ? Array.isArray(v) && v.every((x) => typeof x === 'number') : typeof v === kind;

/**
 * Runs one stage. `inputs` maps each stage input's name to its value (extra entries are ignored);
 * the result maps each stage output's name to its value. Cache writes go to `resources`.
 * With `float32`, every float result is rounded to float32 as it is produced: the eager float32
 * evaluation whose error against the float64 result sets the error budget of float32 backends.
 */
export function interpretStage(
  stage: Stage,
  inputs: ReadonlyMap<string, RuntimeValue>,
  resources: ResourceStore,
  opts: { readonly float32?: boolean } = {},
): Map<string, RuntimeValue> {
  const shapes = new Shapes(resources.L);
  const env = new Map<number, RuntimeValue>();
  for (const input of stage.inputs) {
    const fail: Fail = (d) => {
      throw new InterpretError(
        stage.name,
        undefined,
        undefined,
        `input '${input.name}' (${input.role}): ${d}`,
      );
    };
    const v = inputs.get(input.name);
    if (v === undefined) fail('no value supplied');
    shapes.check(input.value.type, v, 'value', fail);
    if (isIndexList(v)) checkPositions(v, resources.L, 'index list', fail);
    env.set(input.value.id, v);
  }
  stage.body.forEach((instr, n) => {
    const fail: Fail = (d) => {
      throw new InterpretError(stage.name, n, instr.op, d);
    };
    const results = run(instr, env, resources, fail);
    if (results.length !== instr.results.length) {
      fail(`produced ${results.length} results, ${instr.results.length} declared`);
    }
    instr.results.forEach((r, i) => {
      const v = results[i] as RuntimeValue;
      if (opts.float32 && isHostTensor(v))
        for (let k = 0; k < v.data.length; k++) v.data[k] = Math.fround(v.data[k] as number);
      shapes.check(r.type, v, `result ${i} (%${r.id})`, fail);
      env.set(r.id, v);
    });
  });
  const out = new Map<string, RuntimeValue>();
  for (const o of stage.outputs) {
    const v = env.get(o.value.id);
    if (v === undefined) {
      throw new InterpretError(
        stage.name,
        undefined,
        undefined,
        `output '${o.name}': %${o.value.id} is never defined`,
      );
    }
    out.set(o.name, v);
  }
  return out;
}

function checkPositions(list: Int32Array, bound: number, what: string, fail: Fail): void {
  for (let i = 0; i < list.length; i++) {
    const p = list[i] as number;
    if (p < 0 || p >= bound) fail(`${what} entry ${i} is ${p}, outside [0, ${bound})`);
  }
}

/** Evaluates one instruction: checks its operand count and attributes, then runs its op's semantics. */
function run(instr: Instr, env: Map<number, RuntimeValue>, store: ResourceStore, fail: Fail): RuntimeValue[] {
  const spec = ops[instr.op];
  if (spec === undefined) fail(`unknown op '${instr.op}'`);
  const required = spec.args.filter((a) => !a.endsWith('?')).length;
  if (instr.args.length < required || instr.args.length > spec.args.length) {
    fail(
      `takes ${required === spec.args.length ? required : `${required} to ${spec.args.length}`} operands, got ${instr.args.length}`,
    );
  }
  for (const [name, kind] of Object.entries(spec.attrs)) {
    const v = instr.attrs[name];
    if (v === undefined || !attrKindOk(kind, v))
      fail(`attribute '${name}' must be a ${kind}, got ${JSON.stringify(v)}`);
  }
  for (const [name, kind] of Object.entries(spec.optionalAttrs ?? {})) {
    const v = instr.attrs[name];
    if (v !== undefined && !attrKindOk(kind, v))
      fail(`attribute '${name}' must be a ${kind}, got ${JSON.stringify(v)}`);
  }
  return spec.interpret(new Operands(instr, spec.args, env, store, fail));
}

class Operands implements OpContext {
  readonly op: string;
  readonly attrs: Readonly<Record<string, AttrValue>>;
  readonly count: number;
  readonly L: number;

  constructor(
    private readonly instr: Instr,
    private readonly names: readonly string[],
    private readonly env: Map<number, RuntimeValue>,
    private readonly store: ResourceStore,
    readonly fail: Fail,
  ) {
    this.op = instr.op;
    this.attrs = instr.attrs;
    this.count = instr.args.length;
    this.L = store.L;
  }

  private name(i: number): string {
    return `operand ${i} (${this.names[i]?.replace('?', '')})`;
  }
  private ranked<V extends HostTensor | HostInts>(i: number, v: V, rank: number | undefined): V {
    if (rank !== undefined && v.shape.length !== rank)
      this.fail(`${this.name(i)} must have rank ${rank}, got [${v.shape}]`);
    return v;
  }
  arg(i: number): RuntimeValue {
    const a = this.instr.args[i] as Value;
    const v = this.env.get(a.id);
    if (v === undefined) return this.fail(`${this.name(i)}: %${a.id} is not defined before use`);
    return v;
  }
  float(i: number, rank?: number): HostTensor {
    const v = this.arg(i);
    if (!isHostTensor(v)) return this.fail(`${this.name(i)} must be a float tensor`);
    return this.ranked(i, v, rank);
  }
  ints(i: number, rank?: number): HostInts {
    const v = this.arg(i);
    if (!isHostInts(v)) return this.fail(`${this.name(i)} must be an i32 tensor`);
    return this.ranked(i, v, rank);
  }
  list(i: number): Int32Array {
    const v = this.arg(i);
    if (!isIndexList(v)) return this.fail(`${this.name(i)} must be an index list`);
    return v;
  }
  num(name: string): number {
    return this.attrs[name] as number;
  }
  str(name: string): string {
    return this.attrs[name] as string;
  }
  same(a: HostTensor, b: HostTensor, what: string): void {
    if (a.shape.join(',') !== b.shape.join(','))
      this.fail(`${what}: shapes [${a.shape}] and [${b.shape}] differ`);
  }
  positions(list: Int32Array, what: string, bound = this.L): void {
    checkPositions(list, bound, what, this.fail);
  }
  resource(name: string): HostTensor {
    if (!this.store.has(name)) this.fail(`no resource '${name}'`);
    return this.store.get(name);
  }
}
