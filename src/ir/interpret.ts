/**
 * The float64 reference interpreter of the IR: the semantics every backend is judged against.
 * It evaluates each op exactly as its `doc` in ops.ts says, and checks at run time that every
 * value has the shape its declared type gives (numbers equal; each symbolic dimension bound to
 * one size per stage; `L` is the canvas length of the resource store).
 */
import { attentionMass, attentionPartial, type MaskKind, mergePartials, queryKey } from './attention.ts';
import { type AttrKind, maskOperands, ops } from './ops.ts';
import {
  type HostInts,
  type HostTensor,
  isHostInts,
  isHostTensor,
  isIndexList,
  type RuntimeValue,
  rowSize,
  sizeOf,
} from './tensor.ts';
import type { AttrValue, Dim, Instr, IRType, Resource, Stage, Value } from './types.ts';

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

/** Evaluates one instruction. */
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
  const argName = (i: number) => `operand ${i} (${spec.args[i]?.replace('?', '')})`;
  const arg = (i: number): RuntimeValue => {
    const a = instr.args[i] as Value;
    const v = env.get(a.id);
    if (v === undefined) return fail(`${argName(i)}: %${a.id} is not defined before use`);
    return v;
  };
  const float = (i: number, rank?: number): HostTensor => {
    const v = arg(i);
    if (!isHostTensor(v)) return fail(`${argName(i)} must be a float tensor`);
    if (rank !== undefined && v.shape.length !== rank)
      fail(`${argName(i)} must have rank ${rank}, got [${v.shape}]`);
    return v;
  };
  const intsArg = (i: number, rank?: number): HostInts => {
    const v = arg(i);
    if (!isHostInts(v)) return fail(`${argName(i)} must be an i32 tensor`);
    if (rank !== undefined && v.shape.length !== rank)
      fail(`${argName(i)} must have rank ${rank}, got [${v.shape}]`);
    return v;
  };
  const list = (i: number): Int32Array => {
    const v = arg(i);
    if (!isIndexList(v)) return fail(`${argName(i)} must be an index list`);
    return v;
  };
  const optional = (i: number): boolean => i < instr.args.length;
  const num = (name: string): number => instr.attrs[name] as number;
  const str = (name: string): string => instr.attrs[name] as string;
  const same = (a: HostTensor, b: HostTensor, what: string): void => {
    if (a.shape.join(',') !== b.shape.join(',')) fail(`${what}: shapes [${a.shape}] and [${b.shape}] differ`);
  };
  const positions = (l: Int32Array, what: string) => checkPositions(l, store.L, what, fail);

  switch (instr.op) {
    case 'embed': {
      const table = float(0, 2);
      const ids = intsArg(1, 1);
      const [vocab, d] = table.shape as [number, number];
      checkPositions(ids.data, vocab, 'token id', fail);
      const out = new Float64Array(ids.data.length * d);
      ids.data.forEach((id, i) => {
        out.set(table.data.subarray(id * d, (id + 1) * d), i * d);
      });
      return [{ shape: [ids.data.length, d], data: out }];
    }
    case 'gather': {
      const x = arg(0);
      const rows = list(1);
      if (isIndexList(x)) {
        checkPositions(rows, x.length, 'row', fail);
        return [Int32Array.from(rows, (r) => x[r] as number)];
      }
      checkPositions(rows, x.shape[0] ?? 0, 'row', fail);
      const n = rowSize(x.shape);
      const shape = [rows.length, ...x.shape.slice(1)];
      if (isHostInts(x)) {
        const out = new Int32Array(rows.length * n);
        rows.forEach((r, i) => {
          out.set(x.data.subarray(r * n, (r + 1) * n), i * n);
        });
        return [{ shape, data: out }];
      }
      const out = new Float64Array(rows.length * n);
      rows.forEach((r, i) => {
        out.set(x.data.subarray(r * n, (r + 1) * n), i * n);
      });
      return [{ shape, data: out }];
    }
    case 'scatter': {
      const base = arg(0);
      const rows = list(1);
      const values = arg(2);
      if (isIndexList(base) || isIndexList(values)) return fail('scatter takes tensors');
      if (isHostInts(base) !== isHostInts(values)) fail('base and values differ in dtype');
      if (
        base.shape.slice(1).join(',') !== values.shape.slice(1).join(',') ||
        values.shape[0] !== rows.length
      ) {
        fail(`cannot scatter [${values.shape}] into [${base.shape}] at ${rows.length} rows`);
      }
      checkPositions(rows, base.shape[0] ?? 0, 'row', fail);
      const n = rowSize(base.shape);
      const copyRows = <A extends Float64Array | Int32Array>(from: A, into: A): A => {
        rows.forEach((r, i) => {
          into.set(from.subarray(i * n, (i + 1) * n), r * n);
        });
        return into;
      };
      if (isHostInts(base)) {
        return [{ shape: [...base.shape], data: copyRows(values.data as Int32Array, base.data.slice()) }];
      }
      return [{ shape: [...base.shape], data: copyRows(values.data as Float64Array, base.data.slice()) }];
    }
    case 'place': {
      const values = arg(0);
      const rows = list(1);
      if (isIndexList(values) || isHostInts(values)) return fail('place takes a float tensor');
      if (values.shape[0] !== rows.length) fail(`cannot place [${values.shape}] at ${rows.length} rows`);
      checkPositions(rows, store.L, 'row', fail);
      const n = rowSize(values.shape);
      const out = new Float64Array(store.L * n);
      rows.forEach((r, i) => {
        out.set(values.data.subarray(i * n, (i + 1) * n), r * n);
      });
      return [{ shape: [store.L, ...values.shape.slice(1)], data: out }];
    }
    case 'rmsnorm': {
      const x = float(0, 2);
      const w = float(1, 1);
      const [rows, d] = x.shape as [number, number];
      if (w.shape[0] !== d) fail(`weight [${w.shape}] does not match rows of width ${d}`);
      const eps = num('eps');
      const out = new Float64Array(rows * d);
      for (let i = 0; i < rows; i++) {
        let ss = 0;
        for (let j = 0; j < d; j++) ss += (x.data[i * d + j] as number) ** 2;
        const inv = 1 / Math.sqrt(ss / d + eps);
        for (let j = 0; j < d; j++)
          out[i * d + j] = (x.data[i * d + j] as number) * (w.data[j] as number) * inv;
      }
      return [{ shape: [rows, d], data: out }];
    }
    case 'linear':
    case 'logits': {
      const x = float(0, 2);
      const w = float(1, 2);
      const bias = optional(2) ? float(2, 1) : undefined;
      const [rows, inDim] = x.shape as [number, number];
      const [outDim, wIn] = w.shape as [number, number];
      if (wIn !== inDim) fail(`input width ${inDim} does not match weight [${w.shape}]`);
      if (bias !== undefined && bias.shape[0] !== outDim)
        fail(`bias [${bias.shape}] does not match ${outDim} outputs`);
      return [{ shape: [rows, outDim], data: matmulT(x.data, w.data, rows, inDim, outDim, bias?.data) }];
    }
    case 'reshape': {
      const x = arg(0);
      if (isIndexList(x)) return fail('reshape needs a tensor');
      const inner = instr.attrs.inner as readonly number[];
      if (sizeOf(inner) !== rowSize(x.shape)) fail(`cannot reshape rows of [${x.shape}] to [${inner}]`);
      const shape = [x.shape[0] as number, ...inner];
      return [{ shape, data: x.data.slice() } as HostTensor | HostInts];
    }
    case 'rope': {
      const x = float(0, 3);
      const pos = list(1);
      const [rows, heads, hd] = x.shape as [number, number, number];
      if (pos.length !== rows) fail(`${pos.length} positions for ${rows} rows`);
      if (hd % 2 !== 0) fail(`rope needs an even head dimension, got ${hd}`);
      return [{ shape: [rows, heads, hd], data: rope(x.data, pos, heads, hd, num('theta')) }];
    }
    case 'attention': {
      const q = float(0, 3);
      const k = float(1, 3);
      const v = float(2, 3);
      const qpos = list(3);
      const kpos = list(4);
      same(k, v, 'k and v');
      const at = maskOperands(
        instr.args.map((_, i) => i),
        instr.attrs,
      );
      const ints = (i: number | undefined) => (i === undefined ? undefined : intsArg(i, 1));
      const opts = attentionOpts(q, k, qpos, kpos, ints(at.blocks), ints(at.seqs));
      const { o, lse } = attentionPartial(q.data, k.data, v.data, qpos, kpos, opts);
      return [
        { shape: [...q.shape], data: o },
        { shape: [q.shape[0] as number, q.shape[1] as number], data: lse },
      ];
    }
    case 'attention_mass': {
      const q = float(0, 3);
      const k = float(1, 3);
      const qpos = list(2);
      const kpos = list(3);
      const opts = attentionOpts(q, k, qpos, kpos, optional(4) ? intsArg(4, 1) : undefined);
      return [{ shape: [k.shape[0] as number], data: attentionMass(q.data, k.data, qpos, kpos, opts) }];
    }
    case 'query_key': {
      const q = float(0, 3);
      const k = float(1, 3);
      const [nq, heads, hd] = q.shape as [number, number, number];
      const [nk, kvHeads, khd] = k.shape as [number, number, number];
      if (khd !== hd) fail(`q [${q.shape}] and k [${k.shape}] differ in head dimension`);
      if (kvHeads === 0 || heads % kvHeads !== 0)
        fail(`${heads} query heads cannot share ${kvHeads} kv heads`);
      return [{ shape: [nk], data: queryKey(q.data, k.data, nq, nk, { heads, kvHeads, headDim: hd }) }];
    }
    case 'merge': {
      const o1 = float(0);
      const l1 = float(1);
      const o2 = float(2);
      const l2 = float(3);
      same(o1, o2, 'partial outputs');
      same(l1, l2, 'partial LSEs');
      if (o1.shape.length < 1 || o1.shape.slice(0, -1).join(',') !== l1.shape.join(',')) {
        fail(`LSE [${l1.shape}] does not match output [${o1.shape}]`);
      }
      const { o, lse } = mergePartials(o1.data, l1.data, o2.data, l2.data, o1.shape.at(-1) as number);
      return [
        { shape: [...o1.shape], data: o },
        { shape: [...l1.shape], data: lse },
      ];
    }
    case 'add':
    case 'swiglu': {
      const a = float(0);
      const b = float(1);
      same(a, b, 'operands');
      const out = new Float64Array(a.data.length);
      if (instr.op === 'add') {
        for (let i = 0; i < out.length; i++) out[i] = (a.data[i] as number) + (b.data[i] as number);
      } else {
        for (let i = 0; i < out.length; i++) {
          const g = a.data[i] as number;
          out[i] = (g / (1 + Math.exp(-g))) * (b.data[i] as number);
        }
      }
      return [{ shape: [...a.shape], data: out }];
    }
    case 'softmax': {
      const x = float(0, 2);
      const [rows, cols] = x.shape as [number, number];
      const out = new Float64Array(rows * cols);
      for (let i = 0; i < rows; i++) softmaxRow(x.data, i * cols, cols, out);
      return [{ shape: [rows, cols], data: out }];
    }
    case 'confidence':
    case 'margin':
    case 'entropy': {
      const x = float(0, 2);
      const [rows, cols] = x.shape as [number, number];
      if (cols === 0) fail('a row of zero logits has no distribution');
      const p = new Float64Array(cols);
      const out = new Float64Array(rows);
      for (let i = 0; i < rows; i++) {
        softmaxRow(x.data, i * cols, cols, p, 0);
        out[i] = instr.op === 'confidence' ? maxOf(p) : instr.op === 'margin' ? marginOf(p) : entropyOf(p);
      }
      return [{ shape: [rows], data: out }];
    }
    case 'cosine': {
      const a = float(0);
      const b = float(1);
      same(a, b, 'operands');
      if (a.shape.length < 1) fail('cosine needs rows');
      const rows = a.shape[0] as number;
      const n = rowSize(a.shape);
      const out = new Float64Array(rows);
      for (let i = 0; i < rows; i++) {
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let j = i * n; j < (i + 1) * n; j++) {
          const x = a.data[j] as number;
          const y = b.data[j] as number;
          dot += x * y;
          na += x * x;
          nb += y * y;
        }
        out[i] = na === 0 && nb === 0 ? 1 : na === 0 || nb === 0 ? 0 : dot / (Math.sqrt(na) * Math.sqrt(nb));
      }
      return [{ shape: [rows], data: out }];
    }
    case 'topk':
    case 'topp':
    case 'keep': {
      const scores = float(0, 1);
      const cands = list(1);
      return [select(instr.op, scores.data, cands, instr.attrs, fail)];
    }
    case 'cache_read': {
      const name = str('resource');
      if (!store.has(name)) fail(`no resource '${name}'`);
      const t = store.get(name);
      return [{ shape: [...t.shape], data: t.data.slice() }];
    }
    case 'cache_write': {
      const name = str('resource');
      if (!store.has(name)) fail(`no resource '${name}'`);
      const rows = list(0);
      const values = float(1);
      const t = store.get(name);
      if (values.shape[0] !== rows.length || values.shape.slice(1).join(',') !== t.shape.slice(1).join(',')) {
        fail(`cannot write [${values.shape}] at ${rows.length} rows of resource '${name}' [${t.shape}]`);
      }
      positions(rows, `rows of '${name}'`);
      const n = rowSize(t.shape);
      rows.forEach((r, i) => {
        t.data.set(values.data.subarray(i * n, (i + 1) * n), r * n);
      });
      return [];
    }
    default:
      return fail(`op '${instr.op}' has no interpretation`);
  }

  function attentionOpts(
    q: HostTensor,
    k: HostTensor,
    qpos: Int32Array,
    kpos: Int32Array,
    blocks: HostInts | undefined,
    seqs?: HostInts,
  ) {
    const [nq, heads, hd] = q.shape as [number, number, number];
    const [nk, kvHeads, khd] = k.shape as [number, number, number];
    if (khd !== hd) fail(`q [${q.shape}] and k [${k.shape}] differ in head dimension`);
    if (kvHeads === 0 || heads % kvHeads !== 0) fail(`${heads} query heads cannot share ${kvHeads} kv heads`);
    if (qpos.length !== nq) fail(`${qpos.length} query positions for ${nq} query rows`);
    if (kpos.length !== nk) fail(`${kpos.length} key positions for ${nk} key rows`);
    const mask = str('mask');
    if (mask !== 'none' && mask !== 'block_causal') fail(`unknown mask '${mask}'`);
    if (mask === 'block_causal' && blocks === undefined) fail('a block_causal mask needs the blocks operand');
    for (const [name, t] of [
      ['blocks', blocks],
      ['seqs', seqs],
    ] as const)
      if (t !== undefined && t.data.length !== store.L)
        fail(`${name} has ${t.data.length} entries, the canvas ${store.L}`);
    if (blocks !== undefined || seqs !== undefined) {
      positions(qpos, 'query position');
      positions(kpos, 'key position');
    }
    return {
      scale: num('scale'),
      mask: mask as MaskKind,
      blocks: blocks?.data,
      seqs: seqs?.data,
      heads,
      kvHeads,
      headDim: hd,
    };
  }
}

/** out[i, o] = sum_j x[i, j] w[o, j] (+ bias[o]). */
function matmulT(
  x: Float64Array,
  w: Float64Array,
  rows: number,
  inDim: number,
  outDim: number,
  bias: Float64Array | undefined,
): Float64Array {
  const out = new Float64Array(rows * outDim);
  for (let i = 0; i < rows; i++) {
    const xo = i * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let acc = bias === undefined ? 0 : (bias[o] as number);
      for (let j = 0; j < inDim; j++) acc += (x[xo + j] as number) * (w[wo + j] as number);
      out[i * outDim + o] = acc;
    }
  }
  return out;
}

/** Rotate-half rotary embedding: pairs (i, i + hd/2) rotated by pos * theta^(-2i/hd). */
export function rope(
  x: Float64Array,
  pos: Int32Array,
  heads: number,
  hd: number,
  theta: number,
): Float64Array {
  const half = hd / 2;
  const out = new Float64Array(x.length);
  const freq = new Float64Array(half);
  for (let i = 0; i < half; i++) freq[i] = theta ** ((-2 * i) / hd);
  for (let r = 0; r < pos.length; r++) {
    const p = pos[r] as number;
    for (let i = 0; i < half; i++) {
      const a = p * (freq[i] as number);
      const c = Math.cos(a);
      const s = Math.sin(a);
      for (let h = 0; h < heads; h++) {
        const base = (r * heads + h) * hd;
        const lo = x[base + i] as number;
        const hi = x[base + i + half] as number;
        out[base + i] = lo * c - hi * s;
        out[base + i + half] = hi * c + lo * s;
      }
    }
  }
  return out;
}

/** Stable softmax of x[off .. off+n) into out[outOff ..]. */
function softmaxRow(x: Float64Array, off: number, n: number, out: Float64Array, outOff = off): void {
  let m = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < n; j++) {
    const v = x[off + j] as number;
    if (!(v <= m)) m = v;
  }
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp((x[off + j] as number) - m);
    out[outOff + j] = e;
    sum += e;
  }
  for (let j = 0; j < n; j++) out[outOff + j] = (out[outOff + j] as number) / sum;
}

function maxOf(p: Float64Array): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of p) if (!(v <= m)) m = v;
  return m;
}

/** Top-1 minus top-2 probability (a single-entry distribution has margin 1). */
function marginOf(p: Float64Array): number {
  let a = Number.NEGATIVE_INFINITY;
  let b = 0;
  let first = true;
  for (const v of p) {
    if (Number.isNaN(v)) return Number.NaN;
    if (first) {
      a = v;
      first = false;
    } else if (v > a) {
      b = a;
      a = v;
    } else if (v > b) b = v;
  }
  return a - b;
}

function entropyOf(p: Float64Array): number {
  let h = 0;
  for (const v of p) if (v !== 0) h -= v * Math.log(v);
  return h;
}

/**
 * topk / topp / keep: candidates ranked by descending score, ties by ascending position; the
 * chosen ones are returned in position order. Scores are indexed by canvas position.
 */
function select(
  op: string,
  scores: Float64Array,
  cands: Int32Array,
  attrs: Readonly<Record<string, AttrValue>>,
  fail: Fail,
): Int32Array {
  checkPositions(cands, scores.length, 'candidate', fail);
  const seen = new Set<number>();
  for (const c of cands) {
    if (seen.has(c)) fail(`candidate position ${c} is listed twice`);
    seen.add(c);
    if (Number.isNaN(scores[c])) fail(`the score of position ${c} is NaN (a cache row never written?)`);
  }
  const ranked = Int32Array.from(cands).sort((a, b) => {
    const d = (scores[b] as number) - (scores[a] as number);
    return d !== 0 && !Number.isNaN(d) ? d : a - b;
  });
  const n = cands.length;
  let take: number;
  if (op === 'topk') {
    const k = attrs.k as number;
    if (!(Number.isInteger(k) && k >= 0)) fail(`k must be a natural number, got ${k}`);
    take = Math.min(k, n);
  } else if (op === 'keep') {
    const ratio = attrs.ratio as number;
    if (!(ratio >= 0 && ratio <= 1)) fail(`ratio must be in [0, 1], got ${ratio}`);
    const x = ratio * n;
    const near = Math.round(x);
    // ceil, but 0.3 * 10 = 3.0000000000000004 must keep 3, not 4.
    take = Math.abs(x - near) <= 1e-9 * Math.max(1, x) ? near : Math.ceil(x);
  } else {
    const p = attrs.p as number;
    if (!(p >= 0 && p <= 1)) fail(`p must be in [0, 1], got ${p}`);
    let total = 0;
    for (const c of ranked) {
      const s = scores[c] as number;
      if (s < 0) fail(`topp needs non-negative scores; position ${c} scores ${s}`);
      total += s;
    }
    // Summing in rank order makes the running sum reach `total` exactly at the last positive score.
    const target = p * total;
    let acc = 0;
    take = 0;
    while (take < n && acc < target) acc += scores[ranked[take++] as number] as number;
  }
  return ranked.slice(0, take).sort();
}
