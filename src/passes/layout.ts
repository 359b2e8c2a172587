/**
 * Layout selection: each buffer of each phase's kernel program gets a memory layout for the target,
 * from a small table keyed by the buffer's role. See docs/passes-memory.md.
 */
import type { Buffer, KernelProgram } from './kernelIR.ts';
import type { Pass, Target } from './state.ts';

/**
 * What decides a buffer's layout:
 * - `gemm-weight`: a matrix weight some GEMM kernel (a projection or the LM head) reads as x · Wᵀ;
 * - `other`: everything else. K/V caches are `other`: every backend reads them row by row through
 *   the canvas index lists, so a head-major cache would only add a transposing copy per write.
 */
export type LayoutRole = 'gemm-weight' | 'other';

/**
 * Role × target → layout, which every backend realises (its GEMM refuses a weight in another
 * layout): `packed-k16` tiles a weight by 16 along the reduction dimension for the C micro-kernel;
 * `k-major` stores a weight transposed, [in, out], for coalesced PTX loads. A GEMM weight that
 * other kernels read too (the tied embedding table, gathered by `embed`) keeps its row-major form
 * beside the GEMM's copy.
 */
export const layoutTable: Readonly<Record<LayoutRole, Readonly<Record<Target, string>>>> = {
  'gemm-weight': { reference: 'row-major', cpu: 'packed-k16', wgsl: 'row-major', ptx: 'k-major' },
  other: { reference: 'row-major', cpu: 'row-major', wgsl: 'row-major', ptx: 'row-major' },
};

/** The role of a buffer in a program: a 2-D weight is a GEMM weight when a GEMM kernel reads it (biases are 1-D). */
export function layoutRole(kp: KernelProgram, b: Buffer): LayoutRole {
  if (b.kind !== 'weight' || b.shape.length !== 2) return 'other';
  const gemm = kp.kernels.some((k) => (k.kind === 'gemm' || k.kind === 'logits') && k.reads.includes(b.name));
  return gemm ? 'gemm-weight' : 'other';
}

/** The program with every buffer's `layout` chosen for the target (a new object; the input is kept). */
export function chooseLayouts(kp: KernelProgram, target: Target): KernelProgram {
  return {
    ...kp,
    buffers: kp.buffers.map((b) => ({ ...b, layout: layoutTable[layoutRole(kp, b)][target] })),
  };
}

export const layoutPass: Pass = {
  name: 'layout',
  description: 'chooses the memory layout of each buffer for the target (caches, GEMM weights)',
  run(state, ctx) {
    if (state.kernels === undefined) throw new Error("the 'layout' pass needs kernels: run 'fusion' first");
    const kernels = new Map<string, KernelProgram>();
    for (const [phase, kp] of state.kernels) kernels.set(phase, chooseLayouts(kp, ctx.target));
    return { ...state, kernels };
  },
};
