/**
 * A CudaDevice that, while recording, synchronises after every call and charges the wall time to the kernel launched
 * (by entry name) or to the kind of copy. The driver exposes no events to this code, so each
 * kernel's time includes its launch (a few microseconds through koffi); what the calls do not
 * account for of a run is the host's own time. Used by bench/gpu/generate.ts only: synchronising
 * serialises host and device, so a profiled run is slower than a timed one.
 */
import type { CudaDevice, Dim3, PackedParams } from '../../src/backends/cuda-ptx/launch.ts';

interface Entry {
  ms: number;
  calls: number;
}

export class DeviceProfile implements CudaDevice {
  private readonly names = new Map<unknown, string>();
  private readonly spent = new Map<string, Entry>();
  /** Off, every call passes straight through (a timed run); on, each is synchronised and charged. */
  recording = false;

  constructor(private readonly inner: CudaDevice) {}

  get computeCapability(): readonly [number, number] {
    return this.inner.computeCapability;
  }

  private charge<T>(what: string, f: () => T): T {
    if (!this.recording) return f();
    const t = performance.now();
    const r = f();
    this.inner.synchronize();
    const e = this.spent.get(what) ?? { ms: 0, calls: 0 };
    e.ms += performance.now() - t;
    e.calls++;
    this.spent.set(what, e);
    return r;
  }

  loadKernel(ptx: string, name: string, sharedBytes: number): unknown {
    const fn = this.inner.loadKernel(ptx, name, sharedBytes);
    this.names.set(fn, name);
    return fn;
  }
  unloadKernel(fn: unknown): void {
    this.inner.unloadKernel(fn);
  }
  alloc(bytes: number): bigint {
    return this.inner.alloc(bytes);
  }
  free(ptr: bigint): void {
    this.inner.free(ptr);
  }
  upload(dst: bigint, src: ArrayBufferView): void {
    this.charge('(upload)', () => this.inner.upload(dst, src));
  }
  download(dst: ArrayBufferView, src: bigint): void {
    this.charge('(download)', () => this.inner.download(dst, src));
  }
  copy(dst: bigint, src: bigint, bytes: number): void {
    this.charge('(device copy)', () => this.inner.copy(dst, src, bytes));
  }
  fill(dst: bigint, byte: number, bytes: number): void {
    this.charge('(fill)', () => this.inner.fill(dst, byte, bytes));
  }
  launch(fn: unknown, grid: Dim3, block: Dim3, sharedBytes: number, params: PackedParams): void {
    const name = this.names.get(fn) ?? '(unknown kernel)';
    this.charge(name, () => this.inner.launch(fn, grid, block, sharedBytes, params));
  }
  synchronize(): void {
    this.inner.synchronize();
  }
  close(): void {
    this.inner.close();
  }

  /** Milliseconds and calls by kernel or copy, largest first, and the host's share of `totalMs`. */
  report(totalMs: number): { name: string; ms: number; calls: number }[] {
    const rows = [...this.spent].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms);
    const device = rows.reduce((s, r) => s + r.ms, 0);
    return [...rows, { name: '(host)', ms: totalMs - device, calls: 0 }];
  }

  lines(totalMs: number): string[] {
    return this.report(totalMs).map(
      (r) =>
        `${r.name.padEnd(28)} ${r.ms.toFixed(1).padStart(9)} ms ${((100 * r.ms) / totalMs).toFixed(1).padStart(5)}%` +
        (r.calls ? ` ${r.calls} calls, ${((1000 * r.ms) / r.calls).toFixed(1)} us each` : ''),
    );
  }
}
