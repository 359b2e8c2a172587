import { maskOperands } from '../../ir/ops.ts';
import type { Dim, Instr, IRType, Stage, StepProgram, Value } from '../../ir/types.ts';
import { rowWidth, shapeOf } from '../../ir/types.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { KernelProgram } from '../../passes/kernelIR.ts';
import type { MemoryPlan } from '../../passes/memory.ts';
import { describeFault, type Fault } from '../fault.ts';

/**
 * The C renderer: each stage of each phase becomes one C function that runs the stage's fused
 * kernels in order by calling the primitives of kvplan_cpu.h. Every long-lived buffer (weights,
 * caches, the arena, index lists) is a numbered slot allocated on the C side once; intermediate
 * values sit in the arena at the offsets of the memory plan, or, inside a kernel, in a scratch
 * area after it. Sizes that change per step (the canvas, index lists) arrive in an int array.
 */
export type SlotKind = 'weight' | 'persistent' | 'arena' | 'list' | 'tokens' | 'blocks' | 'seqs';

export interface Slot {
  readonly index: number;
  readonly name: string;
  readonly kind: SlotKind;
  /** Elements (float32 or int32) the slot holds. */
  readonly elements: number;
  /** For weights: the shape, and whether a packed copy is made for GEMMs. */
  readonly shape?: readonly number[];
  readonly packed?: boolean;
}

export interface StageEntry {
  readonly name: string;
  readonly fn: string;
  /** Where the stage expects its carried inputs and leaves its outputs, as float offsets into the arena. */
  readonly inputs: Readonly<Record<string, number>>;
  readonly outputs: Readonly<Record<string, number>>;
}

export interface CpuManifest {
  readonly maxCanvas: number;
  readonly slots: readonly Slot[];
  /** The size array passed to stage functions: index 0 is the canvas, then index lists by name. */
  readonly sizes: readonly string[];
  readonly arenaFloats: number;
  readonly phases: Readonly<Record<string, readonly StageEntry[]>>;
}

/** The largest head dimension kv_attention supports (KV_MAX_HEAD_DIM in kvplan_cpu.c). */
export const maxHeadDim = 1024;

export class RenderError extends Error {
  override readonly name = 'RenderError';
}

const product = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);
const cName = (s: string) => s.replace(/[^A-Za-z0-9]/g, '_');
/** A C float literal: `10000` alone would be an int, `10000f` is not C. */
const cFloat = (x: number): string => {
  if (!Number.isFinite(x)) throw new RenderError(`cannot render the number ${x}`);
  const t = String(x);
  return `${/[.eE]/.test(t) ? t : `${t}.0`}f`;
};

interface Lazy {
  readonly base: string;
  readonly rows: string;
}

/** A cache overlaid with fresh rows whose result is written back to the same cache at `writes`. */
interface Overlay {
  /** The C flag that says, at run time, that every fresh row is also written. */
  readonly flag: string;
  /** The cache_write that stores the overlay's rows back. */
  readonly write: Instr;
}

/**
 * Overlays `scatter(cache_read(R), rows, fresh)` whose only write-back is
 * `cache_write(R, writes, gather(overlay, writes))`, with no other read or write of R in the stage.
 * When rows ⊆ writes at run time (every plan that caches what it computes), writing the fresh rows
 * into R first and reading R in place gives the same values as copying R whole into the arena,
 * overlaying and writing back: the copy of the whole cache (a canvas of K or V per layer) is saved.
 */
function inPlaceOverlays(stage: Stage): Map<number, Overlay> {
  const byResult = new Map<number, Instr>();
  for (const ins of stage.body) for (const r of ins.results) byResult.set(r.id, ins);
  const touches = new Map<string, Instr[]>();
  for (const ins of stage.body)
    if (ins.op === 'cache_read' || ins.op === 'cache_write') {
      const r = String(ins.attrs.resource);
      touches.set(r, [...(touches.get(r) ?? []), ins]);
    }
  const found = new Map<number, Overlay>();
  for (const ins of stage.body) {
    if (ins.op !== 'scatter') continue;
    const base = byResult.get((ins.args[0] as Value).id);
    if (base?.op !== 'cache_read') continue;
    const all = touches.get(String(base.attrs.resource)) ?? [];
    const writes = all.filter((t) => t.op === 'cache_write');
    const write = writes[0];
    if (all.length !== 2 || !write) continue;
    const src = byResult.get((write.args[1] as Value).id);
    const result = ins.results[0] as Value;
    const sameList = (src?.args[1] as Value | undefined)?.id === (write.args[0] as Value).id;
    if (src?.op !== 'gather' || (src.args[0] as Value).id !== result.id || !sameList) continue;
    found.set(result.id, { flag: `inplace_${result.id}`, write });
  }
  return found;
}

class Renderer {
  readonly slots = new Map<string, Slot>();
  readonly sizes: string[] = ['L'];
  arenaFloats = 0;

  constructor(
    private readonly config: ModelConfig,
    private readonly maxCanvas: number,
  ) {}

  slot(name: string, kind: SlotKind, elements: number, extra: Partial<Slot> = {}): Slot {
    const have = this.slots.get(name);
    if (have) return have;
    const s: Slot = { index: this.slots.size, name, kind, elements, ...extra };
    this.slots.set(name, s);
    return s;
  }
  size(name: string): number {
    let i = this.sizes.indexOf(name);
    if (i < 0) i = this.sizes.push(name) - 1;
    return i;
  }
  dim(d: Dim): string {
    if (typeof d === 'number') return String(d);
    return `N[${this.size(d === 'L' ? 'L' : d)}]`;
  }
  worst(d: Dim): number {
    return typeof d === 'number' ? d : this.maxCanvas;
  }
  width(t: IRType): number {
    const w = rowWidth(t);
    if (w === undefined)
      throw new RenderError(`inner dimensions must be constants: ${JSON.stringify(shapeOf(t).slice(1))}`);
    return w;
  }

  renderPhase(
    phase: string,
    p: StepProgram,
    kp: KernelProgram,
    mem: MemoryPlan,
    carried: Map<string, string>,
  ): { code: string[]; stages: StageEntry[] } {
    const planned = new Map<string, number>();
    for (const [name, place] of mem.arena) planned.set(name, place.offset / 4);
    const scratchBase = Math.ceil(mem.peakBytes / 4 / 16) * 16;
    const code: string[] = [];
    const stages: StageEntry[] = [];
    for (const stage of p.stages) {
      const fn = `kvp_${cName(phase)}_${cName(stage.name)}`;
      const { lines, inputs, outputs } = this.renderStage(stage, kp, planned, scratchBase, carried);
      code.push(
        `/* phase ${phase}, stage ${stage.name} */`,
        `void ${fn}(const int32_t *N) {`,
        '  float *A = (float *)S[ARENA];',
        ...lines.map((l) => `  ${l}`),
        '}',
        '',
      );
      stages.push({ name: stage.name, fn, inputs, outputs });
    }
    return { code, stages };
  }

  private renderStage(
    stage: Stage,
    kp: KernelProgram,
    planned: Map<string, number>,
    scratchBase: number,
    carried: Map<string, string>,
  ) {
    const lines: string[] = [];
    const loc = new Map<number, string>();
    const lazy = new Map<number, Lazy>();
    const packedOf = new Map<number, string>();
    const types = new Map<number, IRType>();
    const inputs: Record<string, number> = {};
    for (const i of stage.inputs) {
      types.set(i.value.id, i.value.type);
      const t = i.value.type;
      switch (i.role) {
        case 'weight': {
          if (t.kind !== 'tensor') throw new RenderError(`weight ${i.name} is not a tensor`);
          const s = this.slot(i.name, 'weight', product(t.shape as number[]), { shape: t.shape as number[] });
          loc.set(i.value.id, `((float *)S[${s.index}])`);
          packedOf.set(i.value.id, `((float *)P[${s.index}])`);
          break;
        }
        case 'index':
          loc.set(i.value.id, `((int32_t *)S[${this.slot(`list:${i.name}`, 'list', this.maxCanvas).index}])`);
          this.size(`#${i.name}`);
          break;
        case 'positions':
          // Sized by the list whose rows it gives positions of (its type says which).
          loc.set(i.value.id, `((int32_t *)S[${this.slot(`list:${i.name}`, 'list', this.maxCanvas).index}])`);
          break;
        case 'tokens':
          loc.set(i.value.id, `((int32_t *)S[${this.slot('tokens', 'tokens', this.maxCanvas).index}])`);
          break;
        case 'blocks':
        case 'seqs':
          loc.set(i.value.id, `((int32_t *)S[${this.slot(i.role, i.role, this.maxCanvas).index}])`);
          break;
        case 'carried': {
          const buffer = carried.get(i.name);
          const off = buffer === undefined ? undefined : planned.get(buffer);
          if (off === undefined) throw new RenderError(`carried ${i.name} has no planned buffer`);
          loc.set(i.value.id, `(A + ${off})`);
          inputs[i.name] = off;
          break;
        }
      }
    }
    const idList = (v: Value) => {
      const l = loc.get(v.id);
      if (!l) throw new RenderError(`no location for %${v.id}`);
      return l;
    };
    const ptr = (v: Value): string => {
      const l = loc.get(v.id);
      if (l) return l;
      const g = lazy.get(v.id);
      if (g) throw new RenderError(`%${v.id} is a folded gather used where a plain buffer is needed`);
      throw new RenderError(`no location for %${v.id}`);
    };
    const rows = (v: Value) => this.dim(shapeOf(v.type)[0] as Dim);
    const overlays = inPlaceOverlays(stage);
    for (const k of kp.kernels.filter((x) => x.stage === stage.name)) {
      let scratch = scratchBase;
      const store = (v: Value): string => {
        const name = `%${v.id}`;
        const off = k.writes.includes(name) ? planned.get(name) : undefined;
        if (off !== undefined) return `(A + ${off})`;
        const here = scratch;
        scratch += Math.ceil((this.worst(shapeOf(v.type)[0] as Dim) * this.width(v.type)) / 16) * 16;
        this.arenaFloats = Math.max(this.arenaFloats, scratch);
        return `(A + ${here})`;
      };
      // A folded gather becomes a real copy when a consumer cannot read through an index list.
      const plain = (v: Value): string => {
        const g = lazy.get(v.id);
        if (!g) return ptr(v);
        const out = store(v);
        lines.push(`kv_copy_rows(${rows(v)}, ${this.width(v.type)}, ${g.base}, ${g.rows}, ${out}, 0);`);
        loc.set(v.id, out);
        lazy.delete(v.id);
        return out;
      };
      lines.push(`/* kernel ${k.name} (${k.kind}) */`);
      for (const ins of k.instrs) {
        // A view folded into an earlier kernel is already there; effects (cache writes) always run.
        const known = ins.results.length > 0 && ins.results.every((r) => loc.has(r.id) || lazy.has(r.id));
        if (known) continue;
        this.renderInstr(ins, {
          lines,
          loc,
          lazy,
          packedOf,
          store,
          plain,
          ptr,
          idList,
          rows,
          k: k.writes,
          overlays,
        });
      }
      // Values other kernels read must sit in their planned place.
      for (const ins of k.instrs)
        for (const r of ins.results) if (k.writes.includes(`%${r.id}`) && lazy.has(r.id)) plain(r);
    }
    const outputs: Record<string, number> = {};
    for (const o of stage.outputs) {
      const name = `%${o.value.id}`;
      const off = planned.get(name);
      if (off === undefined) throw new RenderError(`output ${o.name} of ${stage.name} has no planned buffer`);
      outputs[o.name] = off;
      carried.set(o.name, name);
    }
    return { lines, inputs, outputs };
  }

  private renderInstr(
    ins: Instr,
    c: {
      lines: string[];
      loc: Map<number, string>;
      lazy: Map<number, Lazy>;
      packedOf: Map<number, string>;
      store: (v: Value) => string;
      plain: (v: Value) => string;
      ptr: (v: Value) => string;
      idList: (v: Value) => string;
      rows: (v: Value) => string;
      k: readonly string[];
      overlays: ReadonlyMap<number, Overlay>;
    },
  ): void {
    const cfg = this.config;
    const [a0, a1, a2, a3, a4] = ins.args;
    const r0 = ins.results[0] as Value;
    const out = () => {
      const o = c.store(r0);
      c.loc.set(r0.id, o);
      return o;
    };
    const L = this.dim('L');
    const w = (v: Value) => this.width(v.type);
    const emit = (s: string) => c.lines.push(s);
    switch (ins.op) {
      case 'reshape':
        if (c.lazy.has((a0 as Value).id)) c.lazy.set(r0.id, c.lazy.get((a0 as Value).id) as Lazy);
        else c.loc.set(r0.id, c.ptr(a0 as Value));
        return;
      case 'gather':
        if ((a0 as Value).type.kind === 'index')
          throw new RenderError('gathering an index list is not supported by the CPU backend');
        c.lazy.set(r0.id, { base: c.plain(a0 as Value), rows: c.idList(a1 as Value) });
        return;
      case 'cache_read':
        c.loc.set(r0.id, `((float *)S[${this.slot(String(ins.attrs.resource), 'persistent', 0).index}])`);
        return;
      case 'cache_write': {
        const res = `((float *)S[${this.slot(String(ins.attrs.resource), 'persistent', 0).index}])`;
        const g = c.lazy.get((a1 as Value).id);
        const src = g ? `${g.base}, ${g.rows}` : `${c.plain(a1 as Value)}, 0`;
        const overlay = [...c.overlays.values()].find((o) => o.write === ins);
        emit(
          `${overlay ? `if (!${overlay.flag}) ` : ''}kv_copy_rows(${c.rows(a1 as Value)}, ${w(a1 as Value)}, ${src}, ${res}, ${c.idList(a0 as Value)});`,
        );
        return;
      }
      case 'embed':
        emit(`kv_embed(${c.rows(r0)}, ${w(r0)}, ${c.ptr(a0 as Value)}, ${c.idList(a1 as Value)}, ${out()});`);
        return;
      case 'scatter': {
        const overlay = c.overlays.get(r0.id);
        const fresh = `${c.rows(a2 as Value)}, ${w(r0)}, ${c.plain(a2 as Value)}, 0`;
        if (!overlay) {
          const o = out();
          emit(`memcpy(${o}, ${c.plain(a0 as Value)}, sizeof(float) * (size_t)${L} * ${w(r0)});`);
          emit(`kv_copy_rows(${fresh}, ${o}, ${c.idList(a1 as Value)});`);
          return;
        }
        const cache = c.plain(a0 as Value);
        const write = overlay.write.args[0] as Value;
        const o = `overlay_${r0.id}`;
        emit(
          `const int ${overlay.flag} = kv_rows_within(${c.rows(a2 as Value)}, ${c.idList(a1 as Value)}, ${c.rows(write)}, ${c.idList(write)}, ${L});`,
        );
        emit(`float *${o} = ${overlay.flag} ? ${cache} : ${c.store(r0)};`);
        emit(`if (!${overlay.flag}) memcpy(${o}, ${cache}, sizeof(float) * (size_t)${L} * ${w(r0)});`);
        emit(`kv_copy_rows(${fresh}, ${o}, ${c.idList(a1 as Value)});`);
        c.loc.set(r0.id, o);
        return;
      }
      case 'place': {
        const o = out();
        emit(`memset(${o}, 0, sizeof(float) * (size_t)${L} * ${w(r0)});`);
        emit(
          `kv_copy_rows(${c.rows(a0 as Value)}, ${w(r0)}, ${c.plain(a0 as Value)}, 0, ${o}, ${c.idList(a1 as Value)});`,
        );
        return;
      }
      case 'rmsnorm': {
        const g = c.lazy.get((a0 as Value).id);
        const x = g ? `${g.base}, ${g.rows}` : `${c.plain(a0 as Value)}, 0`;
        emit(
          `kv_rmsnorm(${c.rows(r0)}, ${w(r0)}, ${x}, ${c.ptr(a1 as Value)}, ${cFloat(Number(ins.attrs.eps))}, ${out()});`,
        );
        return;
      }
      case 'linear':
      case 'logits': {
        const g = c.lazy.get((a0 as Value).id);
        const x = g
          ? `${g.base}, ${w(a0 as Value)}, ${g.rows}`
          : `${c.plain(a0 as Value)}, ${w(a0 as Value)}, 0`;
        const packed = c.packedOf.get((a1 as Value).id);
        if (!packed) throw new RenderError(`${ins.op} needs a weight operand`);
        const bias = a2 ? c.ptr(a2) : '0';
        emit(
          `kv_gemm(${c.rows(r0)}, ${w(r0)}, ${w(a0 as Value)}, ${x}, ${packed}, ${bias}, ${out()}, ${w(r0)}, 0);`,
        );
        return;
      }
      case 'rope': {
        const o = out();
        const t = r0.type.kind === 'tensor' ? r0.type.shape : [];
        emit(`memcpy(${o}, ${c.plain(a0 as Value)}, sizeof(float) * (size_t)${c.rows(r0)} * ${w(r0)});`);
        emit(
          `kv_rope(${c.rows(r0)}, ${t[1]}, ${t[2]}, ${o}, ${c.idList(a1 as Value)}, ${cFloat(Number(ins.attrs.theta))});`,
        );
        return;
      }
      case 'attention': {
        const gk = c.lazy.get((a1 as Value).id);
        const gv = c.lazy.get((a2 as Value).id);
        if (!gk || !gv)
          throw new RenderError('attention expects its keys and values gathered from the canvas');
        const o = out();
        const lseV = ins.results[1] as Value;
        const lse = c.store(lseV);
        c.loc.set(lseV.id, lse);
        const mask = maskOperands(ins.args, ins.attrs);
        const blocks = mask.blocks && ins.attrs.mask === 'block_causal' ? c.idList(mask.blocks) : '0';
        const seqs = mask.seqs ? c.idList(mask.seqs) : '0';
        emit(
          `kv_attention(${c.rows(r0)}, ${c.rows(a4 as Value)}, ${cfg.heads}, ${cfg.kvHeads}, ${cfg.headDim}, ${cFloat(Number(ins.attrs.scale))}, ${c.plain(a0 as Value)}, ${gk.base}, ${gv.base}, ${c.idList(a3 as Value)}, ${gk.rows}, ${blocks}, ${seqs}, ${o}, ${lse});`,
        );
        return;
      }
      case 'merge': {
        const o = out();
        const lseV = ins.results[1] as Value;
        const lse = c.store(lseV);
        c.loc.set(lseV.id, lse);
        emit(`memcpy(${o}, ${c.plain(a0 as Value)}, sizeof(float) * (size_t)${c.rows(r0)} * ${w(r0)});`);
        emit(
          `memcpy(${lse}, ${c.plain(a1 as Value)}, sizeof(float) * (size_t)${c.rows(r0)} * ${cfg.heads});`,
        );
        emit(
          `kv_merge(${c.rows(r0)}, ${cfg.heads}, ${cfg.headDim}, ${o}, ${lse}, ${c.plain(a2 as Value)}, ${c.plain(a3 as Value)});`,
        );
        return;
      }
      case 'add':
        emit(
          `kv_add((int64_t)${c.rows(r0)} * ${w(r0)}, ${c.plain(a0 as Value)}, ${c.plain(a1 as Value)}, ${out()});`,
        );
        return;
      case 'swiglu':
        emit(
          `kv_swiglu((int64_t)${c.rows(r0)} * ${w(r0)}, ${c.plain(a0 as Value)}, ${c.plain(a1 as Value)}, ${out()});`,
        );
        return;
      default:
        throw new RenderError(`the CPU backend has no rendering for op '${ins.op}'`);
    }
  }
}

/**
 * Renders every phase of a compiled plan into one C translation unit and its manifest. An armed
 * fault (test only) becomes a define ahead of the primitives that the unit pastes in, so it is
 * part of the source, and hence of the compiled library's cache key.
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
  const body: string[] = [];
  const manifestPhases: Record<string, StageEntry[]> = {};
  for (const [name, p] of phases) {
    const kp = kernels.get(name);
    const mem = memory.get(name);
    if (!kp || !mem) throw new RenderError(`phase ${name} has no kernels or memory plan`);
    r.arenaFloats = Math.max(r.arenaFloats, Math.ceil(mem.peakBytes / 4 / 16) * 16);
    const { code, stages } = r.renderPhase(name, p, kp, mem, new Map());
    body.push(...code);
    manifestPhases[name] = stages;
  }
  const persistent = [...memory.values()].flatMap((m) => [...m.persistent]);
  const slots = [...r.slots.values()].map((s): Slot => {
    if (s.kind === 'arena') return { ...s, elements: r.arenaFloats };
    if (s.kind !== 'persistent') return s;
    const place = persistent.find(([n]) => n === s.name)?.[1];
    if (!place) throw new RenderError(`resource ${s.name} has no place in the memory plan`);
    return { ...s, elements: place.bytes / 4 };
  });
  const packs = slots.filter((s) => s.kind === 'weight' && s.shape?.length === 2);
  const source = [
    '/* Generated by kvplan; do not edit. */',
    ...(fault
      ? [
          `/* FAULT INJECTED (test only): ${describeFault(fault)}. */`,
          `#define KV_FAULT_${fault.primitive.toUpperCase()} ${cFloat(fault.factor)}`,
        ]
      : []),
    '#include "kvplan_cpu.h"',
    '#include <stdlib.h>',
    '#include <string.h>',
    '',
    `#define NSLOTS ${slots.length}`,
    `#define ARENA ${arena.index}`,
    'static void *S[NSLOTS];',
    'static float *P[NSLOTS];',
    '',
    '/*',
    ' * Slot i, 64-byte aligned, allocated on first use and poisoned with NaN on every call, so that',
    ' * a runner never sees what an earlier one left. One runner per loaded library at a time.',
    ' */',
    'void *kvp_slot(int i, int64_t bytes) {',
    '  if (i < 0 || i >= NSLOTS) return 0;',
    '  size_t n = ((size_t)bytes + 63) / 64 * 64;',
    '  if (!n) n = 64;',
    '  if (!S[i]) S[i] = aligned_alloc(64, n);',
    '  if (S[i]) memset(S[i], 0xff, n);',
    '  return S[i];',
    '}',
    '',
    '/* Packs the GEMM weights after they are loaded (again for every runner). */',
    'int kvp_prepare(void) {',
    ...packs.map((s) => {
      const [n, k] = s.shape as [number, number];
      return `  if (!P[${s.index}]) P[${s.index}] = aligned_alloc(64, ((size_t)kv_packed_size(${n}, ${k}) * 4 + 63) / 64 * 64);\n  if (!P[${s.index}]) return 0;\n  kv_pack_weight(${n}, ${k}, (const float *)S[${s.index}], P[${s.index}]);`;
    }),
    '  return 1;',
    '}',
    '',
    '/* The packed copy of weight slot i (0 before kvp_prepare, or for a slot that is not a GEMM weight). */',
    'float *kvp_packed(int i) { return i >= 0 && i < NSLOTS ? P[i] : 0; }',
    '',
    'void kvp_release(void) {',
    '  for (int i = 0; i < NSLOTS; i++) { free(S[i]); free(P[i]); S[i] = 0; P[i] = 0; }',
    '}',
    '',
    ...body,
  ].join('\n');
  return {
    source,
    manifest: { maxCanvas, slots, sizes: r.sizes, arenaFloats: r.arenaFloats, phases: manifestPhases },
  };
}
