import { maskOperands } from '../../ir/ops.ts';
import type { AttrValue, Dim, Instr, Stage, StepProgram, Value } from '../../ir/types.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { Kernel, KernelProgram } from '../../passes/kernelIR.ts';
import type { MemoryPlan } from '../../passes/memory.ts';
import {
  type Emitters,
  type Gather,
  type InputSlot,
  pointwiseAttrs,
  pointwiseEmitters,
  product,
  rowsDim,
  Target,
  type Walk,
  walkStage,
} from '../walk.ts';
import type { BufferSpec, Dispatch, Param, Size, WgslManifest, WgslStage } from './manifest.ts';
import { MASK, storageOf } from './manifest.ts';
import { pointwise } from './pointwise.ts';
import { type ShaderName, shaderDef, type WeightedShader, type WeightFormat, weighted } from './shaders.ts';

export * from './manifest.ts';

/**
 * The WGSL renderer: each stage of each phase becomes a list of dispatches of the primitives in
 * shaders.ts (plus buffer copies and clears), from the shared render walk (gathers folded into
 * indirect loads, views free, caches persistent). The result is data, a dispatch plan: buffers by
 * key, and per dispatch the shader, the buffers bound in binding order, the uniform fields and the
 * work size, all as expressions of the per-step sizes (`L`, `#list`) that the runner evaluates each
 * step. Nothing per-step is baked in.
 *
 * Buffer rule: values live in the memory plan's whole-buffer slots (see `Slots`), so the GPU holds
 * the activations the plan reports and no more; since the plan never gives a kernel's reads and
 * writes one slot, a dispatch never binds one buffer for both reading and writing.
 */
export class WgslRenderError extends Error {
  override readonly name = 'WgslRenderError';
}

export const DUMMY_F = 'dummy:f';
export const DUMMY_I = 'dummy:i';
export const DUMMY_I2 = 'dummy:i2';

class Renderer {
  readonly buffers = new Map<string, BufferSpec>();
  readonly used = new Set<ShaderName>();

  constructor(
    readonly config: ModelConfig,
    readonly maxCanvas: number,
    readonly pool: SlotPool,
    readonly format: (weight: string) => WeightFormat,
  ) {
    this.buffer({ key: DUMMY_F, role: 'dummy', elements: 4 });
    this.buffer({ key: DUMMY_I, role: 'dummy', elements: 4, int: true });
    this.buffer({ key: DUMMY_I2, role: 'dummy', elements: 4, int: true });
  }

  buffer(spec: BufferSpec): string {
    if (!this.buffers.has(spec.key)) this.buffers.set(spec.key, spec);
    return spec.key;
  }

  renderPhase(phase: string, p: StepProgram, kp: KernelProgram, mem: MemoryPlan): WgslStage[] {
    const slots = new Slots(this, phase, mem);
    return p.stages.map((stage) => {
      const t = new WStage(this, slots);
      walkStage(stage, kp, t, emitters);
      return { name: stage.name, dispatches: t.out, inputs: t.inputs, outputs: slots.outputs(stage) };
    });
  }
}

const slotKey = (rank: number) => `slot:${rank}`;

/**
 * The GPU buffers behind the memory plans' slots. One phase runs per step, so the phases share
 * them: each phase's slots, largest first, take buffers `slot:0`, `slot:1`, …, and each buffer is
 * as large as the largest slot any phase puts in it. The sum is the largest phase's peak whenever
 * that phase's slots, in size order, are each at least as large as the other phases' (so in every
 * example plan); `test/backends/webgpu/memory.test.ts` measures it.
 */
export class SlotPool {
  readonly bytes: number[] = [];
  /** Phase → its slot index → buffer rank. */
  readonly rank = new Map<string, readonly number[]>();

  constructor(memory: ReadonlyMap<string, MemoryPlan>) {
    for (const [phase, m] of memory) {
      if (!m.wholeBuffer || !m.slots)
        throw new WgslRenderError(`the memory plan of ${phase} is not in whole-buffer mode`);
      const ranks: number[] = [];
      [...m.slots]
        .sort((a, b) => b.bytes - a.bytes || a.index - b.index)
        .forEach((s, r) => {
          ranks[s.index] = r;
          this.bytes[r] = Math.max(this.bytes[r] ?? 0, s.bytes);
        });
      this.rank.set(phase, ranks);
    }
  }
}

/**
 * Where one phase's values live: every value a kernel stores has a slot of the memory plan. A temp
 * sits in its own slot; a value the kernel writes as a reshape of it (the attention output, written
 * as its flattened view) in the view's; a value computed and read inside one kernel (Kernel.locals:
 * the GEMM result before its fused residual, a gather copied out) in the slot the plan gave that
 * local. The plan never gives a kernel's reads, writes and locals one slot, so no dispatch binds
 * one buffer for reading and writing.
 */
class Slots {
  private readonly planned = new Map<string, number>();
  /** Output name → the temp that carries it to the next stage of the phase. */
  private readonly carried = new Map<string, string>();
  private kernel?: Kernel;

  constructor(
    r: Renderer,
    private readonly phase: string,
    mem: MemoryPlan,
  ) {
    const ranks = r.pool.rank.get(phase) ?? [];
    for (const [name, p] of mem.arena) this.planned.set(name, ranks[p.slot as number] as number);
    this.size = r.pool.bytes;
  }
  private readonly size: readonly number[];

  enter(k: Kernel): void {
    this.kernel = k;
  }
  /** The buffer the current kernel leaves `v` (written as `view`, when given) in, a value of `bytes` bytes at most. */
  place(v: Value, bytes: number, view?: Value): string {
    const k = this.kernel;
    const stored = (x: Value | undefined) =>
      x && (k?.writes.includes(`%${x.id}`) || k?.locals?.includes(`%${x.id}`)) ? `%${x.id}` : undefined;
    const name = `%${v.id}`;
    const temp = stored(v) ?? stored(view);
    const rank = temp === undefined ? undefined : this.planned.get(temp);
    if (rank === undefined)
      throw new WgslRenderError(
        `${this.phase}: ${name} is stored by kernel ${k?.name} but has no planned slot`,
      );
    if (bytes > (this.size[rank] as number))
      throw new WgslRenderError(
        `${this.phase}: ${temp} needs ${bytes} bytes, its slot has ${this.size[rank]}`,
      );
    return slotKey(rank);
  }
  input(name: string): string {
    const temp = this.carried.get(name);
    const rank = temp === undefined ? undefined : this.planned.get(temp);
    if (rank === undefined) throw new WgslRenderError(`${this.phase}: carried ${name} has no planned slot`);
    return slotKey(rank);
  }
  /** Where a stage leaves its outputs, recorded for the stages after it. */
  outputs(stage: Stage): Record<string, string> {
    const out: Record<string, string> = {};
    for (const o of stage.outputs) {
      const temp = `%${o.value.id}`;
      const rank = this.planned.get(temp);
      if (rank === undefined)
        throw new WgslRenderError(`${this.phase}: output ${o.name} of ${stage.name} has no planned slot`);
      this.carried.set(o.name, temp);
      out[o.name] = slotKey(rank);
    }
    return out;
  }
}

/** One stage's dispatches; locations are buffer keys. */
class WStage extends Target<string> {
  readonly backend = 'WebGPU';
  readonly out: Dispatch[] = [];
  readonly inputs: Record<string, string> = {};

  constructor(
    readonly r: Renderer,
    private readonly slots: Slots,
  ) {
    super(r.maxCanvas);
  }

  error(message: string): Error {
    return new WgslRenderError(message);
  }
  slot(s: InputSlot): string {
    if (s.kind === 'weight') {
      // A matrix (a GEMM weight, the embedding table) may stay in 16 bits; vectors (norms, biases) are f32.
      const format = s.shape?.length === 2 ? this.r.format(s.name) : 'f32';
      const spec = { key: `w:${s.name}`, role: 'weight', elements: s.elements, weight: s.name } as const;
      return this.r.buffer(format === 'f32' ? spec : { ...spec, format });
    }
    // One buffer holds both per-row masks (see MASK).
    if (s.kind === 'blocks' || s.kind === 'seqs')
      return this.r.buffer({ key: MASK, role: 'mask', elements: 2 * s.elements, int: true });
    const role = s.kind === 'tokens' ? 'tokens' : 'list';
    return this.r.buffer({ key: s.name, role, elements: s.elements, int: true });
  }
  carried(name: string): string {
    const key = this.slots.input(name);
    this.inputs[name] = key;
    return key;
  }
  resource(name: string): string {
    return `res:${name}`;
  }
  enter(k: Kernel): void {
    this.slots.enter(k);
  }
  place(v: Value, view?: Value): string {
    return this.slots.place(v, this.elements(v) * 4, view);
  }
  gather(v: Value, g: Gather<string>, out: string): void {
    this.copyRows(rowsDim(v), this.w(v), g.base, g.rows, out);
  }

  /** The variant of a weight-reading shader for the format of the weight buffer `key`. */
  variant(shader: WeightedShader, key: string): ShaderName {
    return weighted(shader, this.r.buffers.get(key)?.format ?? 'f32');
  }
  kernel(shader: ShaderName, params: Param[], bindings: string[], items: [Size, Size]): void {
    const def = shaderDef(shader);
    if (bindings.length !== def.bindings.length)
      throw new WgslRenderError(`${shader} takes ${def.bindings.length} buffers`);
    const written = bindings.filter((_, i) => def.bindings[i]?.[1] === 'read_write');
    for (const b of written)
      if (bindings.filter((x) => x === b).length > 1)
        throw new WgslRenderError(`${shader} would bind ${b} for reading and writing`);
    this.r.used.add(shader);
    this.out.push({ op: 'kernel', shader, params, bindings, items });
  }
  copyRows(n: Dim, width: number, src: string, srows: string | undefined, dst: string, drows?: string): void {
    this.kernel(
      'copy_rows',
      [{ u: [1, n] }, { u: [width] }, { u: [(srows ? 1 : 0) | (drows ? 2 : 0)] }],
      [src, srows ?? DUMMY_I, dst, drows ?? DUMMY_I2],
      [[width, n], [1]],
    );
  }
}

/** The attention shader's flags for a `kv_head` attribute: bit 4, and the KV head from bit 8 on. */
const kvHeadFlags = (g: AttrValue | undefined): number => (typeof g === 'number' ? 4 | (g << 8) : 0);

const gemm = (ins: Instr, c: Walk<string>, t: WStage) => {
  const r0 = ins.results[0] as Value;
  const a0 = c.arg(ins, 0);
  const g = c.gathered(a0);
  const x = g ? g.base : c.plain(a0);
  c.gemmWeight(ins, 'row-major');
  const weight = c.ptr(c.arg(ins, 1));
  const a2 = ins.args[2];
  const bias = a2 ? c.ptr(a2) : undefined;
  const m = rowsDim(r0);
  const n = t.w(r0);
  t.kernel(
    t.variant('gemm', weight),
    [{ u: [1, m] }, { u: [n] }, { u: [t.w(a0)] }, { u: [(g ? 1 : 0) | (bias ? 2 : 0)] }],
    [x, g ? g.rows : DUMMY_I, weight, bias ?? DUMMY_F, c.out(r0)],
    [[n], [1, m]],
  );
};

/** A pointwise op of ./pointwise.ts: its generated shader over `rows × width` items. */
const pointwiseOp = (ins: Instr, c: Walk<string>, t: WStage) => {
  const r0 = ins.results[0] as Value;
  const xs = ins.args.map((a) => c.plain(a));
  const n: Size = [t.w(r0), rowsDim(r0)];
  const attrs = pointwiseAttrs(ins).map((f) => ({ f }));
  t.kernel(`pointwise_${ins.op}`, [{ u: n }, ...attrs], [...xs, c.out(r0)], [n, [1]]);
};

const emitters: Emitters<string, WStage> = {
  cache_write: (ins, c, t) => {
    const [list, rows] = [c.arg(ins, 0), c.arg(ins, 1)];
    const res = t.resource(String(ins.attrs.resource));
    let g = c.gathered(rows);
    // A gather from the cache being written must be copied out first: no aliasing within a dispatch.
    if (g?.base === res) {
      c.plain(rows);
      g = undefined;
    }
    const src = g ? g.base : c.plain(rows);
    t.copyRows(rowsDim(rows), t.w(rows), src, g?.rows, res, c.ptr(list));
  },
  embed: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const n = rowsDim(r0);
    const d = t.w(r0);
    const table = c.ptr(c.arg(ins, 0));
    const ids = c.ptr(c.arg(ins, 1));
    t.kernel(t.variant('embed', table), [{ u: [1, n] }, { u: [d] }], [table, ids, c.out(r0)], [[d, n], [1]]);
  },
  scatter: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const base = c.plain(c.arg(ins, 0));
    const vals = c.arg(ins, 2);
    const src = c.plain(vals);
    const o = c.out(r0);
    t.out.push({ op: 'copy', src: base, dst: o, floats: [t.w(r0), rowsDim(r0)] });
    t.copyRows(rowsDim(vals), t.w(r0), src, undefined, o, c.ptr(c.arg(ins, 1)));
  },
  place: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const vals = c.arg(ins, 0);
    const src = c.plain(vals);
    const o = c.out(r0);
    t.out.push({ op: 'clear', dst: o, floats: [t.w(r0), rowsDim(r0)] });
    t.copyRows(rowsDim(vals), t.w(r0), src, undefined, o, c.ptr(c.arg(ins, 1)));
  },
  rmsnorm: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const a0 = c.arg(ins, 0);
    const g = c.gathered(a0);
    const { per, d } = t.normed(r0, g !== undefined);
    const x = g ? g.base : c.plain(a0);
    const n = rowsDim(r0);
    t.kernel(
      'rmsnorm',
      [{ u: [per, n] }, { u: [d] }, { u: [g ? 1 : 0] }, { f: Number(ins.attrs.eps) }],
      [x, g ? g.rows : DUMMY_I, c.ptr(c.arg(ins, 1)), c.out(r0)],
      [[64 * per, n], [1]],
    );
  },
  linear: gemm,
  logits: gemm,
  rope: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const shape = r0.type.kind === 'tensor' ? r0.type.shape : [];
    const heads = shape[1] as number;
    const hd = shape[2] as number;
    const theta = Number(ins.attrs.theta);
    const table = t.r.buffer({
      key: `rope:${theta}:${hd}`,
      role: 'rope',
      elements: t.r.maxCanvas * hd,
      rope: { theta, hd },
    });
    const x = c.plain(c.arg(ins, 0));
    const n = rowsDim(r0);
    t.kernel(
      'rope',
      [{ u: [1, n] }, { u: [heads] }, { u: [hd] }],
      [x, c.ptr(c.arg(ins, 1)), table, c.out(r0)],
      [[(heads * hd) / 2, n], [1]],
    );
  },
  attention: (ins, c, t) => {
    const cfg = t.r.config;
    const r0 = ins.results[0] as Value;
    const [gk, gv] = c.keysValues(ins);
    const q = c.plain(c.arg(ins, 0));
    const nq = rowsDim(r0);
    const nk = rowsDim(c.arg(ins, 4));
    const o = c.out(r0);
    const lse = c.out(ins.results[1] as Value);
    const mask = maskOperands(ins.args, ins.attrs);
    const causal = mask.blocks !== undefined && ins.attrs.mask === 'block_causal';
    t.kernel(
      'attention',
      [
        { u: [1, nq] },
        { u: [1, nk] },
        { u: [cfg.heads] },
        { u: [cfg.kvHeads] },
        { u: [cfg.headDim] },
        { u: [(causal ? 1 : 0) | (mask.seqs ? 2 : 0) | kvHeadFlags(ins.attrs.kv_head)] },
        { f: Number(ins.attrs.scale) },
        { u: [t.r.maxCanvas] },
      ],
      [q, gk.base, gv.base, c.ptr(c.arg(ins, 3)), gk.rows, causal || mask.seqs ? MASK : DUMMY_I, o, lse],
      [[cfg.heads, nq], [1]],
    );
  },
  merge: (ins, c, t) => {
    const cfg = t.r.config;
    const r0 = ins.results[0] as Value;
    const srcs = [0, 1, 2, 3].map((i) => c.plain(c.arg(ins, i)));
    const n = rowsDim(r0);
    const o = c.out(r0);
    const lse = c.out(ins.results[1] as Value);
    t.kernel(
      'merge',
      [{ u: [cfg.heads, n] }, { u: [cfg.headDim] }],
      [...srcs, o, lse],
      [[cfg.heads, n], [1]],
    );
  },
  swiglu: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const a = c.plain(c.arg(ins, 0));
    const b = c.plain(c.arg(ins, 1));
    const n: Size = [t.w(r0), rowsDim(r0)];
    t.kernel('swiglu', [{ u: n }], [a, b, c.out(r0)], [n, [1]]);
  },
  ...pointwiseEmitters(pointwise, pointwiseOp),
};

/** Renders every phase of a compiled plan into a WebGPU dispatch plan, values in the memory plan's slots. */
export function renderWgsl(
  config: ModelConfig,
  phases: ReadonlyMap<string, StepProgram>,
  kernels: ReadonlyMap<string, KernelProgram>,
  memory: ReadonlyMap<string, MemoryPlan>,
  maxCanvas: number,
  format: (weight: string) => WeightFormat = () => 'f32',
): WgslManifest {
  const r = new Renderer(config, maxCanvas, new SlotPool(memory), format);
  const out: Record<string, WgslStage[]> = {};
  const resources = new Map<string, number>();
  for (const [name, p] of phases) {
    const kp = kernels.get(name);
    const mem = memory.get(name);
    if (!kp) throw new WgslRenderError(`phase ${name} has no kernels`);
    if (!mem) throw new WgslRenderError(`phase ${name} has no memory plan`);
    out[name] = r.renderPhase(name, p, kp, mem);
    for (const res of p.resources) {
      const inner = res.shape.slice(1);
      if (!inner.every((d) => typeof d === 'number'))
        throw new WgslRenderError(`resource ${res.name} has symbolic inner dimensions`);
      resources.set(res.name, maxCanvas * product(inner as number[]));
    }
  }
  for (const [name, elements] of resources) r.buffer({ key: `res:${name}`, role: 'persistent', elements });
  r.pool.bytes.forEach((bytes, rank) => {
    r.buffer({ key: slotKey(rank), role: 'slot', elements: bytes / 4 });
  });
  for (const st of Object.values(out))
    for (const s of st)
      for (const d of s.dispatches) {
        const keys = d.op === 'kernel' ? d.bindings : d.op === 'copy' ? [d.src, d.dst] : [d.dst];
        keys.forEach((k, i) => {
          const spec = r.buffers.get(k);
          if (!spec) throw new WgslRenderError(`dispatch refers to unknown buffer ${k}`);
          // A shader declares each binding as what the buffer holds (16-bit weights: their format's
          // variant); copies and clears count 4-byte words.
          const declared = d.op === 'kernel' ? shaderDef(d.shader).bindings[i]?.[2] : undefined;
          if (declared ? storageOf(spec) !== declared : spec.format !== undefined)
            throw new WgslRenderError(
              `${d.op === 'kernel' ? d.shader : d.op} binds ${k} (${storageOf(spec)}) as ${declared ?? '4-byte words'}`,
            );
        });
      }
  return { maxCanvas, buffers: [...r.buffers.values()], phases: out, shaders: [...r.used].sort() };
}
