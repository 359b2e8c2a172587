/**
 * The launch path: the CUDA driver API through koffi, when `libcuda.so.1` is present.
 *
 * STATUS: type-checked only. No machine this was written on had an NVIDIA GPU or libcuda, so none
 * of this has been run; `cudaAvailable()` reports why, and tests that would launch print
 * `skipped: no CUDA device`. The calls follow the driver API's C signatures (cuda.h, API v2
 * entry points for the functions that have one).
 *
 * What it does: cuInit → cuDeviceGet → cuCtxCreate; cuModuleLoadData on the PTX text (the driver
 * JIT-compiles it for the device); cuModuleGetFunction per entry; cuMemAlloc per manifest slot;
 * cuMemcpyHtoD / DtoH; cuLaunchKernel with kernelParams built from the manifest's bindings.
 */
import koffi from 'koffi';
import type { LaunchParam, PtxManifest, PtxRender, PtxStage } from './render.ts';
import { evalLaunchDim } from './render.ts';

export interface CudaStatus {
  readonly ok: boolean;
  readonly reason: string;
}

type Fn = (...args: unknown[]) => unknown;

interface Api {
  cuInit: Fn;
  cuDeviceGetCount: Fn;
  cuDeviceGet: Fn;
  cuDeviceGetName: Fn;
  cuCtxCreate: Fn;
  cuCtxDestroy: Fn;
  cuCtxSynchronize: Fn;
  cuModuleLoadData: Fn;
  cuModuleUnload: Fn;
  cuModuleGetFunction: Fn;
  cuFuncSetAttribute: Fn;
  cuMemAlloc: Fn;
  cuMemFree: Fn;
  cuMemcpyHtoD: Fn;
  cuMemcpyDtoH: Fn;
  cuMemsetD8: Fn;
  cuLaunchKernel: Fn;
  cuGetErrorName: Fn;
}

let cached: { api?: Api; status: CudaStatus } | undefined;

function bind(): { api?: Api; status: CudaStatus } {
  if (cached) return cached;
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load('libcuda.so.1');
  } catch (e) {
    cached = {
      status: {
        ok: false,
        reason: `no CUDA device: libcuda.so.1 cannot be loaded (${(e as Error).message})`,
      },
    };
    return cached;
  }
  const api: Api = {
    cuInit: lib.func('int cuInit(unsigned int flags)'),
    cuDeviceGetCount: lib.func('int cuDeviceGetCount(_Out_ int *count)'),
    cuDeviceGet: lib.func('int cuDeviceGet(_Out_ int *device, int ordinal)'),
    cuDeviceGetName: lib.func('int cuDeviceGetName(_Out_ char *name, int len, int dev)'),
    cuCtxCreate: lib.func('int cuCtxCreate_v2(_Out_ void **pctx, unsigned int flags, int dev)'),
    cuCtxDestroy: lib.func('int cuCtxDestroy_v2(void *ctx)'),
    cuCtxSynchronize: lib.func('int cuCtxSynchronize(void)'),
    cuModuleLoadData: lib.func('int cuModuleLoadData(_Out_ void **module, const char *image)'),
    cuModuleUnload: lib.func('int cuModuleUnload(void *module)'),
    cuModuleGetFunction: lib.func('int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)'),
    cuFuncSetAttribute: lib.func('int cuFuncSetAttribute(void *fn, int attrib, int value)'),
    cuMemAlloc: lib.func('int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)'),
    cuMemFree: lib.func('int cuMemFree_v2(uint64_t dptr)'),
    cuMemcpyHtoD: lib.func('int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)'),
    cuMemcpyDtoH: lib.func('int cuMemcpyDtoH_v2(_Out_ void *dst, uint64_t src, size_t bytes)'),
    cuMemsetD8: lib.func('int cuMemsetD8_v2(uint64_t dst, unsigned char value, size_t n)'),
    cuLaunchKernel: lib.func(
      'int cuLaunchKernel(void *f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared, void *stream, void *params, void *extra)',
    ),
    cuGetErrorName: lib.func('int cuGetErrorName(int error, _Out_ const char **name)'),
  };
  const rc = api.cuInit(0) as number;
  if (rc !== 0) {
    cached = { api, status: { ok: false, reason: `no CUDA device: cuInit failed with CUresult ${rc}` } };
    return cached;
  }
  const n = [0];
  const rc2 = api.cuDeviceGetCount(n) as number;
  if (rc2 !== 0 || !n[0]) {
    cached = { api, status: { ok: false, reason: 'no CUDA device: the driver reports no devices' } };
    return cached;
  }
  cached = { api, status: { ok: true, reason: `${n[0]} CUDA device(s)` } };
  return cached;
}

/** Whether kernels can be launched here, and if not, why ("no CUDA device: …"). */
export function cudaAvailable(): CudaStatus {
  return bind().status;
}

export class CudaError extends Error {
  override readonly name = 'CudaError';
}

const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

/** A context on one device, with checked wrappers of the driver calls. */
export class CudaDriver {
  private constructor(
    private readonly api: Api,
    private readonly ctx: unknown,
  ) {}

  static open(ordinal = 0): CudaDriver {
    const { api, status } = bind();
    if (!api || !status.ok) throw new CudaError(status.reason);
    const dev = [0];
    check(api, api.cuDeviceGet(dev, ordinal), 'cuDeviceGet');
    const ctx = [null];
    check(api, api.cuCtxCreate(ctx, 0, dev[0]), 'cuCtxCreate');
    return new CudaDriver(api, ctx[0]);
  }

  loadModule(ptx: string): unknown {
    const mod = [null];
    check(this.api, this.api.cuModuleLoadData(mod, `${ptx}\0`), 'cuModuleLoadData');
    return mod[0];
  }
  getFunction(module: unknown, name: string, sharedBytes = 0): unknown {
    const fn = [null];
    check(this.api, this.api.cuModuleGetFunction(fn, module, name), `cuModuleGetFunction(${name})`);
    if (sharedBytes > 48 * 1024)
      check(
        this.api,
        this.api.cuFuncSetAttribute(fn[0], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes),
        'cuFuncSetAttribute',
      );
    return fn[0];
  }
  alloc(bytes: number): bigint {
    const p = [0n];
    check(this.api, this.api.cuMemAlloc(p, Math.max(bytes, 256)), `cuMemAlloc(${bytes})`);
    return BigInt(p[0] as bigint | number);
  }
  free(ptr: bigint): void {
    check(this.api, this.api.cuMemFree(ptr), 'cuMemFree');
  }
  upload(dst: bigint, src: ArrayBufferView): void {
    check(this.api, this.api.cuMemcpyHtoD(dst, src, src.byteLength), 'cuMemcpyHtoD');
  }
  download(dst: ArrayBufferView, src: bigint): void {
    check(this.api, this.api.cuMemcpyDtoH(dst, src, dst.byteLength), 'cuMemcpyDtoH');
  }
  fill(dst: bigint, byte: number, bytes: number): void {
    check(this.api, this.api.cuMemsetD8(dst, byte, bytes), 'cuMemsetD8');
  }
  /** Launches with kernelParams: one host cell per parameter, an array of their addresses. */
  launch(
    fn: unknown,
    grid: readonly [number, number, number],
    block: readonly [number, number, number],
    sharedBytes: number,
    args: readonly { type: 'u64' | 'u32' | 'f32'; value: number | bigint }[],
  ): void {
    const cells = args.map((a) => {
      const t = a.type === 'u64' ? 'uint64_t' : a.type === 'u32' ? 'uint32_t' : 'float';
      const cell = koffi.alloc(t, 1);
      koffi.encode(cell, t, a.type === 'u64' ? BigInt(a.value) : Number(a.value));
      return cell;
    });
    try {
      const ptrs = new BigUint64Array(cells.map((c) => koffi.address(c)));
      check(
        this.api,
        this.api.cuLaunchKernel(fn, ...grid, ...block, sharedBytes, null, ptrs, null),
        'cuLaunchKernel',
      );
    } finally {
      for (const c of cells) koffi.free(c);
    }
  }
  synchronize(): void {
    check(this.api, this.api.cuCtxSynchronize(), 'cuCtxSynchronize');
  }
  close(): void {
    this.api.cuCtxDestroy(this.ctx);
  }
}

function check(api: Api, rc: unknown, what: string): void {
  if (rc === 0) return;
  const name: (string | null)[] = [null];
  api.cuGetErrorName(rc, name);
  throw new CudaError(`${what} failed: ${name[0] ?? `CUresult ${String(rc)}`}`);
}

/**
 * Runs the launches of a rendered plan: one device allocation per manifest slot, the PTX modules
 * loaded once, and per stage the launches with bindings resolved against the current sizes.
 * Launches whose grid is empty (an empty index list) are skipped. Filling weights (k-major slots
 * are transposed copies), index lists and tokens is the caller's job through `slot()`.
 */
export class PtxLaunchRunner {
  private readonly ptrs = new Map<string, bigint>();
  private readonly fns = new Map<string, unknown>();

  constructor(
    private readonly cuda: CudaDriver,
    private readonly render: PtxRender,
  ) {
    for (const s of render.manifest.slots) this.ptrs.set(s.name, cuda.alloc(s.bytes));
    for (const [name, ptx] of render.files) {
      const info = render.manifest.kernels[name];
      this.fns.set(name, cuda.getFunction(cuda.loadModule(ptx), name, info?.sharedBytes ?? 0));
    }
  }

  get manifest(): PtxManifest {
    return this.render.manifest;
  }
  slot(name: string): bigint {
    const p = this.ptrs.get(name);
    if (p === undefined) throw new CudaError(`no slot ${name}`);
    return p;
  }

  runStage(stage: PtxStage, sizes: ReadonlyMap<string, number>): void {
    const size = (n: string) => {
      const v = sizes.get(n);
      if (v === undefined) throw new CudaError(`size ${n} is not given`);
      return v;
    };
    for (const l of stage.launches) {
      const grid = l.grid.map((d) => evalLaunchDim(d, size)) as [number, number, number];
      if (grid.some((g) => g === 0)) continue;
      const args = l.params.map((p) => ({ type: p.type, value: this.value(p, size) }));
      this.cuda.launch(this.fns.get(l.kernel), grid, l.block, l.sharedBytes, args);
    }
  }

  private value(p: LaunchParam, size: (n: string) => number): number | bigint {
    const b = p.binding;
    switch (b.kind) {
      case 'buffer':
        return this.slot(b.slot) + BigInt(b.offset);
      case 'null':
        return 0n;
      case 'count':
        return (typeof b.size === 'number' ? b.size : size(b.size)) * b.mul;
      case 'u32':
      case 'f32':
        return b.value;
    }
  }

  release(): void {
    for (const p of this.ptrs.values()) this.cuda.free(p);
    this.ptrs.clear();
  }
}
