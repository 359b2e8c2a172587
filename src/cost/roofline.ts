/**
 * The roofline of one kernel: it takes max(FLOPs / peak, bytes / bandwidth), whichever resource it
 * exhausts first (DESIGN.md section 5), with the figures a machine's own kernels reach: on the CPU
 * (src/cost/probe.ts) GEMM weights stream slower than a plain copy, attention has its own peak,
 * and the part of the memory time the kernels do not hide under the arithmetic is measured and
 * added. Kernel costs are the symbolic ones the fusion pass states (src/passes/kernelIR.ts); this
 * evaluates them at one step's index-list sizes, for a batch.
 */
import type { Dim, Instr, IRType, Value } from '../ir/types.ts';
import {
  type Cost,
  dtypeBytes,
  type Kernel,
  type KernelKind,
  type KernelProgram,
  typeBytes,
} from '../passes/kernelIR.ts';

export interface Roofline {
  /** FLOP/s of the GEMMs (and of every kernel without its own peak). */
  readonly peakFlops: number;
  /** Bytes/s between memory and the cores, for activations, caches and hidden states. */
  readonly bandwidth: number;
  /**
   * Bytes/s at which a GEMM streams its weights from memory, when that differs from `bandwidth`
   * (on the CPU, kv_gemm's packed panels are read on demand, not streamed: about half a plain
   * stream's rate). Default: `bandwidth`.
   */
  readonly weightBandwidth?: number;
  /** FLOP/s of attention kernels, when the machine's attention kernel has its own. Default: `peakFlops`. */
  readonly attentionFlops?: number;
  /**
   * FLOP/s of the attention-mass kernel of score probes (softmax of each query's scores summed into
   * each key's mass), when it has its own. Default: `attentionFlops`.
   */
  readonly massFlops?: number;
  /**
   * How much of the shorter of a kernel's compute and memory times hides under the longer: 1 is
   * the pure roofline, max(compute, memory); 0 adds them, as a kernel that waits for each load
   * before computing on it does. Default 1.
   */
  readonly overlap?: number;
  /**
   * Bytes/s at which the runtime copies a hidden state of the canvas to the host, into a fresh
   * buffer, as it does before every layer for plans whose rules read model internals (attention
   * mass, query·key, rollout, value drift, similarity). Without it those copies are not costed.
   */
  readonly readbackBandwidth?: number;
}

export type Bound = 'compute' | 'memory';

export interface KernelCost {
  readonly name: string;
  /**
   * The kernel's kind; `probe` for a score probe the runtime runs between kernels, `readback` for
   * the copy of a hidden state to the host that such probes read.
   */
  readonly kind: KernelKind | 'probe' | 'readback';
  /** The matrices it reads, by their short names (`q_proj`, `lm_head`): what it is, in a report. */
  readonly weights: readonly string[];
  readonly flops: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly bound: Bound;
}

/**
 * The time of a kernel whose arithmetic takes `compute` seconds and whose memory traffic takes
 * `memory`: the longer of them, plus the part of the shorter that the machine does not overlap
 * with it (`overlap`), and which of them sets it (memory on a tie).
 */
export function overlapped(
  compute: number,
  memory: number,
  hw: Pick<Roofline, 'overlap'>,
): { seconds: number; bound: Bound } {
  const hidden = Math.min(1, Math.max(0, hw.overlap ?? 1));
  const seconds = Math.max(compute, memory) + (1 - hidden) * Math.min(compute, memory);
  return { seconds, bound: compute > memory ? 'compute' : 'memory' };
}

/**
 * The roofline time of `flops` and `bytes`, of which `weightBytes` are GEMM weights streamed at
 * the weight bandwidth, and which of them sets it (memory on a tie of zeros).
 */
export function rooflineTime(
  flops: number,
  bytes: number,
  hw: Roofline,
  o: { readonly weightBytes?: number; readonly peak?: number } = {},
): { seconds: number; bound: Bound } {
  const weights = o.weightBytes ?? 0;
  const memory = (bytes - weights) / hw.bandwidth + weights / (hw.weightBandwidth ?? hw.bandwidth);
  return overlapped(flops / (o.peak ?? hw.peakFlops), memory, hw);
}

/** What a step's kernels are costed at. */
export interface Sizes {
  /** The size of a symbolic dim for one sequence: `L`, or an index list's length `#name`. */
  readonly dim: (d: Dim) => number;
  /** Sequences sharing the canvas: their rows are packed into each kernel's index lists. */
  readonly batch: number;
  /** Bytes of one GEMM weight element as the backend holds it (the IR types weights f32). */
  readonly weightBytes: number;
}

/**
 * A cost's terms split by whether they name a symbolic dim. Every buffer but a weight has a row
 * dimension (the canvas or an index list), so the constant terms are the weights: read once per
 * kernel call whatever the batch, which is why a step of few rows is bound by weight traffic.
 */
function split(c: Cost, dim: (d: Dim) => number): { rows: number; constant: number } {
  let rows = 0;
  let constant = 0;
  for (const [coef, ...dims] of c) {
    const v = dims.reduce<number>((p, d) => p * (typeof d === 'number' ? d : dim(d)), coef);
    if (dims.some((d) => typeof d === 'string')) rows += v;
    else constant += v;
  }
  return { rows, constant };
}

/** Elements of a buffer at these sizes. */
const elements = (program: KernelProgram, name: string, dim: (d: Dim) => number): number =>
  (program.buffers.find((b) => b.name === name)?.shape ?? []).reduce<number>(
    (p, d) => p * (typeof d === 'number' ? d : dim(d)),
    1,
  );

/**
 * Weight bytes a kernel reads. An embedding reads one table row per row it writes: the fusion pass
 * counts its whole table (vocab x d_model, a gigabyte for the published vocabularies), which no
 * backend reads.
 */
function weightBytes(k: Kernel, program: KernelProgram, constant: number, s: Sizes): number {
  const asStored = (constant * s.weightBytes) / dtypeBytes.f32;
  if (k.kind !== 'embed') return asStored;
  const gathered = k.writes.reduce((a, w) => a + elements(program, w, s.dim), 0) * s.weightBytes * s.batch;
  return Math.min(asStored, gathered);
}

/** `model.layers.3.mlp.gate_proj.weight` is `gate_proj`. */
const shortName = (w: string): string =>
  w
    .replace(/^model\.(layers\.\d+\.)?/, '')
    .replace(/^(self_attn|mlp)\./, '')
    .replace(/\.weight$/, '');

const matrices = (k: Kernel, program: KernelProgram): string[] =>
  k.reads
    .filter((r) => {
      const b = program.buffers.find((x) => x.name === r);
      return b?.kind === 'weight' && b.shape.length === 2;
    })
    .map(shortName);

/** What costing reads of a program's memory plan (src/passes/memory.ts): what it does in place. */
export interface InPlace {
  /** Scatter results that take their base's storage, result -> base. */
  readonly aliases?: ReadonlyMap<string, string>;
  /** Overlays of a cache read in place, result -> the size of their write-back's list. */
  readonly overlays?: ReadonlyMap<string, Dim>;
}

/**
 * The bytes a kernel moves: the terms the fusion pass states, less what its in-place scatters
 * skip, as row terms (`rows`) and bytes of evaluated sizes (`extra`). Where the memory plan gives
 * a scatter's result its base's storage (`aliases`), the backend writes the scattered rows over
 * the base: it neither reads the base nor writes a whole result, only the rows' values. An overlay
 * of a cache read in place (`overlays`) writes its fresh rows into the cache, and saves and then
 * restores those the write-back does not store: at least max(0, rows - written) rows, each read
 * and written twice, which is what is counted (exact where the rows are all written back, or none
 * are; the write-back of rows already in place is left costed, two row copies an overlay).
 * Costed as copies of their bases, a drift refresh's restore of a few hidden rows, every cached
 * layer's residual rows, and every cached layer's K and V overlays counted a canvas each.
 */
function bytesMoved(
  k: Kernel,
  p: InPlace | undefined,
  dim: (d: Dim) => number,
): { rows: Cost; extra: number } {
  const inPlace = (i: Instr) =>
    i.op === 'scatter' &&
    !!i.results[0] &&
    (!!p?.aliases?.has(`%${i.results[0].id}`) || !!p?.overlays?.has(`%${i.results[0].id}`));
  const scatters = k.instrs.filter(inPlace);
  if (scatters.length === 0) return { rows: k.bytes, extra: 0 };
  const computed = new Set(k.instrs.flatMap((i) => i.results.map((r) => r.id)));
  const less = (t: IRType): Cost[number] => {
    const [coef, ...dims] = typeBytes(t);
    return [-coef, ...dims];
  };
  const skipped: Cost[number][] = [];
  let extra = 0;
  for (const i of scatters) {
    const r = i.results[0] as Value;
    const [base, , values] = i.args as [Value, Value, Value];
    // The fusion pass counts an argument computed outside the kernel as read, and the result as
    // written where another kernel reads it; in place, the rows' values are written instead.
    if (!computed.has(base.id)) skipped.push(less(base.type));
    if (k.writes.includes(`%${r.id}`)) skipped.push(less(r.type));
    skipped.push(typeBytes(values.type));
    const written = p?.overlays?.get(`%${r.id}`);
    if (written !== undefined) {
      const [coef, rows, ...row] = typeBytes(values.type);
      const perRow = row.reduce<number>((a, d) => a * dim(d), coef);
      extra += 4 * perRow * Math.max(0, dim(rows as Dim) - dim(written));
    }
  }
  return { rows: [...k.bytes, ...skipped], extra };
}

/**
 * The roofline cost of one kernel of `program`. Every term with a row dimension scales with the
 * batch (attention too: a sequence's queries attend to its own keys only); the weights do not.
 * `inPlace` is its program's memory plan: the scatters it runs in place move only their rows
 * (bytesMoved); without it every scatter copies its base.
 */
export function costKernel(
  k: Kernel,
  program: KernelProgram,
  s: Sizes,
  hw: Roofline,
  inPlace?: InPlace,
): KernelCost {
  const f = split(k.flops, s.dim);
  const moved = bytesMoved(k, inPlace, s.dim);
  const b = split(moved.rows, s.dim);
  const flops = s.batch * f.rows + f.constant;
  const weights = weightBytes(k, program, b.constant, s);
  const bytes = s.batch * (b.rows + moved.extra) + weights;
  // Only GEMM weights are streamed as packed panels; a gathered embedding row or a norm's vector
  // is read like any other buffer.
  const streamed = k.kind === 'gemm' || k.kind === 'logits' ? weights : 0;
  const peak = k.kind === 'attention' ? (hw.attentionFlops ?? hw.peakFlops) : hw.peakFlops;
  return {
    name: k.name,
    kind: k.kind,
    weights: matrices(k, program),
    flops,
    bytes,
    ...rooflineTime(flops, bytes, hw, { weightBytes: streamed, peak }),
  };
}

export interface StepCost {
  readonly seconds: number;
  readonly flops: number;
  readonly bytes: number;
  readonly kernels: readonly KernelCost[];
}

/** A step runs its kernels one after another: their times add up. */
export function stepCost(kernels: readonly KernelCost[]): StepCost {
  const sum = (f: (k: KernelCost) => number) => kernels.reduce((a, k) => a + f(k), 0);
  return { seconds: sum((k) => k.seconds), flops: sum((k) => k.flops), bytes: sum((k) => k.bytes), kernels };
}

/** One step of a compiled phase: every kernel of its program at the same sizes. */
export function costProgram(program: KernelProgram, s: Sizes, hw: Roofline): StepCost {
  return stepCost(program.kernels.map((k) => costKernel(k, program, s, hw)));
}

/**
 * The kernels of one step whose layers may have run different programs (`ran`: by layer number,
 * as StepInfo holds it): each layer's from the program it ran, the embedding's and the head's (the
 * same in every program) from the program of the step's first layer. A cached step that serves a
 * stored partial runs the `reuse` program, which skips what the `cached` one computes.
 */
export function ranKernels(
  programs: ReadonlyMap<string, KernelProgram>,
  ran: ReadonlyMap<number, string>,
): { readonly program: string; readonly kp: KernelProgram; readonly kernel: Kernel }[] {
  const first = ran.values().next().value;
  const out: { program: string; kp: KernelProgram; kernel: Kernel }[] = [];
  for (const name of new Set(ran.values())) {
    const kp = programs.get(name);
    if (!kp) throw new Error(`no kernels of the ${name} program`);
    for (const kernel of kp.kernels) {
      const layer = /^layer\.(\d+)\//.exec(kernel.name)?.[1];
      if (layer === undefined ? name === first : ran.get(Number(layer)) === name)
        out.push({ program: name, kp, kernel });
    }
  }
  return out;
}

/**
 * One step, each layer at the program it ran (ranKernels); `memory` holds each program's memory
 * plan, whose in-place scatters move only their rows (costKernel).
 */
export function costRan(
  programs: ReadonlyMap<string, KernelProgram>,
  ran: ReadonlyMap<number, string>,
  s: Sizes,
  hw: Roofline,
  memory?: ReadonlyMap<string, InPlace>,
): StepCost {
  return stepCost(
    ranKernels(programs, ran).map(({ program, kp, kernel }) =>
      costKernel(kernel, kp, s, hw, memory?.get(program)),
    ),
  );
}
