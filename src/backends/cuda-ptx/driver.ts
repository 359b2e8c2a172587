/**
 * The CUDA driver API through koffi, when `libcuda.so.1` is present: cuInit → cuDeviceGet → the
 * device's primary context; cuModuleLoadData on the PTX text (the driver JIT-compiles it for the device);
 * cuModuleGetFunction per entry; cuMemAlloc, copies and memset; cuLaunchKernel with kernelParams
 * pointing into one packed argument buffer (see launch.ts).
 *
 * The bindings follow cuda.h's C signatures (API v2 entry points where one exists). Their
 * marshalling is tested here against a stub library with the same entry points
 * (test/backends/cuda-ptx/driver.test.ts); on an NVIDIA device the runner tests launch for real.
 */
import koffi from 'koffi';
import type { CudaDevice, Dim3, PackedParams } from './launch.ts';

export interface CudaStatus {
  readonly ok: boolean;
  readonly reason: string;
}

type Fn = (...args: unknown[]) => unknown;

interface Api {
  cuInit: Fn;
  cuDeviceGetCount: Fn;
  cuDeviceGet: Fn;
  cuDeviceGetAttribute: Fn;
  cuDevicePrimaryCtxRetain: Fn;
  cuDevicePrimaryCtxRelease: Fn;
  cuCtxSetCurrent: Fn;
  cuCtxSynchronize: Fn;
  cuModuleLoadData: Fn;
  cuModuleGetFunction: Fn;
  cuModuleUnload: Fn;
  cuFuncSetAttribute: Fn;
  cuMemAlloc: Fn;
  cuMemFree: Fn;
  cuMemcpyHtoD: Fn;
  cuMemcpyHtoDAsync: Fn;
  cuMemAllocHost: Fn;
  cuMemFreeHost: Fn;
  cuMemcpyDtoH: Fn;
  cuMemcpyDtoD: Fn;
  cuMemsetD8: Fn;
  cuLaunchKernel: Fn;
  cuGetErrorName: Fn;
}

interface Bound {
  readonly api?: Api;
  readonly status: CudaStatus;
}

export const LIBCUDA = 'libcuda.so.1';
const bound = new Map<string, Bound>();

function bind(library: string): Bound {
  const have = bound.get(library);
  if (have) return have;
  const b = bindNow(library);
  bound.set(library, b);
  return b;
}

function bindNow(library: string): Bound {
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(library);
  } catch (e) {
    return {
      status: { ok: false, reason: `no CUDA device: ${library} cannot be loaded (${(e as Error).message})` },
    };
  }
  const api: Api = {
    cuInit: lib.func('int cuInit(unsigned int flags)'),
    cuDeviceGetCount: lib.func('int cuDeviceGetCount(_Out_ int *count)'),
    cuDeviceGet: lib.func('int cuDeviceGet(_Out_ int *device, int ordinal)'),
    cuDeviceGetAttribute: lib.func('int cuDeviceGetAttribute(_Out_ int *value, int attrib, int dev)'),
    cuDevicePrimaryCtxRetain: lib.func('int cuDevicePrimaryCtxRetain(_Out_ void **pctx, int dev)'),
    cuDevicePrimaryCtxRelease: lib.func('int cuDevicePrimaryCtxRelease_v2(int dev)'),
    cuCtxSetCurrent: lib.func('int cuCtxSetCurrent(void *ctx)'),
    cuCtxSynchronize: lib.func('int cuCtxSynchronize(void)'),
    cuModuleLoadData: lib.func('int cuModuleLoadData(_Out_ void **module, const char *image)'),
    cuModuleGetFunction: lib.func('int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)'),
    cuModuleUnload: lib.func('int cuModuleUnload(void *module)'),
    cuFuncSetAttribute: lib.func('int cuFuncSetAttribute(void *fn, int attrib, int value)'),
    cuMemAlloc: lib.func('int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)'),
    cuMemFree: lib.func('int cuMemFree_v2(uint64_t dptr)'),
    cuMemcpyHtoD: lib.func('int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)'),
    // The source is an address inside the pinned staging area (a const void * in cuda.h; both are
    // one 64-bit integer register in the x86-64 and AArch64 calling conventions).
    cuMemcpyHtoDAsync: lib.func(
      'int cuMemcpyHtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
    ),
    cuMemAllocHost: lib.func('int cuMemAllocHost_v2(_Out_ void **pp, size_t bytes)'),
    cuMemFreeHost: lib.func('int cuMemFreeHost(void *p)'),
    cuMemcpyDtoH: lib.func('int cuMemcpyDtoH_v2(_Out_ void *dst, uint64_t src, size_t bytes)'),
    cuMemcpyDtoD: lib.func('int cuMemcpyDtoD_v2(uint64_t dst, uint64_t src, size_t bytes)'),
    cuMemsetD8: lib.func('int cuMemsetD8_v2(uint64_t dst, unsigned char value, size_t n)'),
    cuLaunchKernel: lib.func(
      'int cuLaunchKernel(void *f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared, void *stream, void *params, void *extra)',
    ),
    cuGetErrorName: lib.func('int cuGetErrorName(int error, _Out_ const char **name)'),
  };
  const rc = api.cuInit(0) as number;
  if (rc !== 0)
    return { api, status: { ok: false, reason: `no CUDA device: cuInit failed with CUresult ${rc}` } };
  const n = [0];
  const rc2 = api.cuDeviceGetCount(n) as number;
  if (rc2 !== 0 || !n[0])
    return { api, status: { ok: false, reason: 'no CUDA device: the driver reports no devices' } };
  return { api, status: { ok: true, reason: `${n[0]} CUDA device(s)` } };
}

/** Whether kernels can be launched here, and if not, why ("no CUDA device: …"). */
export function cudaAvailable(library = LIBCUDA): CudaStatus {
  return bind(library).status;
}

export class CudaError extends Error {
  override readonly name = 'CudaError';
}

const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
/** What a launch gets without opting in to more dynamic shared memory. */
const DEFAULT_SHARED = 48 * 1024;

/**
 * Uploads up to this size (index lists, tokens: a step's few hundred small copies) go through
 * pinned staging with cuMemcpyHtoDAsync. cuMemcpyHtoD from pageable memory waits for the stream
 * first, so every layer's lists drained the GPU (115 waits a step of a 1.7B model on an H200,
 * docs/perf.md); larger ones (weights, once) stay synchronous.
 */
export const PINNED_UPLOAD_MAX = 1 << 20;
const PINNED_BYTES = 4 << 20;

/** A context on one device, with checked wrappers of the driver calls. */
export class CudaDriver implements CudaDevice {
  /**
   * Pinned host memory the small uploads are staged in, filled from the start after each point
   * where the stream is known to be idle (a synchronisation or a download, which on the legacy
   * stream returns once everything before it has run), so that no staged bytes are overwritten
   * before their copy has read them.
   */
  private pinned: { ptr: unknown; view: Uint8Array; address: bigint; used: number } | undefined;

  /**
   * Arguments are staged in memory koffi owns, so that their addresses stay fixed while the
   * driver reads them; grown when a launch needs more.
   */
  private staging: { mem: unknown; view: Uint8Array; address: bigint } | undefined;

  /** The module of each loaded entry, for unloading. */
  private readonly modules = new Map<unknown, unknown>();

  private constructor(
    private readonly api: Api,
    private readonly dev: number,
    readonly computeCapability: readonly [number, number],
  ) {}

  static open(ordinal = 0, library = LIBCUDA): CudaDriver {
    const { api, status } = bind(library);
    if (!api || !status.ok) throw new CudaError(status.reason);
    const dev = [0];
    check(api, api.cuDeviceGet(dev, ordinal), 'cuDeviceGet');
    const attr = (a: number) => {
      const v = [0];
      check(api, api.cuDeviceGetAttribute(v, a, dev[0]), 'cuDeviceGetAttribute');
      return v[0] as number;
    };
    const cc = [
      attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
      attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
    ] as const;
    // The primary context: the one the CUDA runtime (and so PyTorch) uses in the same process.
    const ctx = [null];
    check(api, api.cuDevicePrimaryCtxRetain(ctx, dev[0]), 'cuDevicePrimaryCtxRetain');
    check(api, api.cuCtxSetCurrent(ctx[0]), 'cuCtxSetCurrent');
    return new CudaDriver(api, dev[0] as number, cc);
  }

  loadKernel(ptx: string, name: string, sharedBytes: number): unknown {
    const mod = [null];
    check(this.api, this.api.cuModuleLoadData(mod, `${ptx}\0`), `cuModuleLoadData(${name})`);
    const fn = [null];
    check(this.api, this.api.cuModuleGetFunction(fn, mod[0], name), `cuModuleGetFunction(${name})`);
    if (sharedBytes > DEFAULT_SHARED)
      check(
        this.api,
        this.api.cuFuncSetAttribute(fn[0], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes),
        'cuFuncSetAttribute',
      );
    this.modules.set(fn[0], mod[0]);
    return fn[0];
  }
  unloadKernel(fn: unknown): void {
    const mod = this.modules.get(fn);
    if (mod === undefined) return;
    this.modules.delete(fn);
    check(this.api, this.api.cuModuleUnload(mod), 'cuModuleUnload');
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
    const n = src.byteLength;
    if (n === 0) return;
    if (n > PINNED_UPLOAD_MAX) {
      check(this.api, this.api.cuMemcpyHtoD(dst, src, n), 'cuMemcpyHtoD');
      return;
    }
    const p = this.staged();
    if (p.used + n > p.view.byteLength) this.synchronize();
    const at = p.used;
    p.view.set(new Uint8Array(src.buffer, src.byteOffset, n), at);
    check(this.api, this.api.cuMemcpyHtoDAsync(dst, p.address + BigInt(at), n, null), 'cuMemcpyHtoDAsync');
    p.used = (at + n + 15) & ~15;
  }
  private staged() {
    if (!this.pinned) {
      const ptr = [null];
      check(this.api, this.api.cuMemAllocHost(ptr, PINNED_BYTES), 'cuMemAllocHost');
      const view = new Uint8Array(koffi.view(ptr[0], PINNED_BYTES));
      this.pinned = { ptr: ptr[0], view, address: BigInt(koffi.address(ptr[0])), used: 0 };
    }
    return this.pinned;
  }
  download(dst: ArrayBufferView, src: bigint): void {
    if (dst.byteLength === 0) return;
    check(this.api, this.api.cuMemcpyDtoH(dst, src, dst.byteLength), 'cuMemcpyDtoH');
    if (this.pinned) this.pinned.used = 0;
  }
  copy(dst: bigint, src: bigint, bytes: number): void {
    if (bytes > 0) check(this.api, this.api.cuMemcpyDtoD(dst, src, bytes), 'cuMemcpyDtoD');
  }
  fill(dst: bigint, byte: number, bytes: number): void {
    if (bytes > 0) check(this.api, this.api.cuMemsetD8(dst, byte, bytes), 'cuMemsetD8');
  }
  launch(fn: unknown, grid: Dim3, block: Dim3, sharedBytes: number, params: PackedParams): void {
    const s = this.stage(params.bytes.byteLength);
    s.view.set(params.bytes);
    const ptrs = BigUint64Array.from(params.offsets, (o) => s.address + BigInt(o));
    check(
      this.api,
      this.api.cuLaunchKernel(fn, ...grid, ...block, sharedBytes, null, ptrs, null),
      'cuLaunchKernel',
    );
  }
  private stage(bytes: number) {
    if (!this.staging || this.staging.view.byteLength < bytes) {
      const size = Math.max(256, bytes);
      const mem = koffi.alloc('uint8_t', size);
      if (this.staging) koffi.free(this.staging.mem);
      this.staging = { mem, view: new Uint8Array(koffi.view(mem, size)), address: koffi.address(mem) };
    }
    return this.staging;
  }
  synchronize(): void {
    check(this.api, this.api.cuCtxSynchronize(), 'cuCtxSynchronize');
    if (this.pinned) this.pinned.used = 0;
  }
  close(): void {
    if (this.staging) koffi.free(this.staging.mem);
    this.staging = undefined;
    if (this.pinned) {
      // Unchecked, like the release below: a context a kernel broke still gives its memory back.
      this.api.cuCtxSynchronize();
      this.api.cuMemFreeHost(this.pinned.ptr);
      this.pinned = undefined;
    }
    this.api.cuDevicePrimaryCtxRelease(this.dev);
  }
}

function check(api: Api, rc: unknown, what: string): void {
  if (rc === 0) return;
  const name: (string | null)[] = [null];
  api.cuGetErrorName(rc, name);
  throw new CudaError(`${what} failed: ${name[0] ?? `CUresult ${String(rc)}`}`);
}
