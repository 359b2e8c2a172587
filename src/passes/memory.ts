/**
 * Memory planning: where each buffer of a phase's kernel program lives. Temps share one arena
 * (best fit over live ranges of the linear kernel schedule); persistent caches get their own
 * region; inputs and weights are host-provided and not placed. WebGPU gets the whole-buffer mode:
 * temps are assigned to numbered buffers ("slots") instead of offsets. See docs/passes-memory.md.
 */
import { type Dim, type Instr, shapeOf, type Value } from '../ir/types.ts';
import type { ModelConfig } from '../model/config.ts';
import { type Buffer, dtypeBytes, type KernelProgram } from './kernelIR.ts';
import { inPlaceOverlays } from './overlays.ts';
import type { Pass, Target } from './state.ts';

export interface Placement {
  readonly offset: number;
  readonly bytes: number;
  /** Whole-buffer mode: the slot (numbered buffer) holding this temp; `offset` is the slot's base. */
  readonly slot?: number;
}

export interface Slot {
  readonly index: number;
  /** The slot's size: the largest occupant, rounded to the alignment. */
  readonly bytes: number;
  /** Base offset of the slot if the slots were laid end to end (for checks and dumps only). */
  readonly offset: number;
  /** Its temps, in the order they occupy it. */
  readonly occupants: readonly string[];
}

export interface MemoryPlan {
  /** Temps: offset in the arena (or, whole-buffer mode, the base of their slot) and size. */
  readonly arena: ReadonlyMap<string, Placement>;
  /** Persistent buffers: offset within the persistent region, size for the maximum canvas × batch. */
  readonly persistent: ReadonlyMap<string, Placement>;
  /** Arena size, or the sum of the slot sizes in whole-buffer mode. */
  readonly peakBytes: number;
  /** Sum of the sizes of all placed temps: the memory needed with no reuse. */
  readonly naiveBytes: number;
  /** Size of the persistent region. */
  readonly persistentBytes: number;
  /** Temp → [first kernel, last kernel], inclusive, in schedule order. */
  readonly liveRanges: ReadonlyMap<string, readonly [number, number]>;
  /** Whole-buffer mode only: the numbered buffers temps were assigned to. */
  readonly slots?: readonly Slot[];
  /**
   * With `inPlace`: temps that take another's storage, a scatter's result → its base (the root of
   * a chain: the base's own base when that was one too). See `inPlaceScatters`.
   */
  readonly aliases?: ReadonlyMap<string, string>;
  /**
   * With `inPlace`: overlays of a cache read in place (src/passes/overlays.ts), `%id` → the size of
   * their write-back's list. The backend writes the fresh rows into the cache instead of copying it
   * whole; rows it must not leave there are saved and restored.
   */
  readonly overlays?: ReadonlyMap<string, Dim>;
  readonly align: number;
  readonly wholeBuffer: boolean;
  readonly batch: number;
}

export interface MemoryOptions {
  readonly align: number;
  readonly wholeBuffer: boolean;
  /** Sequences per batch; scales the persistent region (default 1). */
  readonly batch?: number;
  /**
   * A scatter's result may take its base's storage where the base dies (`inPlaceScatters`): the
   * backend then writes the scattered rows over the base instead of copying all of it first. For
   * arena backends that compare the two places at run time (the C renderer); not whole buffers.
   */
  readonly inPlace?: boolean;
}

export const alignFor: Readonly<Record<Target, number>> = { reference: 8, cpu: 64, wgsl: 256, ptx: 256 };

export const defaultCanvas = 1024;

const roundUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Bytes of a buffer for concrete dims, rounded up to the alignment; at least one alignment unit. */
export function bufferBytes(b: Buffer, size: (d: Dim) => number, align: number): number {
  const raw = b.shape.reduce<number>((p, d) => p * size(d), dtypeBytes[b.dtype]);
  return roundUp(Math.max(raw, 1), align);
}

/**
 * Live ranges of the temps over the linear schedule: from the first kernel writing the temp to the
 * last kernel reading (or writing) it, inclusive; with `withLocals`, each kernel's local buffers too,
 * live over their kernel. A temp never used is absent. Throws on a temp read
 * before any kernel wrote it, and on a kernel naming an undeclared buffer.
 */
export function liveRanges(kp: KernelProgram, withLocals = false): Map<string, [number, number]> {
  const kinds = new Map(kp.buffers.map((b) => [b.name, b.kind]));
  const ranges = new Map<string, [number, number]>();
  const undeclared = new Set<string>();
  const early: string[] = [];
  kp.kernels.forEach((k, i) => {
    for (const name of [...k.reads, ...k.indirect]) {
      const kind = kinds.get(name);
      if (kind === undefined) undeclared.add(name);
      if (kind !== 'temp') continue;
      const r = ranges.get(name);
      if (r === undefined || r[0] >= i) early.push(`${name} (kernel ${k.name})`);
      else r[1] = i;
    }
    for (const name of k.writes) {
      const kind = kinds.get(name);
      if (kind === undefined) undeclared.add(name);
      if (kind !== 'temp') continue;
      const r = ranges.get(name);
      if (r === undefined) ranges.set(name, [i, i]);
      else r[1] = Math.max(r[1], i);
    }
    if (!withLocals) return;
    // A gather several kernels fold in (each recomputing it) is a local of each: live over all.
    for (const name of k.locals ?? []) {
      if (kinds.get(name) !== 'local') undeclared.add(name);
      const r = ranges.get(name);
      if (r === undefined) ranges.set(name, [i, i]);
      else r[1] = i;
    }
  });
  if (undeclared.size > 0) {
    throw new Error(`${kp.name}: kernels use undeclared buffers: ${[...undeclared].join(', ')}`);
  }
  if (early.length > 0) {
    throw new Error(
      `${kp.name}: temps read before any kernel writes them: ${[...new Set(early)].join(', ')}`,
    );
  }
  return ranges;
}

/**
 * Scatters that can run in place: `r = scatter(b, rows, x)` in kernel i, where b and r are temps
 * of one size, b is last used by kernel i, and nothing reads b after the scatter: no later
 * instruction of kernel i, not x itself, and no view of b (a gather or reshape of it, which the
 * backends fold into where it is consumed, so it reads b there, not where it is defined) that any
 * of those reads or that kernel i leaves for another. Then r can live where b did: the rows it does
 * not replace are b's already (a canvas-sized copy a layer for the carried hidden state). A base
 * gives its storage once: a second scatter of it reads it after the first. Returns r → b.
 */
export function inPlaceScatters(
  kp: KernelProgram,
  ranges: ReadonlyMap<string, readonly [number, number]>,
  size: (d: Dim) => number,
): Map<string, string> {
  const byName = new Map(kp.buffers.map((b) => [b.name, b]));
  const temp = (name: string) => byName.get(name)?.kind === 'temp';
  const bytes = (name: string) => bufferBytes(byName.get(name) as Buffer, size, 1);
  const out = new Map<string, string>();
  kp.kernels.forEach((k, i) => {
    const nameOf = (v: { readonly id: number } | undefined) => (v && k.homes?.get(v.id)) ?? `%${v?.id}`;
    k.instrs.forEach((ins, j) => {
      if (ins.op !== 'scatter') return;
      const [r, b] = [`%${ins.results[0]?.id}`, nameOf(ins.args[0])];
      if (!temp(r) || !temp(b) || !k.writes.includes(r)) return;
      if (ranges.get(b)?.[1] !== i || bytes(r) !== bytes(b)) return;
      const views = new Set([b]);
      for (const x of k.instrs)
        if ((x.op === 'gather' || x.op === 'reshape') && views.has(nameOf(x.args[0])))
          for (const v of x.results) views.add(`%${v.id}`);
      const reads = (x: Instr) => x.args.some((a) => views.has(nameOf(a)));
      if (ins.args.slice(1).some((a) => views.has(nameOf(a)))) return;
      if (k.instrs.slice(j + 1).some(reads) || k.writes.some((w) => w !== b && views.has(w))) return;
      out.set(r, b);
    });
  });
  return out;
}

/** The root of each alias chain: r → b → b' gives r → b'. */
function rootsOf(aliases: ReadonlyMap<string, string>): Map<string, string> {
  const root = (n: string): string => {
    const b = aliases.get(n);
    return b === undefined ? n : root(b);
  };
  return new Map([...aliases.keys()].map((r) => [r, root(r)]));
}

const overlaps = (a: readonly [number, number], b: readonly [number, number]): boolean =>
  a[0] <= b[1] && b[0] <= a[1];

interface Item {
  readonly name: string;
  readonly bytes: number;
  readonly range: readonly [number, number];
}

/** Best fit: for each temp in order of first use, the smallest free gap among the live temps. */
function bestFit(items: readonly Item[]): { offsets: Map<string, number>; size: number } {
  const placed: { item: Item; offset: number }[] = [];
  const offsets = new Map<string, number>();
  let size = 0;
  for (const item of items) {
    const live = placed.filter((p) => overlaps(p.item.range, item.range)).sort((a, b) => a.offset - b.offset);
    let best: { start: number; len: number } | undefined;
    const consider = (start: number, len: number) => {
      if (len >= item.bytes && (best === undefined || len < best.len)) best = { start, len };
    };
    let cursor = 0;
    for (const p of live) {
      if (p.offset > cursor) consider(cursor, p.offset - cursor);
      cursor = Math.max(cursor, p.offset + p.item.bytes);
    }
    if (size > cursor) consider(cursor, size - cursor);
    const offset = best === undefined ? cursor : best.start;
    placed.push({ item, offset });
    offsets.set(item.name, offset);
    size = Math.max(size, offset + item.bytes);
  }
  return { offsets, size };
}

/**
 * Whole-buffer mode: each temp, in order of first use, takes a slot whose last occupant died before
 * it starts — the smallest that is big enough, else the largest free one (grown), else a new one.
 */
function assignSlots(items: readonly Item[]): { slotOf: Map<string, number>; slots: Slot[] } {
  const state: { bytes: number; end: number; occupants: string[] }[] = [];
  const slotOf = new Map<string, number>();
  for (const item of items) {
    let fit = -1;
    let largest = -1;
    state.forEach((s, i) => {
      if (s.end >= item.range[0]) return;
      if (s.bytes >= item.bytes && (fit < 0 || s.bytes < (state[fit]?.bytes ?? 0))) fit = i;
      if (largest < 0 || s.bytes > (state[largest]?.bytes ?? 0)) largest = i;
    });
    let index = fit >= 0 ? fit : largest;
    if (index < 0) {
      index = state.length;
      state.push({ bytes: 0, end: -1, occupants: [] });
    }
    const s = state[index] as (typeof state)[number];
    s.bytes = Math.max(s.bytes, item.bytes);
    s.end = item.range[1];
    s.occupants.push(item.name);
    slotOf.set(item.name, index);
  }
  let base = 0;
  const slots = state.map((s, index) => {
    const slot: Slot = { index, bytes: s.bytes, offset: base, occupants: s.occupants };
    base += s.bytes;
    return slot;
  });
  return { slotOf, slots };
}

/** Plans the memory of one kernel program for concrete sizes of its symbolic dims. */
export function planMemory(kp: KernelProgram, size: (d: Dim) => number, opts: MemoryOptions): MemoryPlan {
  const { align, wholeBuffer } = opts;
  const batch = opts.batch ?? 1;
  if (!Number.isInteger(align) || align < 1)
    throw new Error(`alignment must be a positive integer, got ${align}`);
  if (!Number.isInteger(batch) || batch < 1)
    throw new Error(`batch must be a positive integer, got ${batch}`);
  // Locals are planned only for whole buffers (WebGPU, which stores them); an arena backend keeps
  // them in a scratch area of the kernel producing them.
  const ranges = liveRanges(kp, wholeBuffer);

  const aliases = opts.inPlace && !wholeBuffer ? rootsOf(inPlaceScatters(kp, ranges, size)) : new Map();
  // A root's storage lives from its first use to its last alias's last.
  const span = new Map<string, [number, number]>();
  for (const [r, root] of aliases) {
    const [a, b] = [
      span.get(root) ?? (ranges.get(root) as [number, number]),
      ranges.get(r) as [number, number],
    ];
    span.set(root, [Math.min(a[0], b[0]), Math.max(a[1], b[1])]);
  }
  const items: Item[] = kp.buffers
    .map((b, order) => ({ b, order, range: span.get(b.name) ?? ranges.get(b.name) }))
    .filter(
      (x): x is { b: Buffer; order: number; range: [number, number] } =>
        (x.b.kind === 'temp' || x.b.kind === 'local') && !!x.range && !aliases.has(x.b.name),
    )
    .sort((x, y) => x.range[0] - y.range[0] || x.order - y.order)
    .map(({ b, range }) => ({ name: b.name, bytes: bufferBytes(b, size, align), range }));
  const naiveBytes = items.reduce((s, it) => s + it.bytes, 0);

  const arena = new Map<string, Placement>();
  let peakBytes: number;
  let slots: Slot[] | undefined;
  if (wholeBuffer) {
    const assigned = assignSlots(items);
    slots = assigned.slots;
    for (const it of items) {
      const slot = assigned.slotOf.get(it.name) as number;
      arena.set(it.name, { offset: (slots[slot] as Slot).offset, bytes: it.bytes, slot });
    }
    peakBytes = slots.reduce((s, sl) => s + sl.bytes, 0);
  } else {
    const fit = bestFit(items);
    for (const it of items)
      arena.set(it.name, { offset: fit.offsets.get(it.name) as number, bytes: it.bytes });
    for (const [r, root] of aliases) arena.set(r, arena.get(root) as Placement);
    peakBytes = fit.size;
  }

  const persistent = new Map<string, Placement>();
  let persistentBytes = 0;
  for (const b of kp.buffers) {
    if (b.kind !== 'persistent') continue;
    const bytes = bufferBytes(b, size, 1) * batch;
    const rounded = roundUp(bytes, align);
    persistent.set(b.name, { offset: persistentBytes, bytes: rounded });
    persistentBytes += rounded;
  }

  const live = new Map<string, readonly [number, number]>(items.map((it) => [it.name, it.range]));
  for (const r of aliases.keys()) live.set(r, ranges.get(r) as [number, number]);
  return {
    arena,
    persistent,
    peakBytes,
    naiveBytes,
    persistentBytes,
    liveRanges: live,
    ...(slots ? { slots } : {}),
    ...(aliases.size > 0 ? { aliases } : {}),
    align,
    wholeBuffer,
    batch,
  };
}

const disjoint = (a: Placement, b: Placement): boolean =>
  a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset;

/**
 * Checks a plan against its kernel program, recomputing liveness and sizes: returns one message
 * per violation (empty when the plan is sound).
 */
export function checkMemoryPlan(kp: KernelProgram, plan: MemoryPlan, size: (d: Dim) => number): string[] {
  const out: string[] = [];
  let ranges: Map<string, [number, number]>;
  try {
    ranges = liveRanges(kp, plan.wholeBuffer);
  } catch (e) {
    return [(e as Error).message];
  }
  const byName = new Map(kp.buffers.map((b) => [b.name, b]));
  const { align } = plan;

  for (const [name] of ranges) if (!plan.arena.has(name)) out.push(`temp ${name} is used but not placed`);
  for (const [name, p] of plan.arena) {
    const b = byName.get(name);
    if (b?.kind !== 'temp' && !(plan.wholeBuffer && b?.kind === 'local')) {
      out.push(`${name} is in the arena but is not a temp`);
      continue;
    }
    if (p.offset < 0 || p.offset % align !== 0)
      out.push(`${name}: offset ${p.offset} is not aligned to ${align}`);
    const need = bufferBytes(b, size, align);
    if (p.bytes < need) out.push(`${name}: ${p.bytes} bytes placed, ${need} needed`);
    if (!plan.wholeBuffer && p.offset + p.bytes > plan.peakBytes) {
      out.push(`${name}: ends at ${p.offset + p.bytes}, beyond the arena (${plan.peakBytes})`);
    }
  }

  // Temps live together may share storage only as an in-place scatter and its base, recomputed
  // here from the program, not taken from the plan.
  const group = plan.aliases ? rootsOf(inPlaceScatters(kp, ranges, size)) : new Map<string, string>();
  for (const [r, root] of plan.aliases ?? [])
    if (group.get(r) !== root) out.push(`${r} shares ${root}'s storage, but is no in-place scatter of it`);
  const rootOf = (n: string) => group.get(n) ?? n;
  const placed = [...plan.arena].filter(([name]) => ranges.has(name));
  for (let i = 0; i < placed.length; i++) {
    for (let j = i + 1; j < placed.length; j++) {
      const [a, pa] = placed[i] as [string, Placement];
      const [b, pb] = placed[j] as [string, Placement];
      const ra = ranges.get(a) as [number, number];
      const rb = ranges.get(b) as [number, number];
      if (!overlaps(ra, rb)) continue;
      if (rootOf(a) === rootOf(b) && pa.offset === pb.offset && pa.bytes === pb.bytes) continue;
      const sameSlot = plan.wholeBuffer && pa.slot !== undefined && pa.slot === pb.slot;
      if (sameSlot || !disjoint(pa, pb)) {
        out.push(
          `${a} [${ra.join('..')}] and ${b} [${rb.join('..')}] are live together and overlap` +
            (sameSlot ? ` (slot ${pa.slot})` : ` (${pa.offset}+${pa.bytes}, ${pb.offset}+${pb.bytes})`),
        );
      }
    }
  }

  if (plan.wholeBuffer) {
    const slots = plan.slots ?? [];
    let base = 0;
    for (const s of slots) {
      if (s.offset !== base) out.push(`slot ${s.index}: base ${s.offset}, expected ${base}`);
      if (s.bytes % align !== 0) out.push(`slot ${s.index}: size ${s.bytes} is not aligned to ${align}`);
      base += s.bytes;
    }
    if (base !== plan.peakBytes) out.push(`peak ${plan.peakBytes} is not the sum of the slots (${base})`);
    for (const [name, p] of plan.arena) {
      const s = p.slot === undefined ? undefined : slots[p.slot];
      if (s === undefined) out.push(`${name}: no slot`);
      else if (p.bytes > s.bytes)
        out.push(`${name}: ${p.bytes} bytes do not fit slot ${s.index} (${s.bytes})`);
      else if (p.offset !== s.offset)
        out.push(`${name}: offset ${p.offset} is not the base of slot ${s.index}`);
    }
    for (const k of kp.kernels) {
      const slotOf = (n: string) => plan.arena.get(n)?.slot;
      for (const r of new Set([...k.reads, ...k.indirect])) {
        for (const w of new Set(k.writes)) {
          if (r === w) continue;
          const s = slotOf(r);
          if (s !== undefined && s === slotOf(w)) {
            out.push(`kernel ${k.name} reads ${r} and writes ${w}, both bound to slot ${s}`);
          }
        }
      }
    }
  }

  const pers = kp.buffers.filter((b) => b.kind === 'persistent');
  for (const b of pers) {
    const p = plan.persistent.get(b.name);
    if (p === undefined) {
      out.push(`persistent ${b.name} is not placed`);
      continue;
    }
    const need = bufferBytes(b, size, 1) * plan.batch;
    if (p.bytes < need)
      out.push(`persistent ${b.name}: ${p.bytes} bytes, ${need} needed (batch ${plan.batch})`);
    if (p.offset < 0 || p.offset % align !== 0)
      out.push(`persistent ${b.name}: offset ${p.offset} is not aligned`);
    if (p.offset + p.bytes > plan.persistentBytes)
      out.push(`persistent ${b.name}: beyond the persistent region`);
    if (plan.arena.has(b.name)) out.push(`persistent ${b.name} is also in the arena`);
  }
  for (const [name] of plan.persistent) {
    if (byName.get(name)?.kind !== 'persistent')
      out.push(`${name} is in the persistent region but is not persistent`);
  }
  const ps = [...plan.persistent];
  for (let i = 0; i < ps.length; i++) {
    for (let j = i + 1; j < ps.length; j++) {
      const [a, pa] = ps[i] as [string, Placement];
      const [b, pb] = ps[j] as [string, Placement];
      if (!disjoint(pa, pb)) out.push(`persistent ${a} and ${b} overlap`);
    }
  }
  return out;
}

/**
 * Concrete sizes for the symbolic dims: `L` is the canvas; an index list `#name` may hold every
 * position (worst case), so it is the canvas too; numbers are themselves.
 */
export function sizesFor(_config: ModelConfig, canvas: number): (d: Dim) => number {
  return (d) => {
    if (typeof d === 'number') return d;
    if (d === 'L' || d.startsWith('#')) return canvas;
    throw new Error(`unknown symbolic dimension '${d}'`);
  };
}

export const memoryPass: Pass = {
  name: 'memory',
  description: 'plans the arena (best fit over live ranges) and the persistent region of each phase',
  run(state, ctx) {
    if (state.kernels === undefined) throw new Error("the 'memory' pass needs kernels: run 'fusion' first");
    const size = sizesFor(ctx.config, ctx.canvas ?? defaultCanvas);
    const opts: MemoryOptions = {
      align: alignFor[ctx.target],
      wholeBuffer: ctx.target === 'wgsl',
      inPlace: ctx.target === 'cpu',
    };
    const memory = new Map<string, MemoryPlan>();
    for (const [phase, kp] of state.kernels) {
      const plan = planMemory(kp, size, opts);
      const overlays = new Map<string, Dim>();
      if (opts.inPlace)
        for (const stage of state.phases.get(phase)?.stages ?? [])
          for (const [id, write] of inPlaceOverlays(stage))
            overlays.set(`%${id}`, shapeOf((write.args[0] as Value).type)[0] as Dim);
      memory.set(phase, overlays.size > 0 ? { ...plan, overlays } : plan);
    }
    return { ...state, memory };
  },
};
