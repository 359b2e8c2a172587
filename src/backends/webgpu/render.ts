import { maskOperands } from '../../ir/ops.ts';
import type { Dim, Instr, IRType, Stage, StepProgram, Value } from '../../ir/types.ts';
import { rowWidth, shapeOf } from '../../ir/types.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { KernelProgram } from '../../passes/kernelIR.ts';
import { type ShaderName, shaderDef } from './shaders.ts';

/**
 * The WGSL renderer: each stage of each phase becomes a list of dispatches of the primitives in
 * shaders.ts (plus buffer copies and clears), walked from the fused kernels exactly as the C
 * renderer walks them (gathers folded into indirect loads, views free, caches persistent). The
 * result is data, a dispatch plan: buffers by key, and per dispatch the shader, the buffers bound
 * in binding order, the uniform fields and the work size, all as expressions of the per-step
 * sizes (`L`, `#list`) that the runner evaluates each step. Nothing per-step is baked in.
 *
 * Buffer rule: every IR value a kernel materializes gets its own GPUBuffer (sized for the maximum
 * canvas), so a dispatch never binds one buffer for both reading and writing.
 */

/** A size: coefficient times the product of dims (`L`, `#name`, or numbers). */
export type Size = readonly [number, ...Dim[]];
export type Param = { readonly u: Size } | { readonly f: number };

export type BufferRole = 'weight' | 'persistent' | 'value' | 'list' | 'tokens' | 'mask' | 'rope' | 'dummy';

/** The buffer of the per-row masks: blocks in [0, maxCanvas), sequences in [maxCanvas, 2 maxCanvas). */
export const MASK = 'mask';

export interface BufferSpec {
  readonly key: string;
  readonly role: BufferRole;
  /** 32-bit elements, for the maximum canvas. */
  readonly elements: number;
  readonly int?: boolean;
  /** Weights: the model's tensor; rope tables: theta and head dim. */
  readonly weight?: string;
  readonly rope?: { readonly theta: number; readonly hd: number };
}

export type Dispatch =
  | {
      readonly op: 'kernel';
      readonly shader: ShaderName;
      readonly params: readonly Param[];
      /** Buffer keys for bindings 1.. of the shader. */
      readonly bindings: readonly string[];
      /** Work items along x and y. */
      readonly items: readonly [Size, Size];
    }
  | { readonly op: 'copy'; readonly src: string; readonly dst: string; readonly floats: Size }
  | { readonly op: 'clear'; readonly dst: string; readonly floats: Size };

export interface WgslStage {
  readonly name: string;
  readonly dispatches: readonly Dispatch[];
  /** Carried inputs: name → the key that stands for the previous stage's output buffer. */
  readonly inputs: Readonly<Record<string, string>>;
  readonly outputs: Readonly<Record<string, string>>;
}

export interface WgslManifest {
  readonly maxCanvas: number;
  readonly buffers: readonly BufferSpec[];
  readonly phases: Readonly<Record<string, readonly WgslStage[]>>;
  readonly shaders: readonly ShaderName[];
}

export class WgslRenderError extends Error {
  override readonly name = 'WgslRenderError';
}

const product = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

export const DUMMY_F = 'dummy:f';
export const DUMMY_I = 'dummy:i';
export const DUMMY_I2 = 'dummy:i2';

interface Lazy {
  readonly base: string;
  readonly rows: string;
}

class Renderer {
  readonly buffers = new Map<string, BufferSpec>();
  readonly used = new Set<ShaderName>();

  constructor(
    private readonly config: ModelConfig,
    private readonly maxCanvas: number,
  ) {
    this.buffer({ key: DUMMY_F, role: 'dummy', elements: 4 });
    this.buffer({ key: DUMMY_I, role: 'dummy', elements: 4, int: true });
    this.buffer({ key: DUMMY_I2, role: 'dummy', elements: 4, int: true });
  }

  buffer(spec: BufferSpec): string {
    if (!this.buffers.has(spec.key)) this.buffers.set(spec.key, spec);
    return spec.key;
  }
  worst(d: Dim): number {
    return typeof d === 'number' ? d : this.maxCanvas;
  }
  width(t: IRType): number {
    const w = rowWidth(t);
    if (w === undefined)
      throw new WgslRenderError(`inner dimensions must be constants: ${JSON.stringify(shapeOf(t).slice(1))}`);
    return w;
  }

  renderPhase(phase: string, p: StepProgram, kp: KernelProgram): WgslStage[] {
    return p.stages.map((stage) => this.renderStage(phase, stage, kp));
  }

  private renderStage(phase: string, stage: Stage, kp: KernelProgram): WgslStage {
    const out: Dispatch[] = [];
    const loc = new Map<number, string>();
    const lazy = new Map<number, Lazy>();
    const inputs: Record<string, string> = {};
    const intList = (key: string, role: BufferRole) =>
      this.buffer({ key, role, elements: this.maxCanvas, int: true });
    for (const i of stage.inputs) {
      const t = i.value.type;
      switch (i.role) {
        case 'weight':
          if (t.kind !== 'tensor') throw new WgslRenderError(`weight ${i.name} is not a tensor`);
          loc.set(
            i.value.id,
            this.buffer({
              key: `w:${i.name}`,
              role: 'weight',
              elements: product(t.shape as number[]),
              weight: i.name,
            }),
          );
          break;
        case 'index':
        case 'positions':
          loc.set(i.value.id, intList(`list:${i.name}`, 'list'));
          break;
        case 'tokens':
          loc.set(i.value.id, intList('tokens', 'tokens'));
          break;
        case 'blocks':
        case 'seqs':
          loc.set(
            i.value.id,
            this.buffer({ key: MASK, role: 'mask', elements: 2 * this.maxCanvas, int: true }),
          );
          break;
        case 'carried': {
          const key = `in:${phase}/${stage.name}/${i.name}`;
          loc.set(i.value.id, key);
          inputs[i.name] = key;
          break;
        }
      }
    }
    const valueKey = (v: Value): string =>
      this.buffer({
        key: `val:${phase}/${stage.name}/%${v.id}`,
        role: 'value',
        elements: this.worst(shapeOf(v.type)[0] as Dim) * this.width(v.type),
      });
    const ptr = (v: Value): string => {
      const l = loc.get(v.id);
      if (l) return l;
      if (lazy.has(v.id))
        throw new WgslRenderError(`%${v.id} is a folded gather used where a plain buffer is needed`);
      throw new WgslRenderError(`no location for %${v.id}`);
    };
    const rows = (v: Value): Dim => shapeOf(v.type)[0] as Dim;
    const w = (v: Value) => this.width(v.type);
    const kernel = (shader: ShaderName, params: Param[], bindings: string[], items: [Size, Size]) => {
      if (bindings.length !== shaderDef(shader).bindings.length)
        throw new WgslRenderError(`${shader} takes ${shaderDef(shader).bindings.length} buffers`);
      const written = bindings.filter((_, i) => shaderDef(shader).bindings[i]?.[1] === 'read_write');
      for (const b of written)
        if (bindings.filter((x) => x === b).length > 1)
          throw new WgslRenderError(`${shader} would bind ${b} for reading and writing`);
      this.used.add(shader);
      out.push({ op: 'kernel', shader, params, bindings, items });
    };
    const copyRows = (
      n: Dim,
      width: number,
      src: string,
      srows: string | undefined,
      dst: string,
      drows?: string,
    ) =>
      kernel(
        'copy_rows',
        [{ u: [1, n] }, { u: [width] }, { u: [(srows ? 1 : 0) | (drows ? 2 : 0)] }],
        [src, srows ?? DUMMY_I, dst, drows ?? DUMMY_I2],
        [[width, n], [1]],
      );
    const store = (v: Value): string => {
      const k = valueKey(v);
      loc.set(v.id, k);
      return k;
    };
    // A folded gather becomes a real copy when a consumer cannot read through an index list.
    const plain = (v: Value): string => {
      const g = lazy.get(v.id);
      if (!g) return ptr(v);
      const o = valueKey(v);
      copyRows(rows(v), w(v), g.base, g.rows, o);
      loc.set(v.id, o);
      lazy.delete(v.id);
      return o;
    };
    const cfg = this.config;
    const instr = (ins: Instr) => {
      const [a0, a1, a2, a3, a4] = ins.args;
      const r0 = ins.results[0] as Value;
      switch (ins.op) {
        case 'reshape': {
          const g = lazy.get((a0 as Value).id);
          if (g) lazy.set(r0.id, g);
          else loc.set(r0.id, ptr(a0 as Value));
          return;
        }
        case 'gather':
          if ((a0 as Value).type.kind === 'index')
            throw new WgslRenderError('gathering an index list is not supported by the WebGPU backend');
          lazy.set(r0.id, { base: plain(a0 as Value), rows: ptr(a1 as Value) });
          return;
        case 'cache_read':
          loc.set(r0.id, `res:${String(ins.attrs.resource)}`);
          return;
        case 'cache_write': {
          const res = `res:${String(ins.attrs.resource)}`;
          let g = lazy.get((a1 as Value).id);
          if (g?.base === res) {
            plain(a1 as Value);
            g = undefined;
          }
          const src = g ? g.base : plain(a1 as Value);
          copyRows(rows(a1 as Value), w(a1 as Value), src, g?.rows, res, ptr(a0 as Value));
          return;
        }
        case 'embed': {
          const n = rows(r0);
          const d = w(r0);
          const table = ptr(a0 as Value);
          const ids = ptr(a1 as Value);
          kernel('embed', [{ u: [1, n] }, { u: [d] }], [table, ids, store(r0)], [[d, n], [1]]);
          return;
        }
        case 'scatter': {
          const base = plain(a0 as Value);
          const vals = plain(a2 as Value);
          const o = store(r0);
          out.push({ op: 'copy', src: base, dst: o, floats: [w(r0), rows(r0)] });
          copyRows(rows(a2 as Value), w(r0), vals, undefined, o, ptr(a1 as Value));
          return;
        }
        case 'place': {
          const vals = plain(a0 as Value);
          const o = store(r0);
          out.push({ op: 'clear', dst: o, floats: [w(r0), rows(r0)] });
          copyRows(rows(a0 as Value), w(r0), vals, undefined, o, ptr(a1 as Value));
          return;
        }
        case 'rmsnorm': {
          const g = lazy.get((a0 as Value).id);
          const x = g ? g.base : plain(a0 as Value);
          const n = rows(r0);
          kernel(
            'rmsnorm',
            [{ u: [1, n] }, { u: [w(r0)] }, { u: [g ? 1 : 0] }, { f: Number(ins.attrs.eps) }],
            [x, g ? g.rows : DUMMY_I, ptr(a1 as Value), store(r0)],
            [[64, n], [1]],
          );
          return;
        }
        case 'linear':
        case 'logits': {
          const g = lazy.get((a0 as Value).id);
          const x = g ? g.base : plain(a0 as Value);
          const weight = ptr(a1 as Value);
          if (!weight.startsWith('w:')) throw new WgslRenderError(`${ins.op} needs a weight operand`);
          const bias = a2 ? ptr(a2) : undefined;
          const m = rows(r0);
          const n = w(r0);
          kernel(
            'gemm',
            [{ u: [1, m] }, { u: [n] }, { u: [w(a0 as Value)] }, { u: [(g ? 1 : 0) | (bias ? 2 : 0)] }],
            [x, g ? g.rows : DUMMY_I, weight, bias ?? DUMMY_F, store(r0)],
            [[n], [1, m]],
          );
          return;
        }
        case 'rope': {
          const t = r0.type.kind === 'tensor' ? r0.type.shape : [];
          const heads = t[1] as number;
          const hd = t[2] as number;
          const theta = Number(ins.attrs.theta);
          const table = this.buffer({
            key: `rope:${theta}:${hd}`,
            role: 'rope',
            elements: this.maxCanvas * hd,
            rope: { theta, hd },
          });
          const x = plain(a0 as Value);
          const n = rows(r0);
          kernel(
            'rope',
            [{ u: [1, n] }, { u: [heads] }, { u: [hd] }],
            [x, ptr(a1 as Value), table, store(r0)],
            [[(heads * hd) / 2, n], [1]],
          );
          return;
        }
        case 'attention': {
          const gk = lazy.get((a1 as Value).id);
          const gv = lazy.get((a2 as Value).id);
          if (!gk || !gv)
            throw new WgslRenderError('attention expects its keys and values gathered from the canvas');
          const q = plain(a0 as Value);
          const nq = rows(r0);
          const nk = rows(a4 as Value);
          const o = store(r0);
          const lse = store(ins.results[1] as Value);
          const mask = maskOperands(ins.args, ins.attrs);
          const causal = mask.blocks !== undefined && ins.attrs.mask === 'block_causal';
          kernel(
            'attention',
            [
              { u: [1, nq] },
              { u: [1, nk] },
              { u: [cfg.heads] },
              { u: [cfg.kvHeads] },
              { u: [cfg.headDim] },
              { u: [(causal ? 1 : 0) | (mask.seqs ? 2 : 0)] },
              { f: Number(ins.attrs.scale) },
              { u: [this.maxCanvas] },
            ],
            [q, gk.base, gv.base, ptr(a3 as Value), gk.rows, causal || mask.seqs ? MASK : DUMMY_I, o, lse],
            [[cfg.heads, nq], [1]],
          );
          return;
        }
        case 'merge': {
          const srcs = [a0, a1, a2, a3].map((v) => plain(v as Value));
          const n = rows(r0);
          const o = store(r0);
          const lse = store(ins.results[1] as Value);
          kernel(
            'merge',
            [{ u: [cfg.heads, n] }, { u: [cfg.headDim] }],
            [...srcs, o, lse],
            [[cfg.heads, n], [1]],
          );
          return;
        }
        case 'add':
        case 'swiglu': {
          const a = plain(a0 as Value);
          const b = plain(a1 as Value);
          const n: Size = [w(r0), rows(r0)];
          kernel('elementwise', [{ u: n }, { u: [ins.op === 'add' ? 0 : 1] }], [a, b, store(r0)], [n, [1]]);
          return;
        }
        default:
          throw new WgslRenderError(`the WebGPU backend has no rendering for op '${ins.op}'`);
      }
    };
    for (const k of kp.kernels.filter((x) => x.stage === stage.name)) {
      for (const ins of k.instrs) {
        const known = ins.results.length > 0 && ins.results.every((r) => loc.has(r.id) || lazy.has(r.id));
        if (known) continue;
        instr(ins);
      }
      for (const ins of k.instrs)
        for (const r of ins.results) if (k.writes.includes(`%${r.id}`) && lazy.has(r.id)) plain(r);
    }
    const outputs: Record<string, string> = {};
    for (const o of stage.outputs) outputs[o.name] = plain(o.value);
    return { name: stage.name, dispatches: out, inputs, outputs };
  }
}

/** Renders every phase of a compiled plan into a WebGPU dispatch plan. */
export function renderWgsl(
  config: ModelConfig,
  phases: ReadonlyMap<string, StepProgram>,
  kernels: ReadonlyMap<string, KernelProgram>,
  maxCanvas: number,
): WgslManifest {
  const r = new Renderer(config, maxCanvas);
  const out: Record<string, WgslStage[]> = {};
  const resources = new Map<string, number>();
  for (const [name, p] of phases) {
    const kp = kernels.get(name);
    if (!kp) throw new WgslRenderError(`phase ${name} has no kernels`);
    out[name] = r.renderPhase(name, p, kp);
    for (const res of p.resources) {
      const inner = res.shape.slice(1);
      if (!inner.every((d) => typeof d === 'number'))
        throw new WgslRenderError(`resource ${res.name} has symbolic inner dimensions`);
      resources.set(res.name, maxCanvas * product(inner as number[]));
    }
  }
  for (const [name, elements] of resources) r.buffer({ key: `res:${name}`, role: 'persistent', elements });
  for (const st of Object.values(out))
    for (const s of st)
      for (const d of s.dispatches) {
        const keys = d.op === 'kernel' ? d.bindings : d.op === 'copy' ? [d.src, d.dst] : [d.dst];
        for (const k of keys)
          if (!r.buffers.has(k) && !k.startsWith('in:'))
            throw new WgslRenderError(`dispatch refers to unknown buffer ${k}`);
      }
  return { maxCanvas, buffers: [...r.buffers.values()], phases: out, shaders: [...r.used].sort() };
}

/** Evaluates a size for concrete per-step sizes. */
export function evalSize(s: Size, size: (d: Dim) => number): number {
  const [coef, ...dims] = s;
  return dims.reduce<number>((p, d) => p * (typeof d === 'number' ? d : size(d)), coef);
}
