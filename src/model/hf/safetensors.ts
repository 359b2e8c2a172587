/**
 * A reader for Hugging Face safetensors files, single (`model.safetensors`) or sharded
 * (`model.safetensors.index.json` + shards). A file is treated as hostile until its header has
 * been checked: the header length against a bound and the file size, every tensor's dtype, shape
 * and byte range, and the ranges against each other, before anything large is allocated. Tensors
 * are then read one at a time, by name, into their stored dtype: nothing here widens a whole
 * model. See docs/checkpoints.md.
 */

import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { bf16ToFloat32, f16ToFloat32 } from '../half.ts';
import { readSmallFile, SmallFileError } from '../smallFile.ts';
import { CheckpointError } from './checkpointError.ts';

/** The dtypes kvplan reads. BF16 and F16 stay raw 16-bit patterns until a backend packs them. */
export type StoredDtype = 'F32' | 'BF16' | 'F16';

export const dtypeBytes: Readonly<Record<StoredDtype, number>> = { F32: 4, BF16: 2, F16: 2 };

const isStoredDtype = (d: string): d is StoredDtype => Object.hasOwn(dtypeBytes, d);

/** The rest of the safetensors dtype vocabulary: recognised, so that the refusal can say what it saw. */
const otherDtypes = new Set([
  'F64',
  'I64',
  'I32',
  'I16',
  'I8',
  'U64',
  'U32',
  'U16',
  'U8',
  'BOOL',
  'F8_E4M3',
  'F8_E5M2',
  'F8_E8M0',
  'F6_E2M3',
  'F6_E3M2',
  'F4',
  'C64',
]);

/** The safetensors reference implementation refuses headers above 100 MB; so does kvplan. */
export const maxHeaderBytes = 100_000_000;

/** JSON side files (index, config) are small; a bound keeps a hostile one from being slurped. */
export const maxJsonBytes = 100_000_000;

export interface TensorInfo {
  /** The name in the file. */
  name: string;
  /** Path of the file that holds it. */
  file: string;
  dtype: StoredDtype;
  shape: number[];
  /** Absolute byte offset of the first element in `file`. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  file: string;
  /** In header order. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string> | undefined;
}

export type StoredTensor =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'BF16' | 'F16'; shape: number[]; data: Uint16Array };

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

const showShape = (s: readonly number[]): string =>
  s.length > 8 ? `[${s.slice(0, 8).join(', ')}, … (${s.length} dimensions)]` : `[${s.join(', ')}]`;

/** A name from a file, quoted for a message and clipped: a hostile header may hold huge names. */
export function quoted(name: string): string {
  const q = JSON.stringify(name);
  return q.length > 120 ? `${q.slice(0, 100)}…" (${name.length} characters)` : q;
}

/** Elements of `shape`, or undefined when the count is not a safe integer. */
function elementCount(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

/**
 * Validates a header (`json`: the bytes after the length prefix) against a file of `fileSize`
 * bytes. Offsets come back absolute. The byte ranges must tile the data exactly, as the
 * reference implementation requires: an overlap, a hole or trailing bytes all mean the header does
 * not describe the file (a duplicated JSON key, whose first entry JSON.parse drops, shows up as a
 * hole).
 */
export function parseHeader(json: Uint8Array, file: string, fileSize: number): SafetensorsHeader {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${file}: ${msg}`);
  };
  const dataStart = 8 + json.length;
  const dataSize = fileSize - dataStart;
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    fail('the safetensors header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    fail(`the safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (!isRecord(parsed)) return fail('the safetensors header is not a JSON object');

  let metadata: Record<string, string> | undefined;
  const tensors = new Map<string, TensorInfo>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isRecord(entry) || Object.values(entry).some((v) => typeof v !== 'string'))
        fail('"__metadata__" must be an object of strings');
      metadata = entry as Record<string, string>;
      continue;
    }
    const bad = (msg: string): never => fail(`tensor ${quoted(name)}: ${msg}`);
    if (!isRecord(entry)) bad('its entry is not an object');
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string') return bad('"dtype" is missing or not a string');
    if (!isStoredDtype(dtype)) {
      if (otherDtypes.has(dtype)) bad(`dtype ${dtype} is not supported (kvplan reads F32, BF16 and F16)`);
      return bad(`unknown dtype ${quoted(dtype)} (kvplan reads F32, BF16 and F16)`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount))
      return bad('"shape" must be an array of non-negative integers');
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount))
      return bad('"data_offsets" must be two non-negative integers [begin, end]');
    const [begin, end] = offsets as [number, number];
    if (begin > end) bad(`data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataSize)
      bad(
        `data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes; truncated file?)`,
      );
    const count = elementCount(shape);
    const need = count === undefined ? undefined : count * dtypeBytes[dtype];
    if (need === undefined || !Number.isSafeInteger(need))
      return bad(`shape ${showShape(shape)} is too large to address`);
    if (end - begin !== need)
      bad(
        `data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but shape ${showShape(shape)} of ${dtype} needs ${need}`,
      );
    tensors.set(name, { name, file, dtype, shape, offset: dataStart + begin, byteLength: need });
    ranges.push({ name, begin, end });
  }

  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let previous = '';
  for (const r of ranges) {
    if (r.begin < pos)
      fail(
        `tensors ${quoted(previous)} and ${quoted(r.name)} overlap (bytes ${r.begin}..${pos} of the data)`,
      );
    if (r.begin > pos) fail(`bytes ${pos}..${r.begin} of the data belong to no tensor`);
    pos = r.end;
    previous = r.name;
  }
  if (pos < dataSize) fail(`${dataSize - pos} bytes after the last tensor belong to no tensor`);
  return { file, tensors, metadata };
}

/** Reads `length` bytes at `position` of an open file into `into`, or fails naming the file. */
function readFully(fd: number, into: Uint8Array, position: number, file: string): void {
  // One readSync call moves at most 2 GiB on some platforms, and may return short.
  const chunk = 1 << 30;
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, Math.min(chunk, into.length - done), position + done);
    if (n === 0)
      throw new CheckpointError(
        `${file}: the file ended ${into.length - done} bytes early at byte ${position + done} (truncated or changed while reading?)`,
      );
    done += n;
  }
}

function openFile(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (e) {
    throw new CheckpointError(`${file}: cannot open (${(e as Error).message})`);
  }
}

/** Reads and validates the header of one safetensors file; reads no tensor data. */
export function readHeader(file: string): SafetensorsHeader {
  const fd = openFile(file);
  try {
    const size = fstatSync(fd).size;
    if (size < 8)
      throw new CheckpointError(
        `${file}: the file is ${size} bytes, too short for the 8-byte header length (truncated?)`,
      );
    const prefix = new Uint8Array(8);
    readFully(fd, prefix, 0, file);
    const length = new DataView(prefix.buffer).getBigUint64(0, true);
    if (length > BigInt(maxHeaderBytes))
      throw new CheckpointError(
        `${file}: the header length ${length} exceeds the ${maxHeaderBytes}-byte limit (not a safetensors file?)`,
      );
    if (Number(length) > size - 8)
      throw new CheckpointError(
        `${file}: the header length ${length} runs past the end of the ${size}-byte file (truncated?)`,
      );
    const json = new Uint8Array(Number(length));
    readFully(fd, json, 8, file);
    return parseHeader(json, file, size);
  } finally {
    closeSync(fd);
  }
}

/** Reads one tensor into its stored dtype: Float32Array for F32, raw 16-bit patterns otherwise. */
export function readTensor(info: TensorInfo): StoredTensor {
  const buffer = new ArrayBuffer(info.byteLength);
  readTensorInto(info, new Uint8Array(buffer));
  const shape = [...info.shape];
  return info.dtype === 'F32'
    ? { dtype: 'F32', shape, data: new Float32Array(buffer) }
    : { dtype: info.dtype, shape, data: new Uint16Array(buffer) };
}

/**
 * Reads one tensor's stored bytes into `into` (exactly its byte length), which may be memory a
 * backend owns: the tensor is then never held twice.
 */
export function readTensorInto(info: TensorInfo, into: Uint8Array): void {
  // safetensors data is little-endian and typed arrays over it use the host's byte order.
  if (endianness() !== 'LE')
    throw new CheckpointError(`${info.file}: kvplan reads safetensors on little-endian hosts only`);
  if (into.length !== info.byteLength)
    throw new RangeError(`${info.name} is ${info.byteLength} bytes; the buffer given holds ${into.length}`);
  const fd = openFile(info.file);
  try {
    readFully(fd, into, info.offset, info.file);
  } finally {
    closeSync(fd);
  }
}

export { bf16ToFloat32, f16ToFloat32 } from '../half.ts';

/** One tensor as float32: F32 data as it is (no copy), 16-bit data widened. */
export function toFloat32(t: StoredTensor): Float32Array {
  if (t.dtype === 'F32') return t.data;
  return t.dtype === 'BF16' ? bf16ToFloat32(t.data) : f16ToFloat32(t.data);
}

/** Parses a small JSON side file (config, index), bounded in size; errors name the file. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readSmallFile(file, maxJsonBytes);
  } catch (e) {
    if (!(e instanceof SmallFileError)) throw e;
    throw new CheckpointError(`${file}: cannot read (${e.message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

export const singleFileName = 'model.safetensors';
export const indexFileName = 'model.safetensors.index.json';

export interface SafetensorsSet {
  /** The index file, when the checkpoint is sharded. */
  index: string | undefined;
  /** Shard paths (one for a single file), in the order first named. */
  files: string[];
  /** Every tensor of every file, by name. */
  tensors: Map<string, TensorInfo>;
}

/** A shard name must stay inside the checkpoint directory. */
const plainFileName = (s: string): boolean =>
  s.length > 0 && s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\\') && !s.includes('\0');

/**
 * The safetensors of a checkpoint directory. `model.safetensors` wins over an index, as in
 * transformers. For a sharded checkpoint, the index and the shards' headers must agree both ways:
 * every tensor the index names is in the shard it names, and every tensor of every shard is named
 * by the index for that shard (so no tensor is in two shards).
 */
export function openSafetensors(dir: string): SafetensorsSet {
  const single = join(dir, singleFileName);
  if (existsSync(single)) {
    const header = readHeader(single);
    return { index: undefined, files: [single], tensors: header.tensors };
  }
  const index = join(dir, indexFileName);
  if (!existsSync(index))
    throw new CheckpointError(
      `${dir}: no ${singleFileName} and no ${indexFileName} (not a safetensors checkpoint?)`,
    );
  const fail = (msg: string): never => {
    throw new CheckpointError(`${index}: ${msg}`);
  };
  const parsed = readJsonFile(index);
  if (!isRecord(parsed)) return fail('not a JSON object');
  const map = parsed.weight_map;
  if (!isRecord(map)) return fail('"weight_map" is missing or not an object');
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || !plainFileName(shard))
      fail(
        `tensor ${quoted(name)} maps to ${typeof shard === 'string' ? quoted(shard) : 'a non-string'}, which is not a file name in the checkpoint directory`,
      );
    const list = byShard.get(shard as string) ?? [];
    list.push(name);
    byShard.set(shard as string, list);
  }
  if (byShard.size === 0) fail('"weight_map" names no tensors');

  const headers = new Map<string, SafetensorsHeader>();
  for (const [shard, names] of byShard) {
    const file = join(dir, shard);
    if (!existsSync(file))
      fail(`shard ${quoted(shard)} (holding ${quoted(names[0] as string)}) does not exist`);
    const header = readHeader(file);
    for (const name of names)
      if (!header.tensors.has(name))
        fail(`tensor ${quoted(name)} is mapped to ${quoted(shard)}, which does not hold it`);
    headers.set(shard, header);
  }
  const tensors = new Map<string, TensorInfo>();
  for (const [shard, header] of headers) {
    for (const [name, info] of header.tensors) {
      const mapped = Object.hasOwn(map, name) ? map[name] : undefined;
      if (mapped !== shard)
        throw new CheckpointError(
          `${header.file}: holds tensor ${quoted(name)}, which ${indexFileName} ${mapped === undefined ? 'does not list' : `maps to ${quoted(String(mapped))}`}`,
        );
      tensors.set(name, info);
    }
  }
  return { index, files: [...headers.values()].map((h) => h.file), tensors };
}
