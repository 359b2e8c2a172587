import type { CheckedPlan } from '../../dsl/check.ts';
import type { LoweredPlan } from '../../ir/lower.ts';
import { layerStage } from '../../ir/names.ts';
import { float32Tensor, type HostTensor } from '../../ir/tensor.ts';
import type { ModelConfig } from '../../model/config.ts';
import { transposeInto } from '../../model/transpose.ts';
import { floatsOf, isHalf, storedForm, type Tensor, type Weights } from '../../model/weights.ts';
import { compilePlan } from '../../passes/compile.ts';
import type { KernelProgram } from '../../passes/kernelIR.ts';
import { type CachePart, cachePartTensor } from '../../runtime/cachePart.ts';
import type { CanvasRows, HeadOutput, Program, StepRunner } from '../../runtime/runner.ts';
import { deviceStatsFit, unpackStats } from '../deviceStats.ts';
import { CudaDriver, cudaAvailable } from './driver.ts';
import {
  type Arch,
  type GemmPath,
  type GemmSplitPolicy,
  type MmaDtype,
  STATS_THREADS,
} from './kernels/index.ts';
import { type CudaDevice, LaunchError, PreparedLaunch, packParams } from './launch.ts';
import { type PtxRender, PtxRenderError, type PtxSlot, type PtxStage, renderPtx } from './render.ts';

export interface PtxBuild {
  readonly lowered: LoweredPlan;
  readonly render: PtxRender;
}

export interface PtxBuildOptions {
  readonly arch?: Arch;
  /**
   * `fma` (the default) keeps the whole step in float32, so that the backend is held to the same
   * derived float32 budgets as the others; the tensor-core paths round GEMM inputs to f16/bf16.
   */
  readonly gemm?: GemmPath;
  /**
   * The weights the runners will upload. With a tensor-core `gemm` path, GEMM weights stored in 16
   * bits are uploaded as their bits and read by the GEMM of their dtype (`kvp_gemm16_<dtype>`);
   * without weights, or on the `fma` path, every weight is widened to float32 (exactly).
   */
  readonly weights?: Weights;
  /** When GEMMs split K (default GEMM_SPLIT). */
  readonly split?: GemmSplitPolicy;
}

/** The weight buffers of the compiled program that the weights hold in 16 bits, and their dtype. */
function halfWeights(kernels: ReadonlyMap<string, KernelProgram>, weights: Weights): Map<string, MmaDtype> {
  const out = new Map<string, MmaDtype>();
  for (const kp of kernels.values())
    for (const b of kp.buffers) {
      const half = b.kind === 'weight' ? storedForm(weights, b.name)?.half : undefined;
      if (half) out.set(b.name, half);
    }
  return out;
}

/** Compiles a plan for PTX: passes for the `ptx` target, then the kernels and the launch manifest. */
export function buildPtx(
  plan: CheckedPlan,
  config: ModelConfig,
  maxCanvas: number,
  opts: PtxBuildOptions = {},
): PtxBuild {
  const { lowered, state } = compilePlan(plan, config, { target: 'ptx', canvas: maxCanvas });
  if (!state.kernels || !state.memory) throw new PtxRenderError('the pipeline produced no kernels');
  const gemm = opts.gemm ?? 'fma';
  const render = renderPtx(config, state.phases, state.kernels, state.memory, {
    arch: opts.arch ?? 'sm_80',
    gemm,
    maxCanvas,
    ...(opts.split ? { split: opts.split } : {}),
    ...(gemm !== 'fma' && opts.weights ? { halfWeights: halfWeights(state.kernels, opts.weights) } : {}),
  });
  return { lowered, render };
}

/** The architecture whose PTX a device can load: sm_90 code needs Hopper or later. */
export const archFor = (cc: readonly [number, number]): Arch => (cc[0] >= 9 ? 'sm_90' : 'sm_80');

/** The values a slot holds of a weight: its 16-bit bits for a slot with a dtype, else its floats. */
function slotValues(slot: PtxSlot, name: string, tensor: Tensor): ArrayLike<number> {
  if (!slot.dtype) return floatsOf(tensor);
  if (isHalf(tensor) && tensor.half === slot.dtype) return tensor.bits;
  throw new LaunchError(
    `slot ${slot.name} holds ${slot.dtype} bits but weight ${name} is stored as ${isHalf(tensor) ? tensor.half : 'floats'}: build the plan with the weights it runs on`,
  );
}

/**
 * A weight as the slot wants it: the model's row-major [out][in] as is, or its transpose [in][out]
 * for a `k-major` slot (the GEMM reads W[k][n]); float32, or the weight's own 16-bit bits for a slot
 * with a `dtype`. Done once on the host.
 */
export function slotData(slot: PtxSlot, weights: Weights): Float32Array | Uint16Array {
  const name = slot.transposeOf ?? slot.name;
  const tensor = weights.get(name);
  if (!tensor) throw new LaunchError(`the model has no weight ${name}`);
  const w = slotValues(slot, name, tensor);
  const size = slot.dtype ? 2 : 4;
  if (w.length * size !== slot.bytes)
    throw new LaunchError(
      `weight ${name} has ${w.length} values; slot ${slot.name} holds ${slot.bytes / size}`,
    );
  const t = slot.dtype ? new Uint16Array(w.length) : new Float32Array(w.length);
  if (slot.layout === 'row-major') {
    t.set(w);
    return t;
  }
  const [k, n] = slot.shape as [number, number];
  transposeInto(t, w, n, k);
  return t;
}

/**
 * Caches and the arena start as 0x7f7f7f7f (3.4e38), so that reading what no kernel wrote shows up
 * as a huge deviation. Not NaN: the attention kernel still reads the V rows of masked keys (which,
 * in block-causal plans, are cache rows of later blocks not written yet) and weighs them by 0, and
 * 0 · NaN would poison a correct result. Skipping those keys instead costs a predicate in the P·V
 * loop, which made ptxas spill in some variants (tried; see docs/ptx-backend.md).
 */
const POISON = 0x7f;

/**
 * Runs a plan's launch manifest on a CUDA device, one canvas of at most maxCanvas rows, a stage per
 * call as the driver (src/runtime/batch.ts) asks. Mirrors CpuRunner: weights uploaded once (k-major
 * copies transposed on the host), caches and arena poisoned, the canvas rows written by `embed`,
 * index lists and their sizes by each `layer` call, launches in manifest order on the default
 * stream (copies on it are ordered with the kernels, so reading back needs no extra
 * synchronisation). Logits are read back by `head`; the hidden state only when asked (scores probe
 * it), and a V cache only when a score asks for it.
 */
export class PtxRunner implements StepRunner {
  private readonly ptrs = new Map<string, bigint>();
  private readonly fns = new Map<string, unknown>();
  private readonly sizes = new Map<string, number>();
  /** Each stage's launches with their arguments packed, by `phase/stage`, made on first use. */
  private readonly prepared = new Map<string, { st: PtxStage; launches: readonly PreparedLaunch[] }>();
  private bounce: bigint | undefined;
  /** Where `kvp_softmax_stats` leaves each head's statistics and argmax (4 floats a row). */
  private stats: bigint | undefined;
  /** Where in the arena the hidden state of the canvas sits between stages. */
  private hAt: number | undefined;

  constructor(
    private readonly build: PtxBuild,
    weights: Weights,
    private readonly L: number,
    private readonly device: CudaDevice,
  ) {
    const { manifest, files } = build.render;
    if (L > manifest.maxCanvas)
      throw new LaunchError(`canvas ${L} exceeds the compiled maximum ${manifest.maxCanvas}`);
    if (manifest.arch === 'sm_90' && archFor(device.computeCapability) !== 'sm_90')
      throw new LaunchError(
        `sm_90 kernels cannot run on compute capability ${device.computeCapability.join('.')}`,
      );
    for (const s of manifest.slots) {
      const p = device.alloc(s.bytes);
      this.ptrs.set(s.name, p);
      if (s.kind === 'weight') device.upload(p, slotData(s, weights));
      else if (s.kind === 'persistent' || s.kind === 'arena' || s.kind === 'scratch')
        device.fill(p, POISON, s.bytes);
    }
    for (const [name, ptx] of files) {
      const info = manifest.kernels[name];
      this.fns.set(name, device.loadKernel(ptx, name, info?.sharedBytes ?? 0));
    }
  }

  /** Frees every device allocation and unloads the kernels; the runner is unusable afterwards. */
  release(): void {
    for (const p of this.ptrs.values()) this.device.free(p);
    if (this.stats !== undefined) this.device.free(this.stats);
    if (this.bounce !== undefined) this.device.free(this.bounce);
    for (const fn of this.fns.values()) this.device.unloadKernel(fn);
    this.ptrs.clear();
    this.fns.clear();
    this.prepared.clear();
    this.bounce = undefined;
    this.stats = undefined;
  }

  private slot = (name: string): bigint => {
    const p = this.ptrs.get(name);
    if (p === undefined) throw new LaunchError(`no slot ${name}`);
    return p;
  };

  private size = (name: string): number => (name === 'L' ? this.L : (this.sizes.get(name) ?? 0));

  private stage(phase: string, stage: string): { st: PtxStage; launches: readonly PreparedLaunch[] } {
    const key = `${phase}/${stage}`;
    const have = this.prepared.get(key);
    if (have) return have;
    const st = this.build.render.manifest.phases[phase]?.find((s) => s.name === stage);
    if (!st) throw new LaunchError(`phase ${phase} has no stage ${stage}`);
    const e = { st, launches: st.launches.map((l) => new PreparedLaunch(l, this.slot)) };
    this.prepared.set(key, e);
    return e;
  }

  private setInts(slot: string, data: Int32Array): void {
    const p = this.ptrs.get(slot);
    if (p !== undefined) this.device.upload(p, data);
  }

  private setList(name: string, list: Int32Array): void {
    this.setInts(`list:${name}`, list);
    this.sizes.set(`#${name}`, list.length);
  }

  /**
   * Runs a stage, first moving the carried hidden state to where this phase's memory plan wants it
   * (phases plan the arena independently). Launches over an empty grid (an empty list) are skipped.
   */
  private run(program: Program, stage: string, hAt: number | undefined): PtxStage {
    const { st, launches } = this.stage(program, stage);
    const want = st.inputs.h;
    if (hAt !== undefined && want !== undefined && want !== hAt) this.moveHidden(want, hAt);
    for (const p of launches) {
      const grid = p.bind(this.size);
      if (!grid) continue;
      const l = p.launch;
      this.device.launch(this.fns.get(l.kernel), grid, l.block, l.sharedBytes, p.params);
    }
    return st;
  }

  /** cuMemcpyDtoD is undefined for overlapping ranges; those go through a bounce buffer. */
  private moveHidden(to: number, from: number): void {
    const bytes = this.L * this.build.lowered.config.dModel * 4;
    const arena = this.slot('arena');
    if (Math.abs(to - from) >= bytes) {
      this.device.copy(arena + BigInt(to), arena + BigInt(from), bytes);
      return;
    }
    this.bounce ??= this.device.alloc(bytes);
    this.device.copy(this.bounce, arena + BigInt(from), bytes);
    this.device.copy(arena + BigInt(to), this.bounce, bytes);
  }

  /**
   * Host memory that reads land in, reused from one step to the next: what a step returns is
   * valid until the next step's embed (StepRunner), and a plan that probes every layer reads the
   * whole hidden state each time (fresh arrays were most of the runner's host time for mage).
   */
  private readonly host: Float32Array[] = [];
  private hostUsed = 0;

  private read(slot: string, offset: number, rows: number, width: number): HostTensor {
    const n = rows * width;
    let buf = this.host[this.hostUsed];
    if (!buf || buf.length < n) {
      buf = new Float32Array(n);
      this.host[this.hostUsed] = buf;
    }
    this.hostUsed++;
    const data = buf.subarray(0, n);
    this.device.download(data, this.slot(slot) + BigInt(offset));
    return float32Tensor([rows, width], data);
  }

  private carried(): number {
    if (this.hAt === undefined) throw new LaunchError('a layer ran before the embedding');
    return this.hAt;
  }

  private hidden(): HostTensor {
    return this.read('arena', this.carried(), this.L, this.build.lowered.config.dModel);
  }

  embed(program: Program, canvas: CanvasRows, read: boolean): HostTensor | undefined {
    this.sizes.clear();
    this.hostUsed = 0;
    this.setInts('tokens', canvas.tokens);
    this.setInts('blocks', canvas.blocks);
    this.setInts('seqs', canvas.seqs);
    this.hAt = this.run(program, 'embed', undefined).outputs.h;
    return read ? this.hidden() : undefined;
  }

  layer(
    program: Program,
    layer: number,
    lists: ReadonlyMap<string, Int32Array>,
    read: boolean,
  ): HostTensor | undefined {
    // A list not given this call is empty, not the one an earlier call left.
    this.sizes.clear();
    for (const [name, list] of lists) this.setList(name, list);
    this.hAt = this.run(program, layerStage(layer), this.carried()).outputs.h;
    return read ? this.hidden() : undefined;
  }

  head(program: Program, out: Int32Array, read = true): HeadOutput {
    this.sizes.clear();
    this.setList('out', out);
    const head = this.run(program, 'head', this.carried());
    const { vocab: V, maskTokenId } = this.build.lowered.config;
    const at = head.outputs.logits as number;
    const n = out.length;
    // The statistics on the device, next to the logits: 16 bytes a row to read back, where the
    // host would loop over rows x vocab; the logits only when asked for.
    if (n === 0 || !deviceStatsFit(V)) return { logits: this.read('arena', at, n, V) };
    const logits = read ? { logits: this.read('arena', at, n, V) } : {};
    const name = 'kvp_softmax_stats';
    this.stats ??= this.device.alloc(16 * this.L);
    const params = packParams([
      { type: 'u64', value: this.slot('arena') + BigInt(at) },
      { type: 'u64', value: this.stats },
      ...[n, V, maskTokenId].map((value) => ({ type: 'u32' as const, value })),
    ]);
    const shared = this.build.render.manifest.kernels[name]?.sharedBytes ?? 0;
    this.device.launch(this.fns.get(name), [n, 1, 1], [STATS_THREADS, 1, 1], shared, params);
    const rows = new Float32Array(4 * n);
    this.device.download(rows, this.stats);
    return { ...logits, stats: unpackStats(rows) };
  }

  cachePart(part: CachePart, layer: number): HostTensor | undefined {
    return cachePartTensor(part, layer, this.build.lowered.config, this.L, (name, n) =>
      this.ptrs.has(name) ? this.read(name, 0, this.L, n / this.L).data : undefined,
    );
  }
}

let shared: CudaDevice | undefined;

/**
 * The process's CUDA device, opened once; throws with the reason ("no CUDA device: …") when there
 * is none. Contexts are per process on the driver's side, so every runner shares this one.
 */
export function sharedCudaDevice(): CudaDevice {
  if (shared) return shared;
  const status = cudaAvailable();
  if (!status.ok) throw new LaunchError(status.reason);
  shared = CudaDriver.open();
  return shared;
}

/** Builds runners on a device, compiling each plan for the architecture the device can load. */
export function ptxRunnerFactory(
  device: CudaDevice,
  opts: Omit<PtxBuildOptions, 'arch' | 'weights'> = {},
): (plan: CheckedPlan, config: ModelConfig, weights: Weights, L: number) => (L: number) => StepRunner {
  return (plan, config, weights, L) => {
    const build = buildPtx(plan, config, L, { ...opts, arch: archFor(device.computeCapability), weights });
    return (n) => new PtxRunner(build, weights, n, device);
  };
}
