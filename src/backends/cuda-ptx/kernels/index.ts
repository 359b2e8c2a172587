/**
 * The kernel catalogue: a spec names a generator and its options; `generateKernel` turns it into
 * PTX for one architecture. Specs are plain data so that the renderer can collect and dedupe
 * them, and tests can enumerate them.
 */
import { attentionKernel } from './attention.ts';
import {
  copyRowsKernel,
  embedKernel,
  fillKernel,
  mergeKernel,
  pointwiseKernel,
  rmsnormKernel,
  ropeKernel,
  splitkReduceKernel,
  swigluKernel,
} from './elementwise.ts';
import { type GemmPath, gemm16Kernel, gemmKernel, type MmaDtype } from './gemm.ts';
import type { Arch, GeneratedKernel } from './ptx.ts';
import { softmaxStatsKernel } from './softmaxStats.ts';

export type KernelSpec =
  | { readonly op: 'gemm'; readonly path: GemmPath }
  /** The GEMM of a weight stored as `dtype` bits. */
  | { readonly op: 'gemm16'; readonly dtype: MmaDtype }
  | {
      readonly op: 'attention';
      readonly headDim: number;
      readonly merge: boolean;
      readonly sequences?: boolean;
    }
  | { readonly op: 'rope'; readonly headDim: number; readonly theta: number }
  | {
      readonly op: 'rmsnorm' | 'swiglu' | 'embed' | 'copy_rows' | 'fill' | 'merge' | 'splitk_reduce';
    }
  /** The runner's own: the softmax statistics of the head's logits. */
  | { readonly op: 'softmax_stats' }
  | {
      readonly op: 'pointwise';
      readonly fn: string;
      readonly arity: number;
      readonly attrs: readonly string[];
    };

export function generateKernel(spec: KernelSpec, arch: Arch): GeneratedKernel {
  switch (spec.op) {
    case 'gemm':
      return gemmKernel(arch, spec.path);
    case 'gemm16':
      return gemm16Kernel(arch, spec.dtype);
    case 'attention':
      return attentionKernel({ arch, ...spec });
    case 'rope':
      return ropeKernel(arch, spec.headDim, spec.theta);
    case 'rmsnorm':
      return rmsnormKernel(arch);
    case 'swiglu':
      return swigluKernel(arch);
    case 'pointwise':
      return pointwiseKernel(arch, spec.fn, spec.arity, spec.attrs);
    case 'embed':
      return embedKernel(arch);
    case 'copy_rows':
      return copyRowsKernel(arch);
    case 'fill':
      return fillKernel(arch);
    case 'merge':
      return mergeKernel(arch);
    case 'splitk_reduce':
      return splitkReduceKernel(arch);
    case 'softmax_stats':
      return softmaxStatsKernel(arch);
  }
}

export { ATT_KEYS, ATT_PAIRS, ATT_THREADS, attentionSharedBytes } from './attention.ts';
export { EW_THREADS, pointwiseOperand } from './elementwise.ts';
export {
  GEMM_PATHS,
  GEMM_SPLIT,
  GEMM_TILE,
  type GemmPath,
  type GemmSplit,
  type GemmSplitPolicy,
  gemmSplit,
  MMA_DTYPES,
  type MmaDtype,
  pathDtype,
  splitScratchBytes,
} from './gemm.ts';
export { pointwise } from './pointwise.ts';
export { ARCHES, type Arch, type GeneratedKernel, KernelGenError, type KernelParam } from './ptx.ts';
export { STATS_THREADS } from './softmaxStats.ts';
