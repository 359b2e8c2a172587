/**
 * The host side of a launch, free of any driver: what a device must offer the runner
 * (`CudaDevice`, implemented by the koffi driver and by test doubles), how a manifest launch's
 * bindings become argument values for concrete sizes, and how those values are packed into the
 * one parameter buffer that `cuLaunchKernel`'s kernelParams point into.
 */
import type { ParamType } from './kernels/ptx.ts';
import { type Binding, evalLaunchDim, type Launch, type LaunchParam } from './render.ts';

export interface KernelArg {
  readonly type: ParamType;
  readonly value: number | bigint;
}

/** Argument bytes laid out as the PTX `.param` space is (natural alignment), and each argument's offset. */
export interface PackedParams {
  readonly bytes: Uint8Array;
  readonly offsets: readonly number[];
}

export type Dim3 = readonly [number, number, number];

/** The driver calls the runner makes; device pointers are plain 64-bit integers. */
export interface CudaDevice {
  /** `sm_80` PTX runs on any Ampere-or-later device; `sm_90` only on Hopper and later. */
  readonly computeCapability: readonly [number, number];
  /** Loads a PTX module and returns the handle of its entry `name`. */
  loadKernel(ptx: string, name: string, sharedBytes: number): unknown;
  /** Unloads the module of an entry that loadKernel returned (a second call does nothing). */
  unloadKernel(fn: unknown): void;
  alloc(bytes: number): bigint;
  free(ptr: bigint): void;
  upload(dst: bigint, src: ArrayBufferView): void;
  download(dst: ArrayBufferView, src: bigint): void;
  copy(dst: bigint, src: bigint, bytes: number): void;
  fill(dst: bigint, byte: number, bytes: number): void;
  /** The caller may reuse `params` once this returns: a device copies what it keeps. */
  launch(fn: unknown, grid: Dim3, block: Dim3, sharedBytes: number, params: PackedParams): void;
  synchronize(): void;
  close(): void;
}

const width: Record<ParamType, number> = { u64: 8, u32: 4, f32: 4 };

export class LaunchError extends Error {
  override readonly name = 'LaunchError';
}

export function packParams(args: readonly KernelArg[]): PackedParams {
  const offsets: number[] = [];
  let end = 0;
  for (const a of args) {
    const w = width[a.type];
    const at = Math.ceil(end / w) * w;
    offsets.push(at);
    end = at + w;
  }
  const bytes = new Uint8Array(Math.ceil(end / 8) * 8);
  const view = new DataView(bytes.buffer);
  args.forEach((a, i) => {
    const at = offsets[i] as number;
    if (a.type === 'u64') view.setBigUint64(at, BigInt(a.value), true);
    else if (a.type === 'f32') view.setFloat32(at, Number(a.value), true);
    else {
      const v = Number(a.value);
      if (!Number.isInteger(v) || v < 0 || v >= 2 ** 32)
        throw new LaunchError(`argument ${i} (${v}) does not fit a u32`);
      view.setUint32(at, v, true);
    }
  });
  return { bytes, offsets };
}

/** A symbolic size's value in the current step; index lists not set this step are empty. */
export type Sizes = (name: string) => number;

export function launchGrid(l: Launch, size: Sizes): Dim3 {
  const g = l.grid.map((d) => evalLaunchDim(d, size)) as [number, number, number];
  if (g[1] > 65535 || g[2] > 65535 || g[0] >= 2 ** 31)
    throw new LaunchError(`${l.kernel}: grid [${g.join(', ')}] exceeds the device's limits`);
  return g;
}

/**
 * A launch with its arguments packed once, pointers and constants in place: a step patches only
 * the counts that name one of its sizes, and evaluates the grid. The runner issues ~900 launches
 * a step of a 1.7B model, and resolving and packing every argument of every one of them anew was
 * a third of its host time.
 */
export class PreparedLaunch {
  readonly params: PackedParams;
  private readonly view: DataView;
  private readonly counts: readonly { at: number; size: string; mul: number }[];

  constructor(
    readonly launch: Launch,
    slot: (name: string) => bigint,
  ) {
    this.params = packParams(launchArgs(launch.params, slot, () => 0));
    const b = this.params.bytes;
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.counts = launch.params.flatMap((p, i) =>
      p.binding.kind === 'count' && typeof p.binding.size === 'string'
        ? [{ at: this.params.offsets[i] as number, size: p.binding.size, mul: p.binding.mul }]
        : [],
    );
  }

  /**
   * The grid for this step's sizes, with the counts written into `params` (which the next call
   * overwrites: a device copies them when it launches); undefined when the grid is empty.
   */
  bind(size: Sizes): Dim3 | undefined {
    const g = launchGrid(this.launch, size);
    if (g.includes(0)) return undefined;
    for (const c of this.counts) {
      const v = size(c.size) * c.mul;
      if (!Number.isInteger(v) || v < 0 || v >= 2 ** 32)
        throw new LaunchError(`${this.launch.kernel}: count ${c.size} x ${c.mul} (${v}) does not fit a u32`);
      this.view.setUint32(c.at, v, true);
    }
    return g;
  }
}

/** The argument values of a launch: buffers resolved to device pointers, counts to the step's sizes. */
export function launchArgs(
  params: readonly LaunchParam[],
  slot: (name: string) => bigint,
  size: Sizes,
): KernelArg[] {
  const value = (b: Binding): number | bigint => {
    if (b.kind === 'buffer') return slot(b.slot) + BigInt(b.offset);
    if (b.kind === 'null') return 0n;
    if (b.kind === 'count') return (typeof b.size === 'number' ? b.size : size(b.size)) * b.mul;
    return b.value;
  };
  return params.map((p) => ({ type: p.type, value: value(p.binding) }));
}
