/**
 * A CudaDevice that does nothing: allocations are addresses that are never touched, launches and
 * copies return at once, downloads read zeros. PtxRunner on it costs only its host side (argument
 * packing, launch bookkeeping, the runtime between calls), which bench/gpu/generate.ts --null
 * measures on a machine without a GPU.
 */
import type { CudaDevice } from '../../src/backends/cuda-ptx/launch.ts';

export class NullDevice implements CudaDevice {
  readonly computeCapability = [9, 0] as const;
  private next = 1n << 40n;

  loadKernel(_ptx: string, name: string): unknown {
    return name;
  }
  unloadKernel(): void {}
  alloc(bytes: number): bigint {
    const p = this.next;
    this.next += BigInt((bytes + 255) & ~255) + 256n;
    return p;
  }
  free(): void {}
  upload(): void {}
  download(dst: ArrayBufferView): void {
    new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).fill(0);
  }
  copy(): void {}
  fill(): void {}
  launch(): void {}
  synchronize(): void {}
  close(): void {}
}
