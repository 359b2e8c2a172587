import { closeSync, ftruncateSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { CheckpointError } from '../../../src/model/hf/checkpointError.ts';
import {
  bf16ToFloat32,
  f16ToFloat32,
  openSafetensors,
  readHeader,
  readTensor,
  type StoredTensor,
  toFloat32,
} from '../../../src/model/hf/safetensors.ts';
import { expectThrown } from '../../support/errors.ts';
import { scratch } from './scratch.ts';
import { headerText, type RawTensor, randomTensor, rawSafetensors, safetensorsBytes } from './write.ts';

const { root, put, dir: freshDir } = scratch('kvplan-safetensors-');

const bytesOf = (t: StoredTensor): Uint8Array =>
  new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** The call fails with a CheckpointError whose message contains every part; returns the message. */
const expectError = (f: () => unknown, ...parts: string[]): string =>
  expectThrown(f, CheckpointError, ...parts).message;

const entry = (dtype: string, shape: number[], begin: number, end: number) => ({
  dtype,
  shape,
  data_offsets: [begin, end],
});

describe('reading', () => {
  const tensors: RawTensor[] = [
    randomTensor('a.f32', 'F32', [3, 5], 1),
    randomTensor('b.bf16', 'BF16', [7], 2),
    randomTensor('c.f16', 'F16', [2, 2, 3], 3),
  ];

  test('F32, BF16 and F16 tensors come back bit for bit, in their stored dtypes', () => {
    const file = put(safetensorsBytes(tensors));
    const header = readHeader(file);
    expect([...header.tensors.keys()]).toEqual(['a.f32', 'b.bf16', 'c.f16']);
    for (const t of tensors) {
      const info = header.tensors.get(t.name);
      expect(info).toMatchObject({
        name: t.name,
        file,
        dtype: t.dtype,
        shape: t.shape,
        byteLength: t.bytes.length,
      });
      const read = readTensor(info as NonNullable<typeof info>);
      expect(read.dtype).toBe(t.dtype);
      expect(read.shape).toEqual(t.shape);
      expect(read.data).toBeInstanceOf(t.dtype === 'F32' ? Float32Array : Uint16Array);
      expect(bytesOf(read)).toEqual(t.bytes);
    }
  });

  test('offsets are absolute: past the length, the padded header and the earlier tensors', () => {
    const file = put(safetensorsBytes(tensors));
    const start = 8 + headerText(tensors).length;
    expect(headerText(tensors).length % 8).toBe(0);
    expect(readHeader(file).tensors.get('c.f16')?.offset).toBe(start + 60 + 14);
  });

  test('__metadata__ is allowed and returned; no metadata gives undefined', () => {
    expect(readHeader(put(safetensorsBytes(tensors, { format: 'pt' }))).metadata).toEqual({ format: 'pt' });
    expect(readHeader(put(safetensorsBytes(tensors))).metadata).toBeUndefined();
  });

  test('a scalar (shape []) holds one element; a zero-size tensor none; an empty file of tensors is valid', () => {
    const scalar = randomTensor('s', 'F32', [], 4);
    const empty = { name: 'e', dtype: 'BF16', shape: [0, 3], bytes: new Uint8Array(0) };
    const header = readHeader(put(safetensorsBytes([scalar, empty])));
    expect(readTensor(header.tensors.get('s') as never).data).toHaveLength(1);
    expect(readTensor(header.tensors.get('e') as never).data).toHaveLength(0);
    expect(readHeader(put(rawSafetensors('{}', new Uint8Array(0)))).tensors.size).toBe(0);
  });

  test('a small tensor behind 5 GiB of other data is read without touching the rest (sparse file)', () => {
    const big = 5 * 2 ** 30;
    const small = randomTensor('small', 'F32', [4], 5);
    const json = JSON.stringify({
      big: entry('F16', [big / 2], 0, big),
      small: entry('F32', [4], big, big + 16),
    });
    const file = join(root, 'sparse.safetensors');
    const fd = openSync(file, 'w');
    try {
      writeSync(fd, rawSafetensors(json, new Uint8Array(0)));
      ftruncateSync(fd, 8 + json.length + big + 16);
      writeSync(fd, small.bytes, 0, 16, 8 + json.length + big);
    } finally {
      closeSync(fd);
    }
    const header = readHeader(file);
    expect(header.tensors.get('big')?.byteLength).toBe(big);
    const info = header.tensors.get('small');
    expect(info?.offset).toBe(8 + json.length + big);
    expect(bytesOf(readTensor(info as never))).toEqual(small.bytes);
  });

  test('a file cut short after its header was read fails the read, naming the file', () => {
    const t = randomTensor('w', 'F32', [64], 6);
    const file = put(safetensorsBytes([t]));
    const info = readHeader(file).tensors.get('w');
    const fd = openSync(file, 'r+');
    ftruncateSync(fd, 8 + headerText([t]).length + 100);
    closeSync(fd);
    expectError(() => readTensor(info as never), file, 'ended 156 bytes early');
  });
});

describe('16-bit conversion', () => {
  const bits = (f: Float32Array): number[] => [...new Uint32Array(f.buffer)];
  type Convert = (h: Uint16Array) => Float32Array;

  /** [title, conversion, [pattern, value] pairs (Object.is), NaN patterns, their float32 bits]. */
  const edges: [string, Convert, [number, number][], number[], number[]][] = [
    [
      'bf16 edge values: ±0, subnormals, the smallest normal, the maximum, ±inf, NaN with its payload',
      bf16ToFloat32,
      [
        [0x0000, 0],
        [0x8000, -0],
        [0x0001, 2 ** -133],
        [0x807f, -(127 * 2 ** -133)],
        [0x0080, 2 ** -126],
        [0x3f80, 1],
        [0xc000, -2],
        [0x7f7f, (2 - 2 ** -7) * 2 ** 127],
        [0xff7f, -(2 - 2 ** -7) * 2 ** 127],
        [0x7f80, Infinity],
        [0xff80, -Infinity],
      ],
      [0x7fc0, 0x7f81, 0xffff],
      [0x7fc00000, 0x7f810000, 0xffff0000],
    ],
    [
      'f16 edge values: ±0, subnormals, the smallest normal, 65504, ±inf, NaN with its payload',
      f16ToFloat32,
      [
        [0x0000, 0],
        [0x8000, -0],
        [0x0001, 2 ** -24],
        [0x03ff, 1023 * 2 ** -24],
        [0x8200, -(512 * 2 ** -24)],
        [0x0400, 2 ** -14],
        [0x3c00, 1],
        [0x3555, 0.333251953125],
        [0xc000, -2],
        [0x7bff, 65504],
        [0xfbff, -65504],
        [0x7c00, Infinity],
        [0xfc00, -Infinity],
      ],
      [0x7e00, 0x7c01, 0xfe00],
      [0x7fc00000, 0x7f802000, 0xffc00000],
    ],
  ];
  test.each(edges)('%s', (_title, convert, cases, nans, nanBits) => {
    const out = convert(Uint16Array.from(cases.map((c) => c[0])));
    for (const [i, [, v]] of cases.entries()) expect(Object.is(out[i], v), `case ${i}`).toBe(true);
    expect(bits(convert(Uint16Array.from(nans)))).toEqual(nanBits);
  });

  const dv = new DataView(new ArrayBuffer(4));
  /** [title, conversion, its value of a pattern computed another way]. */
  const exhaustive: [string, Convert, (h: number) => number][] = [
    [
      'bf16: all 65536 patterns agree with a big-endian DataView read of the top half',
      bf16ToFloat32,
      (h) => {
        dv.setUint16(0, h);
        dv.setUint16(2, 0);
        return dv.getFloat32(0);
      },
    ],
    [
      'f16: all 65536 patterns agree with sign · 2^(e−15) · (1 + m/1024), in float64',
      f16ToFloat32,
      (h) => {
        const s = h & 0x8000 ? -1 : 1;
        const e = (h >> 10) & 0x1f;
        const m = h & 0x3ff;
        return e === 0
          ? s * m * 2 ** -24
          : e === 31
            ? m
              ? NaN
              : s * Infinity
            : s * (1 + m / 1024) * 2 ** (e - 15);
      },
    ],
  ];
  test.each(exhaustive)('%s', (_title, convert, value) => {
    const out = convert(Uint16Array.from({ length: 65536 }, (_, i) => i));
    for (let h = 0; h < 65536; h++) {
      const want = value(h);
      if (Number.isNaN(want)) expect(Number.isNaN(out[h])).toBe(true);
      else if (!Object.is(out[h], want))
        expect.fail(`${convert.name}(0x${h.toString(16)}): got ${out[h]}, want ${want}`);
    }
  });

  test('toFloat32 returns F32 data itself and widens the 16-bit dtypes', () => {
    const f32 = Float32Array.of(1.5, -2);
    expect(toFloat32({ dtype: 'F32', shape: [2], data: f32 })).toBe(f32);
    expect([...toFloat32({ dtype: 'BF16', shape: [2], data: Uint16Array.of(0x3fc0, 0xc000) })]).toEqual([
      1.5, -2,
    ]);
    expect([...toFloat32({ dtype: 'F16', shape: [2], data: Uint16Array.of(0x3e00, 0xc000) })]).toEqual([
      1.5, -2,
    ]);
  });
});

describe('malformed files are refused with a CheckpointError naming the file (and tensor)', () => {
  const data = (n: number) => new Uint8Array(n);
  /** A file of this header (as JSON) and `n` bytes of data. */
  const withHeader = (header: unknown, n: number) => rawSafetensors(JSON.stringify(header), data(n));
  /** Tensor "a" twice: JSON.parse keeps the second. */
  const twice =
    '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}';
  // biome-ignore format: a table, one case a line
  const cases: [string, Uint8Array, string[]][] = [
    ['shorter than the length prefix', new Uint8Array(5), ['5 bytes, too short']],
    ['a header length past the end of the file', rawSafetensors('{}', data(0), 1000n),
      ['1000 runs past the end']],
    ['a header length above 100 MB', rawSafetensors('{}', data(0), 200_000_000n),
      ['exceeds the 100000000-byte limit']],
    ['a header length of 2^63', rawSafetensors('{}', data(0), 2n ** 63n), ['exceeds']],
    ['a header that is not UTF-8', rawSafetensors(Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d), data(0)),
      ['not valid UTF-8']],
    ['a header that is not JSON', rawSafetensors('{"w": ', data(0)), ['not valid JSON']],
    ['a header that is a JSON array', rawSafetensors('[1, 2]', data(0)), ['not a JSON object']],
    ['an entry that is not an object', withHeader({ w: 3 }, 0), ['tensor "w"', 'not an object']],
    ['an entry without a dtype', withHeader({ w: { shape: [2], data_offsets: [0, 8] } }, 8),
      ['tensor "w"', '"dtype"']],
    ['a negative dimension', withHeader({ w: entry('F32', [-2], 0, 8) }, 8), ['tensor "w"', '"shape"']],
    ['a fractional offset', withHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 7.5] } }, 8),
      ['tensor "w"', '"data_offsets"']],
    ['a single offset', withHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [8] } }, 8),
      ['tensor "w"', 'two non-negative integers']],
    ['an I64 tensor', safetensorsBytes([randomTensor('position_ids', 'I64', [4], 1)]),
      ['tensor "position_ids"', 'dtype I64 is not supported', 'F32, BF16 and F16']],
    ['an F8 tensor', safetensorsBytes([randomTensor('w8', 'F8_E4M3', [16], 1)]),
      ['tensor "w8"', 'dtype F8_E4M3 is not supported']],
    ['an unknown dtype', withHeader({ q: entry('Q4_K', [2], 0, 8) }, 8),
      ['tensor "q"', 'unknown dtype "Q4_K"']],
    ['offsets beyond the data', withHeader({ w: entry('F32', [16], 0, 64) }, 16),
      ['tensor "w"', 'run past the end of the data (16 bytes']],
    ['offsets that end before they begin', withHeader({ w: entry('F32', [0], 8, 0) }, 8),
      ['tensor "w"', 'end before']],
    ['a byte range that does not match shape × dtype size', withHeader({ w: entry('F32', [3], 0, 8) }, 8),
      ['tensor "w"', 'hold 8 bytes', 'needs 12']],
    ['a shape too large to address', withHeader({ w: entry('F32', [2 ** 40, 2 ** 40], 0, 8) }, 8),
      ['tensor "w"', 'too large']],
    ['overlapping tensors', withHeader({ a: entry('F32', [4], 0, 16), b: entry('F32', [4], 8, 24) }, 24),
      ['"a" and "b" overlap']],
    ['a hole between tensors', withHeader({ a: entry('F32', [2], 0, 8), b: entry('F32', [2], 16, 24) }, 24),
      ['bytes 8..16 of the data belong to no tensor']],
    ['trailing bytes', withHeader({ a: entry('F32', [2], 0, 8) }, 16), ['8 bytes after the last tensor']],
    ['a duplicated key (JSON.parse keeps the last)', rawSafetensors(twice, data(16)),
      ['bytes 0..8 of the data belong to no tensor']],
    ['metadata that is not all strings', withHeader({ __metadata__: { step: 3 } }, 0),
      ['"__metadata__" must be an object of strings']],
  ];

  test.each(cases)('%s', (_what, bytes, parts) => {
    const file = put(bytes);
    expectError(() => readHeader(file), file, ...parts);
  });

  test('a huge tensor name is clipped in the message', () => {
    const name = 'x'.repeat(100_000);
    const file = put(rawSafetensors(JSON.stringify({ [name]: entry('I64', [1], 0, 8) }), data(8)));
    const message = expectError(() => readHeader(file), file, '(100000 characters)', 'dtype I64');
    expect(message.length).toBeLessThan(file.length + 300);
  });

  test('a valid file cut short is refused at its last tensor', () => {
    const whole = safetensorsBytes([randomTensor('a', 'F32', [4], 1), randomTensor('b', 'BF16', [8], 2)]);
    const file = put(whole.subarray(0, whole.length - 3));
    expectError(() => readHeader(file), file, 'tensor "b"', 'truncated');
  });

  test('a missing file, and a file removed after its header was read', () => {
    expectError(() => readHeader(join(root, 'nope.safetensors')), 'nope.safetensors', 'cannot open');
    const file = put(safetensorsBytes([randomTensor('w', 'F32', [2], 1)]));
    const info = readHeader(file).tensors.get('w');
    rmSync(file);
    expectError(() => readTensor(info as never), file, 'cannot open');
  });
});

describe('a checkpoint directory: model.safetensors or an index with shards', () => {
  const a = randomTensor('a', 'F32', [4], 1);
  const b = randomTensor('b', 'BF16', [6], 2);
  const c = randomTensor('c', 'F16', [3], 3);
  const writeIndex = (dir: string, index: unknown) =>
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      typeof index === 'string' ? index : JSON.stringify(index),
    );
  const sharded = (): string => {
    const dir = freshDir();
    writeFileSync(join(dir, 's1.safetensors'), safetensorsBytes([a, b]));
    writeFileSync(join(dir, 's2.safetensors'), safetensorsBytes([c]));
    writeIndex(dir, {
      metadata: { total_size: 34 },
      weight_map: { a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors' },
    });
    return dir;
  };

  test('a sharded checkpoint: every tensor from its shard, bit for bit', () => {
    const dir = sharded();
    const set = openSafetensors(dir);
    expect(set.index).toBe(join(dir, 'model.safetensors.index.json'));
    expect(set.files).toEqual([join(dir, 's1.safetensors'), join(dir, 's2.safetensors')]);
    for (const t of [a, b, c]) expect(bytesOf(readTensor(set.tensors.get(t.name) as never))).toEqual(t.bytes);
    expect(set.tensors.get('c')?.file).toBe(join(dir, 's2.safetensors'));
  });

  test('model.safetensors wins over an index, as in transformers', () => {
    const dir = sharded();
    writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes([b]));
    const set = openSafetensors(dir);
    expect(set.index).toBeUndefined();
    expect([...set.tensors.keys()]).toEqual(['b']);
  });

  test('no safetensors at all', () => {
    const dir = freshDir();
    expectError(() => openSafetensors(dir), dir, 'no model.safetensors and no model.safetensors.index.json');
  });

  const index = (dir: string) => join(dir, 'model.safetensors.index.json');
  const broken: [string, (dir: string) => void, (dir: string) => string[]][] = [
    [
      'an index naming a missing shard',
      (dir) => rmSync(join(dir, 's2.safetensors')),
      (dir) => [index(dir), 'shard "s2.safetensors"', '"c"', 'does not exist'],
    ],
    [
      'an index mapping a tensor to a shard that does not hold it',
      (dir) =>
        writeIndex(dir, { weight_map: { a: 's1.safetensors', b: 's2.safetensors', c: 's2.safetensors' } }),
      (dir) => [index(dir), 'tensor "b" is mapped to "s2.safetensors", which does not hold it'],
    ],
    [
      'a shard holding a tensor the index does not list',
      (dir) => writeIndex(dir, { weight_map: { a: 's1.safetensors', c: 's2.safetensors' } }),
      (dir) => [join(dir, 's1.safetensors'), 'tensor "b"', 'does not list'],
    ],
    [
      'a tensor in two shards',
      (dir) => writeFileSync(join(dir, 's2.safetensors'), safetensorsBytes([c, a])),
      (dir) => [join(dir, 's2.safetensors'), 'tensor "a"', 'maps to "s1.safetensors"'],
    ],
    [
      'a shard path leaving the directory',
      (dir) => writeIndex(dir, { weight_map: { a: '../s1.safetensors' } }),
      (dir) => [index(dir), 'tensor "a"', 'not a file name in the checkpoint directory'],
    ],
    [
      'an index without a weight_map',
      (dir) => writeIndex(dir, { metadata: {} }),
      (dir) => [index(dir), '"weight_map" is missing'],
    ],
    [
      'an empty weight_map',
      (dir) => writeIndex(dir, { weight_map: {} }),
      (dir) => [index(dir), 'names no tensors'],
    ],
    [
      'an index that is not JSON',
      (dir) => writeIndex(dir, '{"weight_map": '),
      (dir) => [index(dir), 'not valid JSON'],
    ],
    [
      'a malformed shard',
      (dir) => writeFileSync(join(dir, 's2.safetensors'), new Uint8Array(3)),
      (dir) => [join(dir, 's2.safetensors'), 'too short'],
    ],
  ];
  test.each(broken)('%s', (_what, breakIt, parts) => {
    const dir = sharded();
    breakIt(dir);
    expectError(() => openSafetensors(dir), ...parts(dir));
  });
});
