import type { Dim } from '../../ir/types.ts';
import type { Arch, GemmPath, GemmSplitPolicy, GeneratedKernel, MmaDtype } from './kernels/index.ts';
import type { ParamType } from './kernels/ptx.ts';

/** The launch manifest the PTX renderer writes and the runner, the checks and the CLI read. */
/** `scratch`: device memory used within one launch sequence (split-K partials), nothing carried. */
export type SlotKind = 'weight' | 'persistent' | 'arena' | 'scratch' | 'list' | 'tokens' | 'blocks' | 'seqs';

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
  /**
   * A k-major slot of a weight stored in 16 bits: it holds the weight's own `bf16` / `f16` bits (2
   * bytes an element), read by the `kvp_gemm16_<dtype>` kernel. Absent: float32.
   */
  readonly dtype?: MmaDtype;
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
  /** The GEMM path of float32 weights; 16-bit weights are marked by their slots' `dtype`. */
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
  /** GEMM path of float32 weights: tensor cores with f16 (default) or bf16 inputs, or the f32 FMA path. */
  readonly gemm?: GemmPath;
  /**
   * Weights stored in 16 bits, by name: their GEMMs read them as they are (`kvp_gemm16_<dtype>`,
   * whatever `gemm` says). A weight not named here is float32.
   */
  readonly halfWeights?: ReadonlyMap<string, MmaDtype>;
  readonly maxCanvas: number;
  /** When a GEMM splits K (default GEMM_SPLIT, tuned for 132-SM GPUs); tests lower it for tiny models. */
  readonly split?: GemmSplitPolicy;
}

/** Evaluates a launch dimension for concrete sizes. */
export function evalLaunchDim(d: LaunchDim, size: (name: string) => number): number {
  const s = typeof d.size === 'number' ? d.size : size(d.size);
  return Math.ceil((s * d.mul) / d.div);
}
