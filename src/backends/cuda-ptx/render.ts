/**
 * The PTX renderer: for each phase of a compiled plan (compilePlan(plan, config, { target: 'ptx' })),
 * the launch sequence of every stage — which generated kernel, grid, block, dynamic shared memory
 * and how each parameter is bound — plus the PTX text of every kernel used.
 *
 * It renders the shared walk (../walk.ts) with the op → primitive mapping of the C renderer: each
 * IR instruction of a fused kernel becomes one or a few launches of the primitives in kernels/,
 * and every buffer is a named slot (weights, caches, index lists, the arena at the offsets of the
 * memory plan, with a scratch area after it). One fusion the C backend does not have: attention
 * followed by a merge of its result with another partial becomes one launch of the attention
 * kernel with the LSE merge in its epilogue.
 *
 * Sizes that change per step (the canvas `L`, index-list lengths `#name`) stay symbolic: grids
 * and count parameters are `ceil(size * mul / div)` of a named size, evaluated by the runner.
 */
import { maskOperands } from '../../ir/ops.ts';
import type { Dim, Instr, StepProgram, Value } from '../../ir/types.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { Kernel, KernelProgram } from '../../passes/kernelIR.ts';
import type { MemoryPlan } from '../../passes/memory.ts';
import {
  Arena,
  type Emitters,
  type Gather,
  type InputSlot,
  persistentBytes,
  pointwiseAttrs,
  pointwiseEmitters,
  pointwiseSignature,
  rowsDim,
  Target,
  type Walk,
  walkStage,
} from '../walk.ts';
import {
  ATT_PAIRS,
  EW_THREADS,
  GEMM_SPLIT,
  GEMM_TILE,
  type GeneratedKernel,
  gemmSplit,
  generateKernel,
  type KernelSpec,
  pointwise,
  pointwiseOperand,
} from './kernels/index.ts';
import { PTX_VERSION } from './kernels/ptx.ts';
import type {
  Binding,
  Launch,
  LaunchDim,
  LaunchParam,
  PtxKernelInfo,
  PtxRender,
  PtxRenderOptions,
  PtxSlot,
  PtxStage,
  SlotKind,
} from './manifest.ts';

export * from './manifest.ts';

export class PtxRenderError extends Error {
  override readonly name = 'PtxRenderError';
}

const ALIGN = 256;

interface Loc {
  readonly slot: string;
  readonly offset: number;
}

const buf = (l: Loc): Binding => ({ kind: 'buffer', slot: l.slot, offset: l.offset });
const NULL: Binding = { kind: 'null' };
const count = (size: Dim, mul = 1): Binding => ({ kind: 'count', size, mul });
const u32 = (value: number): Binding => ({ kind: 'u32', value });
const f32 = (value: number): Binding => ({ kind: 'f32', value });
const dim = (size: Dim, mul = 1, div = 1): LaunchDim => ({ size, mul, div });
const ONE = dim(1);
/** The grid of an elementwise kernel over `rows × per` items. */
const ew = (rows: Dim, per: number) => [dim(rows, per, EW_THREADS), ONE, ONE] as const;

class Renderer {
  readonly slots = new Map<string, PtxSlot>();
  readonly sizes = new Set<string>(['L']);
  readonly kernels = new Map<string, GeneratedKernel>();
  arenaBytes = 0;
  /** The largest scratch a launch sequence asked for (one slot serves every split GEMM in turn). */
  private scratchBytes = 0;
  /** Weights something other than a GEMM reads row-major (the embedding table). */
  readonly rowMajorUse = new Set<string>();
  private readonly bySpec = new Map<string, GeneratedKernel>();

  constructor(
    readonly config: ModelConfig,
    readonly opts: Required<PtxRenderOptions>,
  ) {}

  slot(name: string, kind: SlotKind, bytes: number, extra: Partial<PtxSlot> = {}): PtxSlot {
    const have = this.slots.get(name);
    if (have) return have;
    const s: PtxSlot = { name, kind, bytes, layout: 'row-major', ...extra };
    this.slots.set(name, s);
    return s;
  }
  kernel(spec: KernelSpec): GeneratedKernel {
    const key = JSON.stringify(spec);
    const have = this.bySpec.get(key);
    if (have) return have;
    const k = generateKernel(spec, this.opts.arch);
    this.bySpec.set(key, k);
    this.kernels.set(k.name, k);
    return k;
  }
  /** The scratch slot, large enough for `bytes`. */
  scratch(bytes: number): string {
    this.scratchBytes = Math.max(this.scratchBytes, bytes);
    return this.slot('scratch', 'scratch', 0).name;
  }
  note(d: Dim): Dim {
    if (typeof d === 'string') this.sizes.add(d);
    return d;
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

  renderPhase(phase: string, p: StepProgram, kp: KernelProgram, mem: MemoryPlan): PtxStage[] {
    const arena = new Arena(mem, 1, ALIGN, (m) => new PtxRenderError(m));
    const stages = p.stages.map((stage) => {
      const t = new PtxStageTarget(this, arena);
      walkStage(stage, kp, t, emitters, phase);
      return { name: stage.name, launches: t.launches, inputs: t.inputs, outputs: arena.outputs(stage) };
    });
    this.arenaBytes = Math.max(this.arenaBytes, arena.high);
    return stages;
  }

  finishSlots(memory: ReadonlyMap<string, MemoryPlan>): PtxSlot[] {
    const gemmOnly = (s: PtxSlot) =>
      s.kind === 'weight' &&
      s.layout === 'row-major' &&
      this.slots.has(`${s.name}@k-major`) &&
      !this.rowMajorUse.has(s.name);
    return [...this.slots.values()]
      .filter((s) => !gemmOnly(s))
      .map((s): PtxSlot => {
        if (s.kind === 'arena') return { ...s, bytes: this.arenaBytes };
        if (s.kind === 'scratch') return { ...s, bytes: this.scratchBytes };
        if (s.kind !== 'persistent') return s;
        return { ...s, bytes: persistentBytes(memory, s.name, (m) => new PtxRenderError(m)) };
      });
  }
}

/** One stage's launches; locations are slots and byte offsets. */
class PtxStageTarget extends Target<Loc> {
  readonly backend = 'PTX';
  readonly launches: Launch[] = [];
  readonly inputs: Record<string, number> = {};

  constructor(
    readonly r: Renderer,
    private readonly arena: Arena,
  ) {
    super(r.opts.maxCanvas);
  }

  error(message: string): Error {
    return new PtxRenderError(message);
  }
  slot(s: InputSlot): Loc {
    const slot = this.r.slot(s.name, s.kind, s.elements * 4, s.shape ? { shape: s.shape } : {});
    if (s.size) this.r.sizes.add(s.size);
    return { slot: slot.name, offset: 0 };
  }
  carried(name: string): Loc {
    this.inputs[name] = this.arena.input(name);
    return { slot: 'arena', offset: this.inputs[name] };
  }
  resource(name: string): Loc {
    return { slot: this.r.slot(name, 'persistent', 0).name, offset: 0 };
  }
  enter(k: Kernel): void {
    this.arena.enter(k);
    this.r.kernel({ op: 'copy_rows' });
  }
  place(v: Value, view?: Value): Loc {
    return { slot: 'arena', offset: this.arena.place(v, () => this.elements(v), view) };
  }
  gather(v: Value, g: Gather<Loc>, out: Loc): void {
    this.copyRows('gather', out, null, g.base, g.rows, this.rows(v), this.w(v));
  }

  rows(v: Value): Dim {
    return this.r.note(rowsDim(v));
  }
  emit(
    k: KernelSpec,
    op: string,
    grid: readonly [LaunchDim, LaunchDim, LaunchDim],
    bind: Record<string, Binding>,
  ) {
    this.launches.push(this.r.launch(this.r.kernel(k), op, grid, bind));
  }
  copyRows(op: string, dst: Loc, dstRows: Loc | null, src: Loc, srcRows: Loc | null, n: Dim, width: number) {
    this.emit({ op: 'copy_rows' }, op, ew(n, width), {
      dst: buf(dst),
      dst_rows: dstRows ? buf(dstRows) : NULL,
      src: buf(src),
      src_rows: srcRows ? buf(srcRows) : NULL,
      n: count(n),
      width: u32(width),
    });
  }
}

type T = PtxStageTarget;

const gemm = (ins: Instr, c: Walk<Loc>, t: T) => {
  const r0 = ins.results[0] as Value;
  const weight = c.gemmWeight(ins, 'k-major');
  const [n, k] = weight.shape as [number, number];
  if (n % 4 !== 0 || k % 4 !== 0)
    throw t.error(
      `${ins.op} ${weight.name}: the PTX GEMM needs both dimensions multiples of 4 (got [${n}, ${k}])`,
    );
  const half = t.r.opts.halfWeights.get(weight.name);
  const km = t.r.slot(`${weight.name}@k-major`, 'weight', n * k * (half ? 2 : 4), {
    shape: [k, n],
    layout: 'k-major',
    transposeOf: weight.name,
    ...(half ? { dtype: half } : {}),
  });
  const g = c.gathered(c.arg(ins, 0));
  const m = t.rows(r0);
  const bias = ins.args[2] ? buf(c.ptr(ins.args[2])) : NULL;
  const out = buf(c.out(r0));
  const { splits, kchunk } = gemmSplit(n, k, t.r.opts.maxCanvas, t.r.opts.split);
  // Split: the partials go to scratch, maxCanvas rows apart, and the reduction writes C (+ bias).
  const zstride = splits > 1 ? t.r.opts.maxCanvas * n : 0;
  const scratch = splits > 1 ? buf({ slot: t.r.scratch(splits * zstride * 4), offset: 0 }) : undefined;
  t.emit(
    half ? { op: 'gemm16', dtype: half } : { op: 'gemm', path: t.r.opts.gemm },
    splits > 1 ? `${ins.op} (K in ${splits} splits)` : ins.op,
    [dim(n, 1, GEMM_TILE.bn), dim(m, 1, GEMM_TILE.bm), dim(splits)],
    {
      c: scratch ?? out,
      a: buf(g ? g.base : c.plain(c.arg(ins, 0))),
      arows: g ? buf(g.rows) : NULL,
      w: buf({ slot: km.name, offset: 0 }),
      bias: scratch ? NULL : bias,
      m: count(m),
      n: u32(n),
      k: u32(k),
      lda: u32(k),
      ldc: u32(n),
      kchunk: u32(kchunk),
      zstride: u32(zstride),
    },
  );
  if (scratch)
    t.emit({ op: 'splitk_reduce' }, `${ins.op} (sum of the splits)`, ew(m, n), {
      out,
      ws: scratch,
      bias,
      count: count(m, n),
      n: u32(n),
      splits: u32(splits),
      zstride: u32(zstride),
    });
};

const swiglu = (ins: Instr, c: Walk<Loc>, t: T) => {
  const r0 = ins.results[0] as Value;
  const rows = t.rows(r0);
  t.emit({ op: 'swiglu' }, ins.op, ew(rows, t.w(r0)), {
    out: buf(c.out(r0)),
    a: buf(c.plain(c.arg(ins, 0))),
    b: buf(c.plain(c.arg(ins, 1))),
    count: count(rows, t.w(r0)),
  });
};

/** A pointwise op of kernels/pointwise.ts: its generated kernel over `rows × width` elements. */
const pointwiseOp = (ins: Instr, c: Walk<Loc>, t: T) => {
  const r0 = ins.results[0] as Value;
  const rows = t.rows(r0);
  const { arity, attrs } = pointwiseSignature(ins.op);
  const out = buf(c.out(r0));
  const operands = ins.args.map((a, k) => [pointwiseOperand(k), buf(c.plain(a))] as const);
  const values = pointwiseAttrs(ins);
  t.emit({ op: 'pointwise', fn: ins.op, arity, attrs }, ins.op, ew(rows, t.w(r0)), {
    out,
    ...Object.fromEntries(operands),
    ...Object.fromEntries(attrs.map((a, i) => [`attr_${a}`, f32(values[i] as number)])),
    count: count(rows, t.w(r0)),
  });
};

/**
 * Attention, with the merge the fusion pass folded into it (Kernel.folds) computed in its
 * epilogue: the other partial is read there, and the merged result written where the merge's goes.
 */
const attention = (ins: Instr, c: Walk<Loc>, t: T) => {
  const cfg = t.r.config;
  const r0 = ins.results[0] as Value;
  const lseV = ins.results[1] as Value;
  const [gk, gv] = c.keysValues(ins);
  const folded = c.kernel?.folds?.find((f) => f.attention === r0.id);
  const merge = folded && c.rest.find((m) => m.op === 'merge' && m.results[0]?.id === folded.merge);
  if (folded && !merge)
    throw t.error(`the merge %${folded.merge} folded into this attention is not in its kernel`);
  const otherOf = (m: Instr) =>
    (m.args[0]?.id === r0.id ? [m.args[2], m.args[3]] : [m.args[0], m.args[1]]) as Value[];
  const fold = merge !== undefined;
  const prev = fold ? otherOf(merge).map((v) => c.plain(v)) : [];
  const o = c.out(fold ? (merge.results[0] as Value) : r0);
  const lse = c.out(fold ? (merge.results[1] as Value) : lseV);
  if (fold) c.done.add(merge);
  const kvRow = cfg.kvHeads * cfg.headDim;
  const nq = t.rows(r0);
  const mask = maskOperands(ins.args, ins.attrs);
  const blocks = ins.attrs.mask === 'block_causal' ? mask.blocks : undefined;
  const sequences = mask.seqs !== undefined;
  const group = cfg.heads / cfg.kvHeads;
  // One KV head alone (`kv_head`): the other heads hold the partial of an empty key set, and the
  // kernel runs one grid row over pointers moved to that KV head, as if it were head group 0.
  const only = typeof ins.attrs.kv_head === 'number' ? ins.attrs.kv_head : undefined;
  if (only !== undefined) {
    if (fold) throw t.error('an attention over one KV head cannot fold a merge');
    const fill = (at: Loc, per: number, value: number, what: string) =>
      t.emit({ op: 'fill' }, what, ew(nq, per), { out: buf(at), count: count(nq, per), value: f32(value) });
    fill(o, cfg.heads * cfg.headDim, 0, 'attention (other KV heads: output 0)');
    // A finite stand-in for -inf (the manifest is JSON): it weighs 0 in every merge with a real partial.
    fill(lse, cfg.heads, -3.0e38, 'attention (other KV heads: lse -3e38)');
  }
  const at = (l: Loc, floats: number): Binding => buf({ ...l, offset: l.offset + 4 * (only ?? 0) * floats });
  t.emit(
    { op: 'attention', headDim: cfg.headDim, merge: Boolean(fold), ...(sequences ? { sequences } : {}) },
    fold ? 'attention + merge' : only !== undefined ? `attention (KV head ${only})` : 'attention',
    [dim(nq, group, ATT_PAIRS), only !== undefined ? ONE : dim(cfg.kvHeads), ONE],
    {
      o: at(o, group * cfg.headDim),
      lse: at(lse, group),
      q: at(c.plain(c.arg(ins, 0)), group * cfg.headDim),
      k: at(gk.base, cfg.headDim),
      v: at(gv.base, cfg.headDim),
      qpos: buf(c.ptr(c.arg(ins, 3))),
      kpos: buf(gk.rows),
      blocks: blocks ? buf(c.ptr(blocks)) : NULL,
      nq: count(nq),
      nk: count(t.rows(c.arg(ins, 4))),
      heads: u32(cfg.heads),
      group: u32(cfg.heads / cfg.kvHeads),
      k_row_stride: u32(kvRow),
      k_head_stride: u32(cfg.headDim),
      v_row_stride: u32(kvRow),
      v_head_stride: u32(cfg.headDim),
      scale: f32(Number(ins.attrs.scale)),
      ...(fold ? { o_prev: buf(prev[0] as Loc), lse_prev: buf(prev[1] as Loc) } : {}),
      ...(mask.seqs ? { seqs: buf(c.ptr(mask.seqs)) } : {}),
    },
  );
};

const emitters: Emitters<Loc, T> = {
  cache_write: (ins, c, t) => {
    const resource = String(ins.attrs.resource);
    const [list, rows] = [c.arg(ins, 0), c.arg(ins, 1)];
    const g = c.gathered(rows);
    const res = t.resource(resource);
    const src = g ? g.base : c.plain(rows);
    t.copyRows(`cache_write ${resource}`, res, c.ptr(list), src, g ? g.rows : null, t.rows(rows), t.w(rows));
  },
  embed: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const table = c.ptr(c.arg(ins, 0));
    t.r.rowMajorUse.add(table.slot);
    t.emit({ op: 'embed' }, 'embed', ew(t.rows(r0), t.w(r0)), {
      out: buf(c.out(r0)),
      table: buf(table),
      ids: buf(c.ptr(c.arg(ins, 1))),
      n: count(t.rows(r0)),
      d: u32(t.w(r0)),
    });
  },
  scatter: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const o = c.out(r0);
    const vals = c.arg(ins, 2);
    t.copyRows('scatter (copy)', o, null, c.plain(c.arg(ins, 0)), null, 'L', t.w(r0));
    t.copyRows('scatter', o, c.ptr(c.arg(ins, 1)), c.plain(vals), null, t.rows(vals), t.w(r0));
  },
  place: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const vals = c.arg(ins, 0);
    const o = c.out(r0);
    t.emit({ op: 'fill' }, 'place (zero)', ew('L', t.w(r0)), {
      out: buf(o),
      count: count('L', t.w(r0)),
      value: f32(0),
    });
    t.copyRows('place', o, c.ptr(c.arg(ins, 1)), c.plain(vals), null, t.rows(vals), t.w(r0));
  },
  rmsnorm: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const g = c.gathered(c.arg(ins, 0));
    const { per, d } = t.normed(r0, g !== undefined);
    t.emit({ op: 'rmsnorm' }, 'rmsnorm', [dim(t.rows(r0), per), ONE, ONE], {
      out: buf(c.out(r0)),
      x: buf(g ? g.base : c.plain(c.arg(ins, 0))),
      rows: g ? buf(g.rows) : NULL,
      w: buf(c.ptr(c.arg(ins, 1))),
      n: count(t.rows(r0), per),
      d: u32(d),
      eps: f32(Number(ins.attrs.eps)),
    });
  },
  linear: gemm,
  logits: gemm,
  rope: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const shape = r0.type.kind === 'tensor' ? r0.type.shape : [];
    const heads = Number(shape[1]);
    const hd = Number(shape[2]);
    t.emit(
      { op: 'rope', headDim: hd, theta: Number(ins.attrs.theta) },
      'rope',
      ew(t.rows(r0), (heads * hd) / 2),
      {
        out: buf(c.out(r0)),
        x: buf(c.plain(c.arg(ins, 0))),
        pos: buf(c.ptr(c.arg(ins, 1))),
        n: count(t.rows(r0)),
        heads: u32(heads),
      },
    );
  },
  attention,
  merge: (ins, c, t) => {
    const cfg = t.r.config;
    const r0 = ins.results[0] as Value;
    const o = c.out(r0);
    const lse = c.out(ins.results[1] as Value);
    const rows = t.rows(r0);
    t.emit({ op: 'merge' }, 'merge', ew(rows, cfg.heads * cfg.headDim), {
      o: buf(o),
      lse: buf(lse),
      o1: buf(c.plain(c.arg(ins, 0))),
      lse1: buf(c.plain(c.arg(ins, 1))),
      o2: buf(c.plain(c.arg(ins, 2))),
      lse2: buf(c.plain(c.arg(ins, 3))),
      pairs: count(rows, cfg.heads),
      hd: u32(cfg.headDim),
    });
  },
  swiglu,
  ...pointwiseEmitters(pointwise, pointwiseOp),
};

/** Renders every phase of a compiled plan: PTX files of the kernels used, and the launch manifest. */
export function renderPtx(
  config: ModelConfig,
  phases: ReadonlyMap<string, StepProgram>,
  kernels: ReadonlyMap<string, KernelProgram>,
  memory: ReadonlyMap<string, MemoryPlan>,
  opts: PtxRenderOptions,
): PtxRender {
  const full: Required<PtxRenderOptions> = {
    gemm: 'mma-f16',
    halfWeights: new Map(),
    split: GEMM_SPLIT,
    ...opts,
  };
  const r = new Renderer(config, full);
  r.slot('arena', 'arena', 0);
  const manifestPhases: Record<string, PtxStage[]> = {};
  for (const [name, p] of phases) {
    const kp = kernels.get(name);
    const mem = memory.get(name);
    if (!kp || !mem) throw new PtxRenderError(`phase ${name} has no kernels or memory plan`);
    manifestPhases[name] = r.renderPhase(name, p, kp, mem);
  }
  // Not a plan's: the runner launches it on the head's logits (PtxRunner.head).
  r.kernel({ op: 'softmax_stats' });
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
