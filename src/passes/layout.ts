/**
 * Layout selection: each buffer of each phase's kernel program gets a memory layout for the target,
 * from a small table keyed by the buffer's role. See docs/passes-memory.md.
 */
import type { Buffer, KernelProgram } from './kernelIR.ts';
import type { Pass, Target } from './state.ts';

/**
 * What decides a buffer's layout:
 * - `kv-cache`: a persistent K/V cache (name `kv.*`), logically [L, KVH, hd];
 * - `gemm-weight`: a weight read only by GEMM kernels (x · Wᵀ);
 * - `other`: everything else.
 */
export type LayoutRole = 'kv-cache' | 'gemm-weight' | 'other';

/**
 * Role × target → layout. `head-major` stores a cache as [KVH, L, hd] so that one head's keys are
 * contiguous for attention; `packed-k16` tiles a weight by 16 along the reduction dimension for the
 * C micro-kernel; `k-major` stores a weight transposed, [in, out], for coalesced PTX loads.
 */
export const layoutTable: Readonly<Record<LayoutRole, Readonly<Record<Target, string>>>> = {
  'kv-cache': { reference: 'row-major', cpu: 'head-major', wgsl: 'row-major', ptx: 'head-major' },
  'gemm-weight': { reference: 'row-major', cpu: 'packed-k16', wgsl: 'row-major', ptx: 'k-major' },
  other: { reference: 'row-major', cpu: 'row-major', wgsl: 'row-major', ptx: 'row-major' },
};

/**
 * The role of a buffer in a program. A weight is a GEMM weight only if GEMM kernels are its only
 * readers: a weight that is also gathered (tied embeddings) keeps the layout the gather expects.
 */
export function layoutRole(kp: KernelProgram, b: Buffer): LayoutRole {
  if (b.kind === 'persistent' && b.name.startsWith('kv.')) return 'kv-cache';
  if (b.kind === 'weight') {
    const readers = kp.kernels.filter((k) => k.reads.includes(b.name) || k.indirect.includes(b.name));
    if (readers.length > 0 && readers.every((k) => k.kind === 'gemm')) return 'gemm-weight';
  }
  return 'other';
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
