/**
 * A checkpoint's weights, read on demand: `get` reads one tensor from its file in the stored dtype
 * and checks that it is finite, and nothing here keeps it. A backend that loads its weights one
 * tensor at a time into its own buffers so never holds the model twice, and the host holds none
 * of it between steps (the float64 reference re-reads each layer's tensors as it runs them, from
 * the page cache). See docs/checkpoints.md, "Memory".
 */
import type { HalfDtype } from '../half.ts';
import { checkFinite, type StoredForm, type StreamedWeights, type Tensor, WeightError } from '../weights.ts';
import type { Checkpoint } from './checkpoint.ts';
import { CheckpointError } from './checkpointError.ts';
import { dtypeBytes, readTensorInto, type StoredDtype, type TensorInfo } from './safetensors.ts';

const halfOf = (d: StoredDtype): HalfDtype | undefined =>
  d === 'F32' ? undefined : d === 'BF16' ? 'bf16' : 'f16';

export class StoredWeights implements StreamedWeights {
  constructor(private readonly checkpoint: Checkpoint) {}

  get size(): number {
    return this.checkpoint.tensors.size;
  }

  has(name: string): boolean {
    return this.checkpoint.tensors.has(name);
  }

  form(name: string): StoredForm | undefined {
    const info = this.checkpoint.tensors.get(name);
    return info && { shape: [...info.shape], half: halfOf(info.dtype) };
  }

  /** Reads tensor `name`; a CheckpointError names the file and tensor when it holds a NaN or infinity. */
  get(name: string): Tensor | undefined {
    const info = this.checkpoint.tensors.get(name);
    if (info === undefined) return undefined;
    return this.checked(info, this.checkpoint.tensor(name).data);
  }

  readInto(name: string, into: Uint8Array): void {
    const info = this.checkpoint.tensors.get(name);
    if (info === undefined) throw new CheckpointError(`${this.checkpoint.dir}: no tensor "${name}"`);
    readTensorInto(info, into);
    const n = info.byteLength / dtypeBytes[info.dtype];
    this.checked(
      info,
      info.dtype === 'F32'
        ? new Float32Array(into.buffer, into.byteOffset, n)
        : new Uint16Array(into.buffer, into.byteOffset, n),
    );
  }

  private checked(info: TensorInfo, data: Float32Array | Uint16Array): Tensor {
    const shape = [...info.shape];
    const half = halfOf(info.dtype);
    const tensor: Tensor =
      half === undefined ? { shape, data: data as Float32Array } : { shape, half, bits: data as Uint16Array };
    try {
      checkFinite(info.name, tensor, this.checkpoint.dir);
    } catch (e) {
      if (!(e instanceof WeightError)) throw e;
      throw new CheckpointError(`${info.file}: ${e.message}`);
    }
    return tensor;
  }

  keys(): MapIterator<string> {
    return this.checkpoint.tensors.keys();
  }

  *entries(): MapIterator<[string, Tensor]> {
    for (const name of this.keys()) yield [name, this.get(name) as Tensor];
  }

  *values(): MapIterator<Tensor> {
    for (const [, t] of this.entries()) yield t;
  }

  [Symbol.iterator](): MapIterator<[string, Tensor]> {
    return this.entries();
  }

  forEach(fn: (value: Tensor, key: string, map: ReadonlyMap<string, Tensor>) => void): void {
    for (const [name, t] of this.entries()) fn(t, name, this);
  }
}
