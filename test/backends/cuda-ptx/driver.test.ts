/**
 * The koffi bindings of the CUDA driver, against a stub library with the same entry points
 * (fake_libcuda.c, built with the system compiler): what crosses the FFI boundary is what the
 * driver API expects, so that the first run on a GPU fails only on what only a GPU can tell.
 */
import koffi from 'koffi';
import { describe, expect, test } from 'vitest';
import {
  CudaDriver,
  CudaError,
  cudaAvailable,
  PINNED_UPLOAD_MAX,
} from '../../../src/backends/cuda-ptx/driver.ts';
import { generateKernel } from '../../../src/backends/cuda-ptx/kernels/index.ts';
import { packParams } from '../../../src/backends/cuda-ptx/launch.ts';
import { fakeLibcuda } from './fakeLibcuda.ts';

const stub = fakeLibcuda();
const fake = koffi.load(stub);
const expectArgs = fake.func('void fake_expect_args(int count, const uint32_t *bytes)');
const lastLaunch = fake.func('void fake_launch(_Out_ uint32_t *dims, _Out_ uint64_t *args)');
const functionName = fake.func('const char *fake_function(void)');
const sharedAttribute = fake.func('int fake_shared_attribute(void)');
const retained = fake.func('int fake_retained(void)');
const unloaded = fake.func('int fake_unloaded(void)');
const asyncCopies = fake.func('int fake_async_copies(void)');
const pinnedLive = fake.func('int fake_pinned_live(void)');
const setSyncError = fake.func('void fake_set_sync_error(int e)');

describe('CUDA driver bindings (stub libcuda)', () => {
  test('a missing library is reported as no CUDA device, with the reason', () => {
    const s = cudaAvailable('libcuda-that-does-not-exist.so.1');
    expect(s.ok).toBe(false);
    expect(s.reason).toMatch(/^no CUDA device: libcuda-that-does-not-exist.so.1 cannot be loaded/);
    expect(() => CudaDriver.open(0, 'libcuda-that-does-not-exist.so.1')).toThrow(CudaError);
  });

  test("makes the device's primary context current, reads the compute capability, releases it on close", () => {
    expect(cudaAvailable(stub)).toEqual({ ok: true, reason: '1 CUDA device(s)' });
    const cuda = CudaDriver.open(0, stub);
    expect(cuda.computeCapability).toEqual([9, 0]);
    expect(retained()).toBe(1);
    cuda.close();
    expect(retained()).toBe(0);
  });

  test('memory: 64-bit pointers out of cuMemAlloc, copies both ways, device-to-device, memset', () => {
    const cuda = CudaDriver.open(0, stub);
    const a = cuda.alloc(64);
    const b = cuda.alloc(64);
    expect(typeof a).toBe('bigint');
    const src = Float32Array.from({ length: 16 }, (_, i) => i + 0.5);
    cuda.upload(a, src);
    cuda.copy(b + 8n, a, 32);
    cuda.fill(b, 0x7f, 8);
    const back = new Float32Array(16);
    cuda.download(back, b);
    expect(Array.from(back.subarray(2, 10))).toEqual(Array.from(src.subarray(0, 8)));
    expect(new Uint32Array(back.buffer, 0, 2)).toEqual(Uint32Array.from([0x7f7f7f7f, 0x7f7f7f7f]));
    cuda.free(a);
    cuda.free(b);
    cuda.close();
  });

  test('small uploads are staged in pinned memory and copied asynchronously, the source free at once', () => {
    // The stub's asynchronous copies read their source only at the next stream operation.
    const cuda = CudaDriver.open(0, stub);
    const before = asyncCopies() as number;
    const sizes = [5, 64, 1000, 3, PINNED_UPLOAD_MAX / 4];
    const srcs = sizes.map((n, i) => Int32Array.from({ length: n }, (_, j) => i * 100_000 + j));
    const ptrs = sizes.map((n) => cuda.alloc(4 * n));
    srcs.forEach((src, i) => {
      cuda.upload(ptrs[i] as bigint, src);
    });
    const kept = srcs.map((x) => x.slice());
    for (const src of srcs) src.fill(-1);
    kept.forEach((want, i) => {
      const back = new Int32Array(want.length);
      cuda.download(back, ptrs[i] as bigint);
      expect(back).toEqual(want);
    });
    expect((asyncCopies() as number) - before).toBe(sizes.length);
    for (const p of ptrs) cuda.free(p);
    cuda.close();
    expect(pinnedLive()).toBe(0);
  });

  test('a context that reports an error still gives its pinned memory back on close', () => {
    const cuda = CudaDriver.open(0, stub);
    const p = cuda.alloc(64);
    cuda.upload(p, new Int32Array(4));
    expect(pinnedLive()).toBe(1);
    setSyncError(700); // CUDA_ERROR_ILLEGAL_ADDRESS, sticky after a faulting kernel
    try {
      expect(() => cuda.synchronize()).toThrow(CudaError);
      cuda.close();
      expect(pinnedLive()).toBe(0);
    } finally {
      setSyncError(0);
    }
  });

  test('more staged bytes than the pinned area holds, with no download between: every copy lands', () => {
    const cuda = CudaDriver.open(0, stub);
    const n = PINNED_UPLOAD_MAX / 4;
    const ptrs = Array.from({ length: 20 }, () => cuda.alloc(4 * n));
    ptrs.forEach((p, i) => {
      cuda.upload(p, new Int32Array(n).fill(i + 1));
    });
    // Larger than the staging limit: a synchronous copy, ordered after the staged ones.
    const big = cuda.alloc(4 * (n + 1));
    const before = asyncCopies() as number;
    cuda.upload(big, new Int32Array(n + 1).fill(99));
    expect(asyncCopies()).toBe(before);
    ptrs.forEach((p, i) => {
      const back = new Int32Array(n);
      cuda.download(back, p);
      expect(back.every((v) => v === i + 1)).toBe(true);
    });
    const back = new Int32Array(n + 1);
    cuda.download(back, big);
    expect(back.every((v) => v === 99)).toBe(true);
    for (const p of [...ptrs, big]) cuda.free(p);
    cuda.close();
  });

  test('a kernel is found by its entry name in the module text; errors carry the driver name', () => {
    const cuda = CudaDriver.open(0, stub);
    const k = generateKernel({ op: 'attention', headDim: 16, merge: false }, 'sm_90');
    cuda.loadKernel(k.ptx, k.name, k.sharedBytes);
    expect(functionName()).toBe(k.name);
    expect(() => cuda.loadKernel(k.ptx, 'kvp_nothing', 0)).toThrow(
      'cuModuleGetFunction(kvp_nothing) failed: CUDA_ERROR_NOT_FOUND',
    );
    const fn = cuda.loadKernel(k.ptx, k.name, 64 * 1024);
    expect(sharedAttribute()).toBe(64 * 1024);
    // Unloading drops the entry's module once; a second unload of the same entry does nothing.
    const before = unloaded() as number;
    cuda.unloadKernel(fn);
    cuda.unloadKernel(fn);
    expect(unloaded()).toBe(before + 1);
    cuda.close();
  });

  test('cuLaunchKernel gets the grid, block, shared bytes and, through kernelParams, every argument', () => {
    const cuda = CudaDriver.open(0, stub);
    const k = generateKernel({ op: 'rmsnorm' }, 'sm_90');
    const fn = cuda.loadKernel(k.ptx, k.name, k.sharedBytes);
    const args = [
      { type: 'u64', value: 0xdead_beef_0000n },
      { type: 'u64', value: 0n },
      { type: 'u64', value: 0x1_0000_0000n },
      { type: 'u64', value: 42n },
      { type: 'u32', value: 13 },
      { type: 'u32', value: 4096 },
      { type: 'f32', value: 1e-5 },
    ] as const;
    expectArgs(
      args.length,
      Uint32Array.from(args, (a) => (a.type === 'u64' ? 8 : 4)),
    );
    // Twice, so that the reused staging buffer is seen to carry the new values.
    for (const g of [7, 9]) {
      cuda.launch(fn, [g, 2, 1], [256, 1, 1], 32, packParams(args));
      const dims = new Uint32Array(7);
      const got = new BigUint64Array(args.length);
      lastLaunch(dims, got);
      expect(Array.from(dims)).toEqual([g, 2, 1, 256, 1, 1, 32]);
      expect(Array.from(got.subarray(0, 4))).toEqual([0xdead_beef_0000n, 0n, 0x1_0000_0000n, 42n]);
      expect([Number(got[4]), Number(got[5])]).toEqual([13, 4096]);
      const f = new DataView(new ArrayBuffer(4));
      f.setUint32(0, Number(got[6]), true);
      expect(f.getFloat32(0, true)).toBe(Math.fround(1e-5));
    }
    // 40 pointers outgrow the first staging buffer (256 bytes).
    const many = Array.from({ length: 40 }, (_, i) => ({ type: 'u64' as const, value: BigInt(i) }));
    expectArgs(32, new Uint32Array(32).fill(8));
    cuda.launch(fn, [1, 1, 1], [256, 1, 1], 0, packParams(many));
    const got = new BigUint64Array(32);
    lastLaunch(new Uint32Array(7), got);
    expect(got[31]).toBe(31n);
    cuda.close();
  });
});
