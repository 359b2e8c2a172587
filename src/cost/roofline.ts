/**
 * The roofline of one kernel: it takes max(FLOPs / peak, bytes / bandwidth), whichever resource it
 * exhausts first (DESIGN.md section 5). Kernel costs are the symbolic ones the fusion pass states
 * (src/passes/kernelIR.ts); this evaluates them at one step's index-list sizes, for a batch.
 */
import type { Dim } from '../ir/types.ts';
import {
  type Cost,
  dtypeBytes,
  type Kernel,
  type KernelKind,
  type KernelProgram,
} from '../passes/kernelIR.ts';

export interface Roofline {
  /** FLOP/s. */
  readonly peakFlops: number;
  /** Bytes/s. */
  readonly bandwidth: number;
}

export type Bound = 'compute' | 'memory';

export interface KernelCost {
  readonly name: string;
  /** The kernel's kind, or `probe` for a score probe the runtime runs between kernels. */
  readonly kind: KernelKind | 'probe';
  /** The matrices it reads, by their short names (`q_proj`, `lm_head`): what it is, in a report. */
  readonly weights: readonly string[];
  readonly flops: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly bound: Bound;
}

/** The roofline time of `flops` and `bytes`, and which of them sets it (memory on a tie of zeros). */
export function rooflineTime(flops: number, bytes: number, hw: Roofline): { seconds: number; bound: Bound } {
  const compute = flops / hw.peakFlops;
  const memory = bytes / hw.bandwidth;
  return compute > memory ? { seconds: compute, bound: 'compute' } : { seconds: memory, bound: 'memory' };
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

/**
 * The roofline cost of one kernel of `program`. Every term with a row dimension scales with the
 * batch (attention too: a sequence's queries attend to its own keys only); the weights do not.
 */
export function costKernel(k: Kernel, program: KernelProgram, s: Sizes, hw: Roofline): KernelCost {
  const f = split(k.flops, s.dim);
  const b = split(k.bytes, s.dim);
  const flops = s.batch * f.rows + f.constant;
  const bytes = s.batch * b.rows + weightBytes(k, program, b.constant, s);
  return {
    name: k.name,
    kind: k.kind,
    weights: matrices(k, program),
    flops,
    bytes,
    ...rooflineTime(flops, bytes, hw),
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
