/**
 * The PTX renderer: for each phase of a compiled plan (compilePlan(plan, config, { target: 'ptx' })),
 * the launch sequence of every stage — which generated kernel, grid, block, dynamic shared memory
 * and how each parameter is bound — plus the PTX text of every kernel used.
 *
 * It follows the op → primitive mapping of the C renderer (src/backends/cpu/render.ts): each IR
 * instruction of a fused kernel becomes one or a few launches of the primitives in kernels/,
 * gathers are folded into the consumer's loads (indirect rows) when it can read through an index
 * list, and every buffer is a named slot (weights, caches, index lists, the arena at the offsets
 * of the memory plan, with a scratch area after it). One fusion the C backend does not have:
 * attention followed by a merge of its result with another partial becomes one launch of the
 * attention kernel with the LSE merge in its epilogue.
 *
 * Sizes that change per step (the canvas `L`, index-list lengths `#name`) stay symbolic: grids
 * and count parameters are `ceil(size * mul / div)` of a named size, evaluated by the runner.
 */
import type { CheckedPlan } from '../../dsl/check.ts';
import { maskOperands } from '../../ir/ops.ts';
import type { Dim, Instr, IRType, Stage, StepProgram, Value } from '../../ir/types.ts';
import { rowWidth, shapeOf } from '../../ir/types.ts';
import type { ModelConfig } from '../../model/config.ts';
import { compilePlan } from '../../passes/compile.ts';
import type { KernelProgram } from '../../passes/kernelIR.ts';
import type { MemoryPlan } from '../../passes/memory.ts';
import {
  type Arch,
  ATT_PAIRS,
  EW_THREADS,
  GEMM_TILE,
  type GemmPath,
  type GeneratedKernel,
  generateKernel,
  type KernelSpec,
} from './kernels/index.ts';
import { type ParamType, PTX_VERSION } from './kernels/ptx.ts';

export type SlotKind = 'weight' | 'persistent' | 'arena' | 'list' | 'tokens' | 'blocks' | 'seqs';

export interface PtxSlot {
  readonly name: string;
  readonly kind: SlotKind;
  /** Bytes to allocate (float32 / int32 elements x 4); lists and token arrays hold maxCanvas. */
  readonly bytes: number;
  readonly shape?: readonly number[];
  /**
   * `row-major` as the model stores it, or `k-major` ([in][out], the transpose of the model's
   * [out][in]) for GEMM weights, as the layout pass chose for PTX. A k-major slot is filled by the
   * runner from the weight named in `transposeOf`.
   */
  readonly layout: 'row-major' | 'k-major';
  readonly transposeOf?: string;
}

/** A launch dimension: ceil(size * mul / div), `size` a number or a symbolic size (`L`, `#list`). */
export interface LaunchDim {
  readonly size: Dim;
  readonly mul: number;
  readonly div: number;
}

export type Binding =
  /** A device pointer: the slot's base + offset bytes. */
  | { readonly kind: 'buffer'; readonly slot: string; readonly offset: number }
  | { readonly kind: 'null' }
  /** A u32 count: size * mul. */
  | { readonly kind: 'count'; readonly size: Dim; readonly mul: number }
  | { readonly kind: 'u32'; readonly value: number }
  | { readonly kind: 'f32'; readonly value: number };

export interface LaunchParam {
  readonly name: string;
  readonly type: ParamType;
  readonly binding: Binding;
}

export interface Launch {
  readonly kernel: string;
  /** The IR operation(s) this launch computes, for people reading the manifest. */
  readonly op: string;
  readonly grid: readonly [LaunchDim, LaunchDim, LaunchDim];
  readonly block: readonly [number, number, number];
  readonly sharedBytes: number;
  readonly params: readonly LaunchParam[];
}

export interface PtxStage {
  readonly name: string;
  readonly launches: readonly Launch[];
  /** Where the stage expects its carried inputs and leaves its outputs: byte offsets into the arena. */
  readonly inputs: Readonly<Record<string, number>>;
  readonly outputs: Readonly<Record<string, number>>;
}

export interface PtxKernelInfo {
  readonly file: string;
  readonly kind: GeneratedKernel['kind'];
  readonly block: number;
  readonly sharedBytes: number;
  readonly params: readonly {
    readonly name: string;
    readonly type: ParamType;
    readonly nullable?: boolean;
  }[];
}

export interface PtxManifest {
  readonly arch: Arch;
  readonly ptxVersion: string;
  readonly gemm: GemmPath;
  readonly model: string;
  readonly maxCanvas: number;
  readonly slots: readonly PtxSlot[];
  /** Every symbolic size a launch refers to (`L` first). */
  readonly sizes: readonly string[];
  readonly arenaBytes: number;
  readonly kernels: Readonly<Record<string, PtxKernelInfo>>;
  readonly phases: Readonly<Record<string, readonly PtxStage[]>>;
}

export interface PtxRender {
  /** Kernel name → PTX text (one module, one entry each). */
  readonly files: ReadonlyMap<string, string>;
  readonly manifest: PtxManifest;
}

export interface PtxRenderOptions {
  readonly arch: Arch;
  /** GEMM path: tensor cores with f16 (default) or bf16 inputs, or the f32 FMA path. */
  readonly gemm?: GemmPath;
  readonly maxCanvas: number;
}

export class PtxRenderError extends Error {
  override readonly name = 'PtxRenderError';
}

const product = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);
const ALIGN = 256;
const roundUp = (n: number, a = ALIGN) => Math.ceil(n / a) * a;

interface Loc {
  readonly slot: string;
  readonly offset: number;
}
interface Lazy {
  readonly base: Loc;
  readonly rows: Loc;
}

const buf = (l: Loc): Binding => ({ kind: 'buffer', slot: l.slot, offset: l.offset });
const NULL: Binding = { kind: 'null' };
const count = (size: Dim, mul = 1): Binding => ({ kind: 'count', size, mul });
const dim = (size: Dim, mul = 1, div = 1): LaunchDim => ({ size, mul, div });
const ONE = dim(1);

class Renderer {
  readonly slots = new Map<string, PtxSlot>();
  readonly sizes = new Set<string>(['L']);
  readonly kernels = new Map<string, GeneratedKernel>();
  arenaBytes = 0;
  private readonly rowMajorUse = new Set<string>();

  constructor(
    private readonly config: ModelConfig,
    private readonly opts: Required<PtxRenderOptions>,
  ) {}

  slot(name: string, kind: SlotKind, bytes: number, extra: Partial<PtxSlot> = {}): PtxSlot {
    const have = this.slots.get(name);
    if (have) return have;
    const s: PtxSlot = { name, kind, bytes, layout: 'row-major', ...extra };
    this.slots.set(name, s);
    return s;
  }
  private readonly bySpec = new Map<string, GeneratedKernel>();
  kernel(spec: KernelSpec): GeneratedKernel {
    const key = JSON.stringify(spec);
    const have = this.bySpec.get(key);
    if (have) return have;
    const k = generateKernel(spec, this.opts.arch);
    this.bySpec.set(key, k);
    this.kernels.set(k.name, k);
    return k;
  }
  worst(d: Dim): number {
    return typeof d === 'number' ? d : this.opts.maxCanvas;
  }
  note(d: Dim): Dim {
    if (typeof d === 'string') this.sizes.add(d);
    return d;
  }
  width(t: IRType): number {
    const w = rowWidth(t);
    if (w === undefined)
      throw new PtxRenderError(`inner dimensions must be constants: ${JSON.stringify(shapeOf(t).slice(1))}`);
    return w;
  }

  launch(
    k: GeneratedKernel,
    op: string,
    grid: readonly [LaunchDim, LaunchDim, LaunchDim],
    bind: Readonly<Record<string, Binding>>,
  ): Launch {
    const params = k.params.map((p): LaunchParam => {
      const b = bind[p.name.replace(/^p_/, '')];
      if (!b) throw new PtxRenderError(`launch of ${k.name}: parameter ${p.name} is not bound`);
      if (b.kind === 'null' && !p.nullable)
        throw new PtxRenderError(`launch of ${k.name}: parameter ${p.name} cannot be null`);
      return { name: p.name, type: p.type, binding: b };
    });
    for (const g of grid) this.note(g.size);
    for (const p of params) if (p.binding.kind === 'count') this.note(p.binding.size);
    return { kernel: k.name, op, grid, block: [k.block, 1, 1], sharedBytes: k.sharedBytes, params };
  }

  renderPhase(p: StepProgram, kp: KernelProgram, mem: MemoryPlan, carried: Map<string, string>): PtxStage[] {
    const planned = new Map<string, number>();
    for (const [name, place] of mem.arena) planned.set(name, place.offset);
    const scratchBase = roundUp(mem.peakBytes);
    this.arenaBytes = Math.max(this.arenaBytes, scratchBase);
    return p.stages.map((stage) => this.renderStage(stage, kp, planned, scratchBase, carried));
  }

  private renderStage(
    stage: Stage,
    kp: KernelProgram,
    planned: Map<string, number>,
    scratchBase: number,
    carried: Map<string, string>,
  ): PtxStage {
    const launches: Launch[] = [];
    const loc = new Map<number, Loc>();
    const lazy = new Map<number, Lazy>();
    const weightOf = new Map<number, { name: string; shape: readonly number[] }>();
    const inputs: Record<string, number> = {};
    for (const i of stage.inputs) {
      const t = i.value.type;
      switch (i.role) {
        case 'weight': {
          if (t.kind !== 'tensor') throw new PtxRenderError(`weight ${i.name} is not a tensor`);
          const shape = t.shape as number[];
          this.slot(i.name, 'weight', product(shape) * 4, { shape });
          loc.set(i.value.id, { slot: i.name, offset: 0 });
          weightOf.set(i.value.id, { name: i.name, shape });
          break;
        }
        case 'index':
          loc.set(i.value.id, {
            slot: this.slot(`list:${i.name}`, 'list', this.opts.maxCanvas * 4).name,
            offset: 0,
          });
          this.sizes.add(`#${i.name}`);
          break;
        case 'positions':
          // Sized by the list whose rows it gives positions of (its type says which).
          loc.set(i.value.id, {
            slot: this.slot(`list:${i.name}`, 'list', this.opts.maxCanvas * 4).name,
            offset: 0,
          });
          break;
        case 'tokens':
          loc.set(i.value.id, {
            slot: this.slot('tokens', 'tokens', this.opts.maxCanvas * 4).name,
            offset: 0,
          });
          break;
        case 'blocks':
        case 'seqs':
          loc.set(i.value.id, {
            slot: this.slot(i.role, i.role, this.opts.maxCanvas * 4).name,
            offset: 0,
          });
          break;
        case 'carried': {
          const name = carried.get(i.name);
          const off = name === undefined ? undefined : planned.get(name);
          if (off === undefined) throw new PtxRenderError(`carried ${i.name} has no planned buffer`);
          loc.set(i.value.id, { slot: 'arena', offset: off });
          inputs[i.name] = off;
          break;
        }
      }
    }
    // Uses of each value in the stage: an attention result may fold into a merge only if the merge is its one use.
    const uses = new Map<number, number>();
    for (const ins of stage.body) for (const a of ins.args) uses.set(a.id, (uses.get(a.id) ?? 0) + 1);
    for (const o of stage.outputs) uses.set(o.value.id, (uses.get(o.value.id) ?? 0) + 1);

    const ptr = (v: Value): Loc => {
      const l = loc.get(v.id);
      if (l) return l;
      if (lazy.has(v.id))
        throw new PtxRenderError(`%${v.id} is a folded gather used where a plain buffer is needed`);
      throw new PtxRenderError(`no location for %${v.id}`);
    };
    const rowsOf = (v: Value): Dim => this.note(shapeOf(v.type)[0] as Dim);
    for (const k of kp.kernels.filter((x) => x.stage === stage.name)) {
      let scratch = scratchBase;
      const store = (v: Value): Loc => {
        const name = `%${v.id}`;
        const off = k.writes.includes(name) ? planned.get(name) : undefined;
        if (off !== undefined) return { slot: 'arena', offset: off };
        const here = scratch;
        scratch += roundUp(this.worst(shapeOf(v.type)[0] as Dim) * this.width(v.type) * 4);
        this.arenaBytes = Math.max(this.arenaBytes, scratch);
        return { slot: 'arena', offset: here };
      };
      const copy = this.kernel({ op: 'copy_rows' });
      const plain = (v: Value): Loc => {
        const g = lazy.get(v.id);
        if (!g) return ptr(v);
        const out = store(v);
        const w = this.width(v.type);
        launches.push(
          this.launch(copy, 'gather', [dim(rowsOf(v), w, EW_THREADS), ONE, ONE], {
            dst: buf(out),
            dst_rows: NULL,
            src: buf(g.base),
            src_rows: buf(g.rows),
            n: count(rowsOf(v)),
            width: { kind: 'u32', value: w },
          }),
        );
        loc.set(v.id, out);
        lazy.delete(v.id);
        return out;
      };
      const ctx: Ctx = { launches, loc, lazy, weightOf, store, plain, ptr, rowsOf, uses, done: new Set() };
      k.instrs.forEach((ins, at) => {
        if (ctx.done.has(ins)) return;
        const known = ins.results.length > 0 && ins.results.every((r) => loc.has(r.id) || lazy.has(r.id));
        if (known) return;
        this.renderInstr(ins, k.instrs.slice(at + 1), ctx);
      });
      for (const ins of k.instrs)
        for (const r of ins.results) if (k.writes.includes(`%${r.id}`) && lazy.has(r.id)) plain(r);
    }
    const outputs: Record<string, number> = {};
    for (const o of stage.outputs) {
      const name = `%${o.value.id}`;
      const off = planned.get(name);
      if (off === undefined)
        throw new PtxRenderError(`output ${o.name} of ${stage.name} has no planned buffer`);
      outputs[o.name] = off;
      carried.set(o.name, name);
    }
    return { name: stage.name, launches, inputs, outputs };
  }

  private renderInstr(ins: Instr, rest: readonly Instr[], c: Ctx): void {
    const cfg = this.config;
    const [a0, a1, a2, a3, a4] = ins.args as (Value | undefined)[];
    const r0 = ins.results[0] as Value;
    const out = () => {
      const o = c.store(r0);
      c.loc.set(r0.id, o);
      return o;
    };
    const w = (v: Value) => this.width(v.type);
    const u32 = (value: number): Binding => ({ kind: 'u32', value });
    const emit = (l: Launch) => c.launches.push(l);
    const ew = (rows: Dim, per: number) => [dim(rows, per, EW_THREADS), ONE, ONE] as const;
    const copyRows = (
      op: string,
      dst: Loc,
      dstRows: Loc | null,
      src: Loc,
      srcRows: Loc | null,
      n: Dim,
      width: number,
    ) =>
      emit(
        this.launch(this.kernel({ op: 'copy_rows' }), op, ew(n, width), {
          dst: buf(dst),
          dst_rows: dstRows ? buf(dstRows) : NULL,
          src: buf(src),
          src_rows: srcRows ? buf(srcRows) : NULL,
          n: count(n),
          width: u32(width),
        }),
      );
    const V = (v: Value | undefined): Value => {
      if (!v) throw new PtxRenderError(`${ins.op}: missing operand`);
      return v;
    };
    switch (ins.op) {
      case 'reshape': {
        const g = c.lazy.get(V(a0).id);
        if (g) c.lazy.set(r0.id, g);
        else c.loc.set(r0.id, c.ptr(V(a0)));
        return;
      }
      case 'gather':
        if (V(a0).type.kind === 'index')
          throw new PtxRenderError('gathering an index list is not supported by the PTX backend');
        c.lazy.set(r0.id, { base: c.plain(V(a0)), rows: c.ptr(V(a1)) });
        return;
      case 'cache_read':
        c.loc.set(r0.id, { slot: this.slot(String(ins.attrs.resource), 'persistent', 0).name, offset: 0 });
        return;
      case 'cache_write': {
        const res = { slot: this.slot(String(ins.attrs.resource), 'persistent', 0).name, offset: 0 };
        const g = c.lazy.get(V(a1).id);
        copyRows(
          `cache_write ${String(ins.attrs.resource)}`,
          res,
          c.ptr(V(a0)),
          g ? g.base : c.plain(V(a1)),
          g ? g.rows : null,
          c.rowsOf(V(a1)),
          w(V(a1)),
        );
        return;
      }
      case 'embed': {
        const table = c.ptr(V(a0));
        this.rowMajorUse.add(table.slot);
        emit(
          this.launch(this.kernel({ op: 'embed' }), 'embed', ew(c.rowsOf(r0), w(r0)), {
            out: buf(out()),
            table: buf(table),
            ids: buf(c.ptr(V(a1))),
            n: count(c.rowsOf(r0)),
            d: u32(w(r0)),
          }),
        );
        return;
      }
      case 'scatter': {
        const o = out();
        copyRows('scatter (copy)', o, null, c.plain(V(a0)), null, 'L', w(r0));
        copyRows('scatter', o, c.ptr(V(a1)), c.plain(V(a2)), null, c.rowsOf(V(a2)), w(r0));
        return;
      }
      case 'place': {
        const o = out();
        emit(
          this.launch(this.kernel({ op: 'fill' }), 'place (zero)', ew('L', w(r0)), {
            out: buf(o),
            count: count('L', w(r0)),
            value: { kind: 'f32', value: 0 },
          }),
        );
        copyRows('place', o, c.ptr(V(a1)), c.plain(V(a0)), null, c.rowsOf(V(a0)), w(r0));
        return;
      }
      case 'rmsnorm': {
        const g = c.lazy.get(V(a0).id);
        emit(
          this.launch(this.kernel({ op: 'rmsnorm' }), 'rmsnorm', [dim(c.rowsOf(r0)), ONE, ONE], {
            out: buf(out()),
            x: buf(g ? g.base : c.plain(V(a0))),
            rows: g ? buf(g.rows) : NULL,
            w: buf(c.ptr(V(a1))),
            n: count(c.rowsOf(r0)),
            d: u32(w(r0)),
            eps: { kind: 'f32', value: Number(ins.attrs.eps) },
          }),
        );
        return;
      }
      case 'linear':
      case 'logits': {
        const weight = c.weightOf.get(V(a1).id);
        if (weight?.shape.length !== 2) throw new PtxRenderError(`${ins.op} needs a 2-D weight operand`);
        const [n, k] = weight.shape as [number, number];
        if (n % 4 !== 0 || k % 4 !== 0)
          throw new PtxRenderError(
            `${ins.op} ${weight.name}: the PTX GEMM needs both dimensions multiples of 4 (got [${n}, ${k}])`,
          );
        const km = this.slot(`${weight.name}@k-major`, 'weight', n * k * 4, {
          shape: [k, n],
          layout: 'k-major',
          transposeOf: weight.name,
        });
        const g = c.lazy.get(V(a0).id);
        const m = c.rowsOf(r0);
        const gemm = this.kernel({ op: 'gemm', path: this.opts.gemm });
        emit(
          this.launch(gemm, ins.op, [dim(n, 1, GEMM_TILE.bn), dim(m, 1, GEMM_TILE.bm), ONE], {
            c: buf(out()),
            a: buf(g ? g.base : c.plain(V(a0))),
            arows: g ? buf(g.rows) : NULL,
            w: buf({ slot: km.name, offset: 0 }),
            bias: a2 ? buf(c.ptr(a2)) : NULL,
            m: count(m),
            n: u32(n),
            k: u32(k),
            lda: u32(k),
            ldc: u32(n),
          }),
        );
        return;
      }
      case 'rope': {
        const t = r0.type.kind === 'tensor' ? r0.type.shape : [];
        const heads = Number(t[1]);
        const hd = Number(t[2]);
        emit(
          this.launch(
            this.kernel({ op: 'rope', headDim: hd, theta: Number(ins.attrs.theta) }),
            'rope',
            ew(c.rowsOf(r0), (heads * hd) / 2),
            {
              out: buf(out()),
              x: buf(c.plain(V(a0))),
              pos: buf(c.ptr(V(a1))),
              n: count(c.rowsOf(r0)),
              heads: u32(heads),
            },
          ),
        );
        return;
      }
      case 'attention': {
        const gk = c.lazy.get(V(a1).id);
        const gv = c.lazy.get(V(a2).id);
        if (!gk || !gv)
          throw new PtxRenderError('attention expects its keys and values gathered from the canvas');
        const lseV = ins.results[1] as Value;
        // Fold a following merge of exactly this result with another partial into the epilogue.
        const merge = rest.find(
          (m) =>
            m.op === 'merge' &&
            ((m.args[0]?.id === r0.id && m.args[1]?.id === lseV.id) ||
              (m.args[2]?.id === r0.id && m.args[3]?.id === lseV.id)),
        );
        const otherOf = (m: Instr) =>
          (m.args[0]?.id === r0.id ? [m.args[2], m.args[3]] : [m.args[0], m.args[1]]) as Value[];
        // Only when the other partial already exists (it may be computed later in the kernel).
        const fold =
          merge !== undefined &&
          c.uses.get(r0.id) === 1 &&
          c.uses.get(lseV.id) === 1 &&
          otherOf(merge).every((v) => c.loc.has(v.id) || c.lazy.has(v.id));
        const other = fold && merge ? otherOf(merge) : [];
        const prev = other.map((v) => c.plain(v as Value));
        const resO = fold && merge ? (merge.results[0] as Value) : r0;
        const resL = fold && merge ? (merge.results[1] as Value) : lseV;
        const o = c.store(resO);
        c.loc.set(resO.id, o);
        const lse = c.store(resL);
        c.loc.set(resL.id, lse);
        if (fold && merge) c.done.add(merge);
        const kvRow = cfg.kvHeads * cfg.headDim;
        const nq = c.rowsOf(r0);
        const mask = maskOperands(ins.args, ins.attrs);
        const blocks = ins.attrs.mask === 'block_causal' ? mask.blocks : undefined;
        const sequences = mask.seqs !== undefined;
        emit(
          this.launch(
            this.kernel({
              op: 'attention',
              headDim: cfg.headDim,
              merge: Boolean(fold),
              ...(sequences ? { sequences } : {}),
            }),
            fold ? 'attention + merge' : 'attention',
            [dim(nq, cfg.heads / cfg.kvHeads, ATT_PAIRS), dim(cfg.kvHeads), ONE],
            {
              o: buf(o),
              lse: buf(lse),
              q: buf(c.plain(V(a0))),
              k: buf(gk.base),
              v: buf(gv.base),
              qpos: buf(c.ptr(V(a3))),
              kpos: buf(gk.rows),
              blocks: blocks ? buf(c.ptr(blocks)) : NULL,
              nq: count(nq),
              nk: count(c.rowsOf(V(a4))),
              heads: u32(cfg.heads),
              group: u32(cfg.heads / cfg.kvHeads),
              k_row_stride: u32(kvRow),
              k_head_stride: u32(cfg.headDim),
              v_row_stride: u32(kvRow),
              v_head_stride: u32(cfg.headDim),
              scale: { kind: 'f32', value: Number(ins.attrs.scale) },
              ...(fold ? { o_prev: buf(prev[0] as Loc), lse_prev: buf(prev[1] as Loc) } : {}),
              ...(mask.seqs ? { seqs: buf(c.ptr(mask.seqs)) } : {}),
            },
          ),
        );
        return;
      }
      case 'merge': {
        const o = out();
        const lseV = ins.results[1] as Value;
        const lse = c.store(lseV);
        c.loc.set(lseV.id, lse);
        const rows = c.rowsOf(r0);
        emit(
          this.launch(this.kernel({ op: 'merge' }), 'merge', ew(rows, cfg.heads * cfg.headDim), {
            o: buf(o),
            lse: buf(lse),
            o1: buf(c.plain(V(a0))),
            lse1: buf(c.plain(V(a1))),
            o2: buf(c.plain(V(a2))),
            lse2: buf(c.plain(V(a3))),
            pairs: count(rows, cfg.heads),
            hd: u32(cfg.headDim),
          }),
        );
        return;
      }
      case 'add':
      case 'swiglu': {
        const rows = c.rowsOf(r0);
        emit(
          this.launch(this.kernel({ op: ins.op }), ins.op, ew(rows, w(r0)), {
            out: buf(out()),
            a: buf(c.plain(V(a0))),
            b: buf(c.plain(V(a1))),
            count: count(rows, w(r0)),
          }),
        );
        return;
      }
      default:
        throw new PtxRenderError(`the PTX backend has no rendering for op '${ins.op}'`);
    }
  }

  finishSlots(memory: ReadonlyMap<string, MemoryPlan>): PtxSlot[] {
    const persistent = [...memory.values()].flatMap((m) => [...m.persistent]);
    const gemmOnly = (s: PtxSlot) =>
      s.kind === 'weight' &&
      s.layout === 'row-major' &&
      this.slots.has(`${s.name}@k-major`) &&
      !this.rowMajorUse.has(s.name);
    return [...this.slots.values()]
      .filter((s) => !gemmOnly(s))
      .map((s): PtxSlot => {
        if (s.kind === 'arena') return { ...s, bytes: this.arenaBytes };
        if (s.kind !== 'persistent') return s;
        const place = persistent.find(([n]) => n === s.name)?.[1];
        if (!place) throw new PtxRenderError(`resource ${s.name} has no place in the memory plan`);
        return { ...s, bytes: place.bytes };
      });
  }
}

interface Ctx {
  launches: Launch[];
  loc: Map<number, Loc>;
  lazy: Map<number, Lazy>;
  weightOf: Map<number, { name: string; shape: readonly number[] }>;
  store: (v: Value) => Loc;
  plain: (v: Value) => Loc;
  ptr: (v: Value) => Loc;
  rowsOf: (v: Value) => Dim;
  uses: Map<number, number>;
  done: Set<Instr>;
}

/** Renders every phase of a compiled plan: PTX files of the kernels used, and the launch manifest. */
export function renderPtx(
  config: ModelConfig,
  phases: ReadonlyMap<string, StepProgram>,
  kernels: ReadonlyMap<string, KernelProgram>,
  memory: ReadonlyMap<string, MemoryPlan>,
  opts: PtxRenderOptions,
): PtxRender {
  const full: Required<PtxRenderOptions> = { gemm: 'mma-f16', ...opts };
  const r = new Renderer(config, full);
  r.slot('arena', 'arena', 0);
  const manifestPhases: Record<string, PtxStage[]> = {};
  for (const [name, p] of phases) {
    const kp = kernels.get(name);
    const mem = memory.get(name);
    if (!kp || !mem) throw new PtxRenderError(`phase ${name} has no kernels or memory plan`);
    manifestPhases[name] = r.renderPhase(p, kp, mem, new Map());
  }
  const files = new Map<string, string>();
  const infos: Record<string, PtxKernelInfo> = {};
  for (const k of [...r.kernels.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    files.set(k.name, k.ptx);
    infos[k.name] = {
      file: `${k.name}.ptx`,
      kind: k.kind,
      block: k.block,
      sharedBytes: k.sharedBytes,
      params: k.params.map((p) => ({
        name: p.name,
        type: p.type,
        ...(p.nullable ? { nullable: true } : {}),
      })),
    };
  }
  return {
    files,
    manifest: {
      arch: full.arch,
      ptxVersion: PTX_VERSION,
      gemm: full.gemm,
      model: config.name,
      maxCanvas: full.maxCanvas,
      slots: r.finishSlots(memory),
      sizes: [...r.sizes],
      arenaBytes: r.arenaBytes,
      kernels: infos,
      phases: manifestPhases,
    },
  };
}

/** compilePlan for the `ptx` target, then renderPtx. */
export function renderPlanPtx(
  plan: CheckedPlan,
  config: ModelConfig,
  opts: PtxRenderOptions,
): PtxRender & { readonly kernelCount: number } {
  const { state } = compilePlan(plan, config, { target: 'ptx', canvas: opts.maxCanvas });
  if (!state.kernels || !state.memory) throw new PtxRenderError('the pipeline produced no kernels');
  const out = renderPtx(config, state.phases, state.kernels, state.memory, opts);
  return { ...out, kernelCount: [...state.kernels.values()].reduce((a, kp) => a + kp.kernels.length, 0) };
}

/** Evaluates a launch dimension for concrete sizes. */
export function evalLaunchDim(d: LaunchDim, size: (name: string) => number): number {
  const s = typeof d.size === 'number' ? d.size : size(d.size);
  return Math.ceil((s * d.mul) / d.div);
}
