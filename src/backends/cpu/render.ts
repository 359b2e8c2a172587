import { maskOperands } from '../../ir/ops.ts';
import type { Dim, Instr, Stage, StepProgram, Value } from '../../ir/types.ts';
import { shapeOf } from '../../ir/types.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { Kernel, KernelProgram } from '../../passes/kernelIR.ts';
import type { MemoryPlan } from '../../passes/memory.ts';
import { describeFault, type Fault } from '../fault.ts';
import {
  Arena,
  type Emitters,
  type Gather,
  type InputSlot,
  persistentBytes,
  pointwiseAttrs,
  pointwiseEmitters,
  pointwiseSignature,
  Target,
  type Walk,
  walkStage,
} from '../walk.ts';
import type { CpuManifest, Slot, SlotKind, StageEntry } from './manifest.ts';
import { cOverlays, type Overlay } from './overlays.ts';
import { gatheredPlacements } from './placements.ts';
import { type CPointwise, pointwise } from './pointwise.ts';
import { type StageCode, shareStages } from './share.ts';
import { slotTable } from './slots.ts';

export type * from './manifest.ts';

/**
 * The C renderer: each stage of each phase becomes one C function that runs the stage's fused
 * kernels in order by calling the primitives of kvplan_cpu.h. Every long-lived buffer (weights,
 * caches, the arena, index lists) is a numbered slot allocated on the C side once; intermediate
 * values sit in the arena at the offsets of the memory plan, or, inside a kernel, in a scratch
 * area after it. Sizes that change per step (the canvas, index lists) arrive in an int array.
 */

/** The largest head dimension kv_attention supports (KV_MAX_HEAD_DIM in kvplan_cpu.c). */
export const maxHeadDim = 1024;

export class RenderError extends Error {
  override readonly name = 'RenderError';
}

const cName = (s: string) => s.replace(/[^A-Za-z0-9]/g, '_');
/** A C float literal: `10000` alone would be an int, `10000f` is not C. */
const cFloat = (x: number): string => {
  if (!Number.isFinite(x)) throw new RenderError(`cannot render the number ${x}`);
  const t = String(x);
  return `${/[.eE]/.test(t) ? t : `${t}.0`}f`;
};
/** The C element type of a slot. */
const cType = { f32: 'float', i32: 'int32_t' } as const;

class Renderer {
  readonly slots = new Map<string, Slot>();
  readonly sizes: string[] = ['L'];
  arenaFloats = 0;

  constructor(
    readonly config: ModelConfig,
    readonly maxCanvas: number,
  ) {}

  slot(name: string, kind: SlotKind, elements: number, extra: Partial<Slot> = {}): Slot {
    const have = this.slots.get(name);
    if (have) return have;
    const s: Slot = { index: this.slots.size, name, kind, elements, ...extra };
    this.slots.set(name, s);
    return s;
  }
  /** Marks a weight slot another kernel reads as floats (see Slot.rowMajor). */
  readRowMajor(name: string): number {
    const s = this.slot(name, 'weight', 0);
    if (!s.rowMajor) this.slots.set(name, { ...s, rowMajor: true });
    return s.index;
  }
  /** The slot of a GEMM weight, marked for the packed copy kv_gemm reads. */
  pack(name: string): number {
    const s = this.slot(name, 'weight', 0);
    if (!s.packed) this.slots.set(name, { ...s, packed: true });
    return s.index;
  }
  size(name: string): number {
    let i = this.sizes.indexOf(name);
    if (i < 0) i = this.sizes.push(name) - 1;
    return i;
  }
  dim(d: Dim): string {
    return typeof d === 'number' ? String(d) : `N[${this.size(d)}]`;
  }

  renderPhase(phase: string, p: StepProgram, kp: KernelProgram, mem: MemoryPlan) {
    const arena = new Arena(mem, 4, 16, (m) => new RenderError(m));
    const schedule = { index: new Map(kp.kernels.map((k, i) => [k, i])), ranges: mem.liveRanges };
    const code: StageCode[] = [];
    const stages: StageEntry[] = [];
    const parts = stageParts(kp, p.stages);
    for (const stage of p.stages) {
      const fn = `kvp_${cName(phase)}_${cName(stage.name)}`;
      const t = new CStage(this, arena, stage, schedule);
      walkStage(stage, parts.get(stage.name) as KernelProgram, t, emitters, phase);
      t.restore(() => true);
      code.push({
        stage: stage.name,
        fn,
        title: `/* phase ${phase}, stage ${stage.name} */`,
        lines: t.lines,
      });
      stages.push({ name: stage.name, fn, inputs: t.inputs, outputs: arena.outputs(stage) });
    }
    this.arenaFloats = Math.max(this.arenaFloats, arena.high);
    return { code, stages };
  }
}

/**
 * Each stage's part of a kernel program: its kernels, and the buffers of its inputs (all that
 * walkStage reads of it). walkStage indexes what it is given, which for the whole program at
 * every stage grew with the square of the layer count (10 s of a 512-layer render).
 */
function stageParts(kp: KernelProgram, stages: readonly Stage[]): Map<string, KernelProgram> {
  const buffers = new Map(kp.buffers.map((b) => [b.name, b]));
  const kernels = new Map<string, Kernel[]>();
  for (const k of kp.kernels) {
    const list = kernels.get(k.stage);
    if (list) list.push(k);
    else kernels.set(k.stage, [k]);
  }
  return new Map(
    stages.map((st) => [
      st.name,
      {
        name: kp.name,
        kernels: kernels.get(st.name) ?? [],
        buffers: st.inputs.flatMap((i) => buffers.get(i.name) ?? []),
      },
    ]),
  );
}

/** One stage's C function body; locations are C pointer expressions. */
class CStage extends Target<string> {
  readonly backend = 'CPU';
  readonly lines: string[] = [];
  readonly inputs: Record<string, number> = {};
  readonly overlays: ReadonlyMap<number, Overlay>;
  readonly placements: ReadonlyMap<number, readonly Value[]>;
  /** Restores of in-place overlays, each due once the last kernel reading its overlay has run. */
  private readonly restores: { end: number; line: string }[] = [];
  /** The schedule index of the kernel being rendered. */
  private at = -1;

  constructor(
    readonly r: Renderer,
    private readonly arena: Arena,
    stage: Stage,
    /** The phase's kernels in schedule order and the live ranges of its temps over them. */
    private readonly schedule: {
      readonly index: ReadonlyMap<Kernel, number>;
      readonly ranges: ReadonlyMap<string, readonly [number, number]>;
    },
  ) {
    super(r.maxCanvas);
    this.overlays = cOverlays(stage);
    this.placements = gatheredPlacements(stage);
  }

  error(message: string): Error {
    return new RenderError(message);
  }
  slot(s: InputSlot): string {
    const slot = this.r.slot(s.name, s.kind, s.elements, s.shape ? { shape: s.shape } : {});
    if (s.size) this.r.size(s.size);
    return `((${cType[s.dtype]} *)S[${slot.index}])`;
  }
  carried(name: string): string {
    this.inputs[name] = this.arena.input(name);
    return `(A + ${this.inputs[name]})`;
  }
  resource(name: string): string {
    return `((float *)S[${this.r.slot(name, 'persistent', 0).index}])`;
  }
  enter(k: Kernel): void {
    const at = this.schedule.index.get(k) ?? Number.POSITIVE_INFINITY;
    this.restore((end) => end < at);
    this.at = at;
    this.arena.enter(k);
    this.lines.push(`/* kernel ${k.name} (${k.kind}) */`);
  }
  /**
   * Runs `line` after the last kernel that reads `v`. A value without a live range is read by no
   * other kernel, and may sit in the kernel's scratch, which the next kernel reuses: after this one.
   */
  restoreAfter(v: Value, line: string): void {
    const end = this.schedule.ranges.get(`%${v.id}`)?.[1] ?? this.at;
    this.restores.push({ end, line });
  }
  /** Emits the restores that are due, in the order they were asked for. */
  restore(due: (end: number) => boolean): void {
    for (const r of this.restores.filter((x) => due(x.end))) {
      this.emit(r.line);
      this.restores.splice(this.restores.indexOf(r), 1);
    }
  }
  /** Whether the memory plan put the scatter result `v` where its base is (no copy needed). */
  inPlace(v: Value): boolean {
    return this.arena.inPlace(v);
  }
  place(v: Value, view?: Value): string {
    return `(A + ${this.arena.place(v, () => this.elements(v), view)})`;
  }
  gather(v: Value, g: Gather<string>, out: string): void {
    this.emit(`kv_copy_rows(${this.rows(v)}, ${this.w(v)}, ${g.base}, ${g.rows}, ${out}, 0);`);
  }

  emit(line: string): void {
    this.lines.push(line);
  }
  rows(v: Value): string {
    return this.r.dim(shapeOf(v.type)[0] as Dim);
  }
  /** A row source: a folded gather read through its list, or a plain buffer (list 0). */
  source(c: Walk<string>, v: Value, stride = false): string {
    const g = c.gathered(v);
    if (g) return stride ? `${g.base}, ${this.w(v)}, ${g.rows}` : `${g.base}, ${g.rows}`;
    return stride ? `${c.plain(v)}, ${this.w(v)}, 0` : `${c.plain(v)}, 0`;
  }
}

const bytes = (n: string, w: number) => `sizeof(float) * (size_t)${n} * ${w}`;

/**
 * The GEMMs of `ins`'s kernel from `ins` on (`rest`: the kernel's instructions after it) that read
 * the same activation over the same rows (`rows`): the fusion pass puts a layer's projections of
 * one input in one kernel, q, k and v or gate and up, each followed by its epilogue. All of them
 * run now, in one call. Running a later one before the epilogues between is safe when it reads
 * nothing they compute, and the values of one kernel never share memory (the memory plan's live
 * ranges are whole kernels, and the arena's scratch is not reused within one); an effect (a cache
 * write) may write what the activation reads, so the search stops there.
 */
export function sameInputGemms(ins: Instr, rest: readonly Instr[], rows: (v: Value) => string): Instr[] {
  const group = [ins];
  const between = new Set<number>();
  for (const next of rest) {
    if (next.results.length === 0) break;
    if (
      next.op === ins.op &&
      next.args[0]?.id === ins.args[0]?.id &&
      rows(next.results[0] as Value) === rows(ins.results[0] as Value) &&
      next.args.every((a) => !between.has(a.id))
    )
      group.push(next);
    else for (const r of next.results) between.add(r.id);
  }
  return group;
}

const gemm = (ins: Instr, c: Walk<string>, t: CStage) => {
  const x = t.source(c, c.arg(ins, 0), true);
  const k = t.w(c.arg(ins, 0));
  const instrs = sameInputGemms(ins, c.rest, (v) => t.rows(v));
  for (const g of instrs.slice(1)) c.done.add(g);
  const group = instrs.map((g) => {
    const r0 = g.results[0] as Value;
    const a2 = g.args[2];
    return {
      i: t.r.pack(c.gemmWeight(g, 'packed-k16').name),
      n: t.w(r0),
      bias: a2 ? c.ptr(a2) : '0',
      out: c.out(r0),
      rows: t.rows(r0),
    };
  });
  // The weight's dtype is the loaded model's, known when the runner fills the slot (D[i]).
  const one = (g: (typeof group)[number]) => {
    const args = (packed: string) =>
      `${g.rows}, ${g.n}, ${k}, ${x}, ${packed}, ${g.bias}, ${g.out}, ${g.n}, 0`;
    return `if (D[${g.i}]) kv_gemm16(${args(`(const uint16_t *)P[${g.i}], D[${g.i}]`)}); else kv_gemm(${args(`(const float *)P[${g.i}]`)});`;
  };
  const [first] = group as [(typeof group)[number]];
  if (group.length === 1) {
    t.emit(one(first));
    return;
  }
  // Weights of one dtype (a model's): one call packs the activation once for all.
  const list = (f: (g: (typeof group)[number]) => string | number, sep = ', ') => group.map(f).join(sep);
  t.emit('{');
  t.emit(`  const int kvm_n[] = {${list((g) => g.n)}};`);
  t.emit(`  const float *const kvm_b[] = {${list((g) => g.bias)}};`);
  t.emit(`  float *const kvm_c[] = {${list((g) => g.out)}};`);
  t.emit(`  if (${list((g) => `!D[${g.i}]`, ' && ')}) {`);
  t.emit(`    const float *const kvm_w[] = {${list((g) => `(const float *)P[${g.i}]`)}};`);
  t.emit(`    kv_gemm_multi(${group.length}, ${first.rows}, ${k}, ${x}, kvm_n, kvm_w, kvm_b, kvm_c, kvm_n);`);
  const same = group.slice(1).map((g) => `D[${g.i}] == D[${first.i}]`);
  t.emit(`  } else if (${same.join(' && ')}) {`);
  t.emit(`    const uint16_t *const kvm_w[] = {${list((g) => `(const uint16_t *)P[${g.i}]`)}};`);
  t.emit(
    `    kv_gemm16_multi(${group.length}, ${first.rows}, ${k}, ${x}, kvm_n, kvm_w, D[${first.i}], kvm_b, kvm_c, kvm_n);`,
  );
  t.emit('  } else {');
  for (const g of group) t.emit(`    ${one(g)}`);
  t.emit('  }');
  t.emit('}');
};

/**
 * A pointwise op of ./pointwise.ts: a loop over its `rows × width` elements. The output is its own
 * buffer or exactly an operand's (the memory plan never overlaps two live buffers in part), so no
 * iteration reads what another writes: `ivdep` says so to gcc, which at -O2 otherwise left the loop
 * scalar for fear of an overlap (its cheapest cost model does not version loops for aliasing).
 * An operand gathered through an index list is read through it, row by row, instead of being
 * copied into a buffer of its own first (a cached step's residual rows, a skipped row's cached
 * attention and FFN outputs): the same additions, one pass over the rows instead of two. A gather's
 * base is live while the op runs, so the output is never in it.
 */
const pointwiseOp = (ins: Instr, c: Walk<string>, t: CStage) => {
  const r0 = ins.results[0] as Value;
  const spell = pointwise[ins.op] as CPointwise;
  const values = pointwiseAttrs(ins);
  const attrs = Object.fromEntries(
    pointwiseSignature(ins.op).attrs.map((a, i) => [a, cFloat(values[i] as number)]),
  );
  const gathers = ins.args.map((a) => c.gathered(a));
  const out = c.out(r0);
  if (gathers.every((g) => g === undefined)) {
    const n = `(int64_t)${t.rows(r0)} * ${t.w(r0)}`;
    const xs = ins.args.map((a) => `${c.plain(a)}[i]`);
    t.emit(`_Pragma("GCC ivdep") for (int64_t i = 0, n = ${n}; i < n; i++) ${out}[i] = ${spell(xs, attrs)};`);
    return;
  }
  const w = t.w(r0);
  const row = (g: Gather<string> | undefined, a: Value) =>
    g ? `${g.base} + (int64_t)${g.rows}[r] * ${w}` : `${c.plain(a)} + r * ${w}`;
  const xs = ins.args.map((a, i) => `(${row(gathers[i], a)})[j]`);
  t.emit(
    `for (int64_t r = 0, n = ${t.rows(r0)}; r < n; r++) { _Pragma("GCC ivdep") for (int64_t j = 0; j < ${w}; j++) (${out} + r * ${w})[j] = ${spell(xs, attrs)}; }`,
  );
};

const emitters: Emitters<string, CStage> = {
  cache_write: (ins, c, t) => {
    const [list, rows] = [c.arg(ins, 0), c.arg(ins, 1)];
    const res = t.resource(String(ins.attrs.resource));
    const src = t.source(c, rows);
    const overlay = [...t.overlays.values()].find((o) => o.write === ins);
    t.emit(
      `${overlay ? `if (${overlay.saved} < 0) ` : ''}kv_copy_rows(${t.rows(rows)}, ${t.w(rows)}, ${src}, ${res}, ${c.ptr(list)});`,
    );
  },
  embed: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const table = c.weight(c.arg(ins, 0));
    // A weight table is read in the dtype its slot holds (D[i]: a checkpoint's 16 bits stay so).
    const i = table && t.r.readRowMajor(table.name);
    const [ptr, dtype] = i === undefined ? [c.ptr(c.arg(ins, 0)), '0'] : [`S[${i}]`, `D[${i}]`];
    t.emit(`kv_embed(${t.rows(r0)}, ${t.w(r0)}, ${ptr}, ${dtype}, ${c.ptr(c.arg(ins, 1))}, ${c.out(r0)});`);
  },
  scatter: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const [base, list, vals] = [c.arg(ins, 0), c.arg(ins, 1), c.arg(ins, 2)];
    const L = t.r.dim('L');
    const overlay = t.overlays.get(r0.id);
    const fresh = `${t.rows(vals)}, ${t.w(r0)}, ${c.plain(vals)}, 0`;
    if (!overlay) {
      const o = c.out(r0);
      if (!t.inPlace(r0)) t.emit(`memcpy(${o}, ${c.plain(base)}, ${bytes(L, t.w(r0))});`);
      t.emit(`kv_copy_rows(${fresh}, ${o}, ${c.ptr(list)});`);
      return;
    }
    const cache = c.plain(base);
    const write = overlay.write.args[0] as Value;
    const o = `overlay_${r0.id}`;
    // The overlay's own place holds the saved rows, or the whole copy when saving cannot be done.
    const place = t.place(r0);
    const { saved, mark } = overlay;
    const rows = `${t.rows(vals)}, ${c.ptr(list)}`;
    t.emit(`unsigned char *${mark};`);
    t.emit(
      `const int ${saved} = kv_overlay_save(${rows}, ${t.rows(write)}, ${c.ptr(write)}, ${L}, ${t.w(r0)}, ${cache}, ${place}, &${mark});`,
    );
    t.emit(`float *${o} = ${saved} >= 0 ? ${cache} : ${place};`);
    t.emit(`if (${saved} < 0) memcpy(${o}, ${cache}, ${bytes(L, t.w(r0))});`);
    t.emit(`kv_copy_rows(${fresh}, ${o}, ${c.ptr(list)});`);
    t.restoreAfter(r0, `kv_overlay_restore(${rows}, ${L}, ${t.w(r0)}, ${place}, ${cache}, ${mark});`);
    c.bind(r0, o);
  },
  place: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const vals = c.arg(ins, 0);
    const o = c.out(r0);
    const [rows, L] = [c.arg(ins, 1), t.r.dim('L')];
    const clear = `memset(${o}, 0, ${bytes(L, t.w(r0))});`;
    // Read only at gathered rows: cleared unless every one of them is placed.
    const within = (t.placements.get(r0.id) ?? []).map(
      (list) => `kv_rows_within(${t.rows(list)}, ${c.ptr(list)}, ${t.rows(rows)}, ${c.ptr(rows)}, ${L})`,
    );
    t.emit(within.length > 0 ? `if (!(${within.join(' && ')})) ${clear}` : clear);
    t.emit(`kv_copy_rows(${t.rows(vals)}, ${t.w(r0)}, ${c.plain(vals)}, 0, ${o}, ${c.ptr(rows)});`);
  },
  rmsnorm: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const { per, d } = t.normed(r0, c.gathered(c.arg(ins, 0)) !== undefined);
    const x = t.source(c, c.arg(ins, 0));
    const eps = cFloat(Number(ins.attrs.eps));
    const n = per === 1 ? t.rows(r0) : `${t.rows(r0)} * ${per}`;
    t.emit(`kv_rmsnorm(${n}, ${d}, ${x}, ${c.ptr(c.arg(ins, 1))}, ${eps}, ${c.out(r0)});`);
  },
  linear: gemm,
  logits: gemm,
  rope: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    const o = c.out(r0);
    const shape = r0.type.kind === 'tensor' ? r0.type.shape : [];
    t.emit(`memcpy(${o}, ${c.plain(c.arg(ins, 0))}, ${bytes(t.rows(r0), t.w(r0))});`);
    t.emit(
      `kv_rope(${t.rows(r0)}, ${shape[1]}, ${shape[2]}, ${o}, ${c.ptr(c.arg(ins, 1))}, ${cFloat(Number(ins.attrs.theta))});`,
    );
  },
  attention: (ins, c, t) => {
    const cfg = t.r.config;
    const r0 = ins.results[0] as Value;
    const [gk, gv] = c.keysValues(ins);
    const o = c.out(r0);
    const lse = c.out(ins.results[1] as Value);
    const mask = maskOperands(ins.args, ins.attrs);
    const blocks = mask.blocks && ins.attrs.mask === 'block_causal' ? c.ptr(mask.blocks) : '0';
    const seqs = mask.seqs ? c.ptr(mask.seqs) : '0';
    const g = ins.attrs.kv_head;
    const [fn, only] = typeof g === 'number' ? ['kv_attention_kv_head', `, ${g}`] : ['kv_attention', ''];
    t.emit(
      `${fn}(${t.rows(r0)}, ${t.rows(c.arg(ins, 4))}, ${cfg.heads}, ${cfg.kvHeads}, ${cfg.headDim}, ${cFloat(Number(ins.attrs.scale))}, ${c.plain(c.arg(ins, 0))}, ${gk.base}, ${gv.base}, ${c.ptr(c.arg(ins, 3))}, ${gk.rows}, ${blocks}, ${seqs}, ${o}, ${lse}${only});`,
    );
  },
  merge: (ins, c, t) => {
    const cfg = t.r.config;
    const r0 = ins.results[0] as Value;
    const o = c.out(r0);
    const lse = c.out(ins.results[1] as Value);
    t.emit(`memcpy(${o}, ${c.plain(c.arg(ins, 0))}, ${bytes(t.rows(r0), t.w(r0))});`);
    t.emit(`memcpy(${lse}, ${c.plain(c.arg(ins, 1))}, ${bytes(t.rows(r0), cfg.heads)});`);
    t.emit(
      `kv_merge(${t.rows(r0)}, ${cfg.heads}, ${cfg.headDim}, ${o}, ${lse}, ${c.plain(c.arg(ins, 2))}, ${c.plain(c.arg(ins, 3))});`,
    );
  },
  swiglu: (ins, c, t) => {
    const r0 = ins.results[0] as Value;
    t.emit(
      `kv_swiglu((int64_t)${t.rows(r0)} * ${t.w(r0)}, ${c.plain(c.arg(ins, 0))}, ${c.plain(c.arg(ins, 1))}, ${c.out(r0)});`,
    );
  },
  ...pointwiseEmitters(pointwise, pointwiseOp),
};

/**
 * The lines that arm a test-only fault in C: a comment that says so, and the `KV_FAULT_<PRIMITIVE>`
 * define the primitives test (kvplan_cpu.c). They head the primitives' unit, so that a faulty
 * primitives library has a cache key of its own, and the plan's unit, so that its source says so.
 */
export function faultDefine(fault: Fault | undefined): string[] {
  if (!fault) return [];
  return [
    `/* FAULT INJECTED (test only): ${describeFault(fault)}. */`,
    `#define KV_FAULT_${fault.primitive.toUpperCase()} ${cFloat(fault.factor)}`,
  ];
}

/**
 * Renders every phase of a compiled plan into one C translation unit, which calls the primitives
 * of kvplan_cpu.h (a library of their own), and its manifest. An armed fault (test only) heads
 * the unit as it heads the primitives' (faultDefine), so that the source says so.
 */
export function renderC(
  config: ModelConfig,
  phases: ReadonlyMap<string, StepProgram>,
  kernels: ReadonlyMap<string, KernelProgram>,
  memory: ReadonlyMap<string, MemoryPlan>,
  maxCanvas: number,
  fault?: Fault,
): { source: string; manifest: CpuManifest } {
  // kv_attention reads masked keys from a zero row of at most this many floats.
  if (config.headDim > maxHeadDim)
    throw new RenderError(`head_dim ${config.headDim} exceeds the CPU backend's maximum ${maxHeadDim}`);
  const r = new Renderer(config, maxCanvas);
  const arena = r.slot('arena', 'arena', 0);
  const body: StageCode[] = [];
  const manifestPhases: Record<string, StageEntry[]> = {};
  for (const [name, p] of phases) {
    const kp = kernels.get(name);
    const mem = memory.get(name);
    if (!kp || !mem) throw new RenderError(`phase ${name} has no kernels or memory plan`);
    const { code, stages } = r.renderPhase(name, p, kp, mem);
    body.push(...code);
    manifestPhases[name] = stages;
  }
  const slots = [...r.slots.values()].map((s): Slot => {
    if (s.kind === 'arena') return { ...s, elements: r.arenaFloats };
    if (s.kind !== 'persistent') return s;
    return { ...s, elements: persistentBytes(memory, s.name, (m) => new RenderError(m)) / 4 };
  });
  const source = [
    '/* Generated by kvplan; do not edit. */',
    "/* mmap's MAP_ANONYMOUS is not ISO C: ask for it before any header. */",
    '#define _DEFAULT_SOURCE',
    ...faultDefine(fault),
    '#include "kvplan_cpu.h"',
    '#include <stdlib.h>',
    '#include <string.h>',
    '#include <sys/mman.h>',
    '',
    ...slotTable(slots, arena.index),
    ...shareStages(body),
  ].join('\n');
  return {
    source,
    manifest: { maxCanvas, slots, sizes: r.sizes, arenaFloats: r.arenaFloats, phases: manifestPhases },
  };
}
