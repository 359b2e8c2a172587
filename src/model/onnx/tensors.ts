/**
 * Reading ONNX tensors (initializers and Constant values): inline raw data, typed fields, or
 * external data files. Models over 2 GiB keep their weights in external files; each is opened once
 * and each tensor's bytes read once from it, never the whole file per tensor.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { OnnxError } from './error.ts';

type Int = number | { toNumber(): number };

export interface TensorProto {
  name?: string | null;
  dims?: Int[] | null;
  dataType?: number | null;
  rawData?: Uint8Array | null;
  floatData?: number[] | null;
  int32Data?: number[] | null;
  int64Data?: Int[] | null;
  dataLocation?: number | null;
  externalData?: { key?: string | null; value?: string | null }[] | null;
}

export const FLOAT = 1;
const INT32 = 6;
const INT64 = 7;
const EXTERNAL = 1;
/** readSync reads at most this much at once (a signed 32-bit length). */
const CHUNK = 2 ** 30;

export const toNumber = (d: Int): number => (typeof d === 'number' ? d : d.toNumber());
export const dimsOf = (t: TensorProto): number[] => (t.dims ?? []).map(toNumber);
export const sizeOf = (t: TensorProto): number => dimsOf(t).reduce((a, b) => a * b, 1);

/** Reads the tensors of one model file; `close` releases the external files it opened. */
export class TensorReader {
  private readonly files = new Map<string, { fd: number; size: number }>();

  constructor(
    private readonly where: string,
    private readonly dir: string,
  ) {}

  private file(location: string, name: string): { fd: number; size: number } {
    const open = this.files.get(location);
    if (open) return open;
    try {
      const fd = openSync(join(this.dir, location), 'r');
      const entry = { fd, size: fstatSync(fd).size };
      this.files.set(location, entry);
      return entry;
    } catch (e) {
      throw new OnnxError(
        `${this.where}: cannot read external data ${location} of ${name}: ${(e as Error).message}`,
      );
    }
  }

  /** The tensor's raw little-endian bytes, or undefined when it uses a typed field instead. */
  private raw(t: TensorProto, bytesPer: number): Uint8Array | undefined {
    const name = t.name ?? '(unnamed)';
    if (t.dataLocation !== EXTERNAL) return t.rawData && t.rawData.length > 0 ? t.rawData : undefined;
    const entry = (k: string) => t.externalData?.find((e) => e.key === k)?.value ?? undefined;
    const location = entry('location');
    if (!location || isAbsolute(location) || normalize(location).startsWith('..'))
      throw new OnnxError(
        `${this.where}: initializer ${name} has an invalid external data location ${JSON.stringify(location)}`,
      );
    const offset = Number(entry('offset') ?? 0);
    const length = Number(entry('length') ?? sizeOf(t) * bytesPer);
    const { fd, size } = this.file(location, name);
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      offset + length > size
    )
      throw new OnnxError(
        `${this.where}: external data of ${name} (offset ${offset}, length ${length}) ends past the end of ${location} (${size} bytes; truncated?)`,
      );
    const out = new Uint8Array(length);
    for (let done = 0; done < length; ) {
      const n = readSync(fd, out, done, Math.min(CHUNK, length - done), offset + done);
      if (n === 0) throw new OnnxError(`${this.where}: external data of ${name} ends early in ${location}`);
      done += n;
    }
    return out;
  }

  /** A float32 tensor's values (a fresh array, not a view of the file). */
  floats(t: TensorProto): Float32Array {
    const name = t.name ?? '(unnamed)';
    if (t.dataType !== FLOAT)
      throw new OnnxError(
        `${this.where}: initializer ${name} has data type ${t.dataType}; only float32 (1) weights are supported`,
      );
    const count = sizeOf(t);
    const bytes = this.raw(t, 4);
    if (bytes) {
      if (bytes.length !== count * 4)
        throw new OnnxError(
          `${this.where}: initializer ${name} holds ${bytes.length} bytes, its shape needs ${count * 4}`,
        );
      // ONNX raw data is little-endian, as are the hosts kvplan runs on: a byte copy is the decode.
      const out = new Float32Array(count);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    const data = t.floatData ?? [];
    if (data.length !== count)
      throw new OnnxError(
        `${this.where}: initializer ${name} holds ${data.length} floats, its shape needs ${count}`,
      );
    return Float32Array.from(data);
  }

  /** A small integer or float constant's values as numbers (shapes, axes, scalars); undefined for other types. */
  numbers(t: TensorProto): number[] | undefined {
    if (t.dataType === FLOAT) return Array.from(this.floats(t));
    if (t.dataType !== INT64 && t.dataType !== INT32) return undefined;
    const width = t.dataType === INT64 ? 8 : 4;
    const bytes = this.raw(t, width);
    if (!bytes) return (t.dataType === INT64 ? (t.int64Data ?? []) : (t.int32Data ?? [])).map(toNumber);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return Array.from({ length: bytes.length / width }, (_, i) =>
      width === 8 ? Number(view.getBigInt64(8 * i, true)) : view.getInt32(4 * i, true),
    );
  }

  close(): void {
    for (const { fd } of this.files.values()) closeSync(fd);
    this.files.clear();
  }
}
