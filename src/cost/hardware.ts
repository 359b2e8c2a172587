/**
 * The machines the cost advisor predicts for: a dense peak and a memory bandwidth each, which is
 * all a roofline needs. GPU peaks are the dense (no 2:4 sparsity) bf16/f16 tensor-core rates with
 * float32 accumulation, the form kvplan's PTX GEMMs use; datasheets print the sparse rate first, at
 * twice these. The CPU backend computes in float32, so `cpu` is the float32 peak of this machine as
 * its own GEMM reaches it (src/cost/probe.ts), not a datasheet figure.
 */
import { closest } from '../dsl/suggest.ts';
import type { Target } from '../passes/state.ts';
import type { Roofline } from './roofline.ts';

export type WeightDtype = 'f32' | 'bf16';

/**
 * A machine. The published ones give a peak and a bandwidth only: the pure roofline, weights
 * streamed at the bandwidth, memory traffic hidden under arithmetic. `cpu` also has the figures
 * its probe measures (Roofline's optional ones).
 */
export interface Hardware extends Roofline {
  /** The name `--hardware` takes. */
  readonly name: string;
  readonly description: string;
  /** Dense FLOP/s of the dtype named by `peakDtype`. */
  readonly peakFlops: number;
  readonly peakDtype: string;
  /** Bytes/s between memory and the cores. */
  readonly bandwidth: number;
  /**
   * The dtype GEMM weights are read in when the run does not say: 16 bits where the published
   * checkpoints are run (GPUs), float32 where kvplan's own benchmarks run (the CPU).
   */
  readonly weights: WeightDtype;
  /** The backend kvplan runs there. */
  readonly backend: Target;
  /** Where the figures come from. */
  readonly source: string;
}

const T = 1e12;

/** The published machines; `cpu` is measured, not listed. */
export const publishedHardware: readonly Hardware[] = [
  {
    name: 'h100',
    description: 'NVIDIA H100 SXM5 80GB',
    // Datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity, 989.4 dense; HBM3 3.35 TB/s.
    peakFlops: 989.4 * T,
    peakDtype: 'bf16 tensor core, dense',
    bandwidth: 3.35 * T,
    weights: 'bf16',
    backend: 'ptx',
    source: 'NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column)',
  },
  {
    name: 'h200',
    description: 'NVIDIA H200 SXM 141GB',
    // The H100's GH100 compute with HBM3e: BF16 Tensor Core 1,979 TFLOPS sparse; 4.8 TB/s.
    peakFlops: 989.4 * T,
    peakDtype: 'bf16 tensor core, dense',
    bandwidth: 4.8 * T,
    weights: 'bf16',
    backend: 'ptx',
    source: 'NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column)',
  },
  {
    name: 'a100',
    description: 'NVIDIA A100 SXM4 80GB',
    // Datasheet: BF16 Tensor Core 312 TFLOPS dense (624 sparse); HBM2e 2,039 GB/s.
    peakFlops: 312 * T,
    peakDtype: 'bf16 tensor core, dense',
    bandwidth: 2.039 * T,
    weights: 'bf16',
    backend: 'ptx',
    source: 'NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM column)',
  },
  {
    name: 'rtx4090',
    description: 'NVIDIA GeForce RTX 4090',
    // GeForce tensor cores run f16/bf16 with float32 accumulation at half their f16-accumulate
    // rate: 165.2 TFLOPS dense (330.3 sparse); GDDR6X, 384 bits at 21 Gbps = 1,008 GB/s.
    peakFlops: 165.2 * T,
    peakDtype: 'bf16 tensor core, f32 accumulate, dense',
    bandwidth: 1.008 * T,
    weights: 'bf16',
    backend: 'ptx',
    source: 'NVIDIA Ada Lovelace GPU architecture whitepaper, appendix A (GeForce RTX 4090)',
  },
  {
    name: 'm3max',
    description: 'Apple M3 Max, 16-core CPU / 40-core GPU',
    // Apple publishes the bandwidth (400 GB/s) but no FLOP figure. Third-party tables derive
    // 14.3-16.4 TFLOPS from the GPU's shape, 40 cores x 128 float32 lanes x 2 FLOP (FMA) at 1.4-1.6
    // GHz; the upper one is taken. Its GPU runs f16 at the f32 rate and has no tensor cores, and
    // WebGPU (kvplan's path there) computes in f32.
    peakFlops: 16.4 * T,
    peakDtype: 'f32 (GPU ALUs; f16 runs at the same rate)',
    bandwidth: 0.4 * T,
    weights: 'bf16',
    backend: 'wgsl',
    source: 'Apple MacBook Pro (M3 Max) technical specifications; peak derived from the GPU core count',
  },
];

/** Every name `--hardware` takes, `cpu` (this machine, measured) last. */
export const hardwareNames: readonly string[] = [...publishedHardware.map((h) => h.name), 'cpu'];

/**
 * The machine called `name`. `cpu` is this machine as `measureCpu` finds it (cpuHardware in
 * src/cost/probe.ts), asked for only then: measuring takes a few seconds and compiles C the first time.
 */
export async function findHardware(name: string, measureCpu: () => Promise<Hardware>): Promise<Hardware> {
  if (name === 'cpu') return measureCpu();
  const h = publishedHardware.find((x) => x.name === name);
  if (h) return h;
  const hint = closest(name, hardwareNames);
  throw new RangeError(
    `no hardware named '${name}'${hint ? ` (did you mean '${hint}'?)` : ''}; choose one of ${hardwareNames.join(', ')}`,
  );
}
