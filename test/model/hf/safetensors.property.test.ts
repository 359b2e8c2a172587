// Random safetensors files round-trip through the reader bit for bit, and damaged ones are either
// still valid files or refused with a CheckpointError: never another exception, never a read
// outside the file.
import { statSync } from 'node:fs';
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { CheckpointError } from '../../../src/model/hf/checkpointError.ts';
import { readHeader, readTensor } from '../../../src/model/hf/safetensors.ts';
import { scratch } from './scratch.ts';
import { type RawTensor, safetensorsBytes } from './write.ts';

const { put } = scratch('kvplan-safetensors-prop-');

const size = { F32: 4, BF16: 2, F16: 2 } as const;

const tensorArb = (name: string): fc.Arbitrary<RawTensor> =>
  fc
    .record({
      dtype: fc.constantFrom('F32', 'BF16', 'F16') as fc.Arbitrary<keyof typeof size>,
      shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }),
    })
    .chain(({ dtype, shape }) => {
      const n = shape.reduce((a, b) => a * b, 1) * size[dtype];
      return fc.uint8Array({ minLength: n, maxLength: n }).map((bytes) => ({ name, dtype, shape, bytes }));
    });

// Any names, lone surrogates and "__proto__" included; "__metadata__" is the one reserved key.
const nameArb = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 10 })
  .filter((s) => s !== '__metadata__');
const fileArb = fc.record({
  tensors: fc
    .uniqueArray(nameArb, { maxLength: 6 })
    .chain((names) => (names.length ? fc.tuple(...names.map(tensorArb)) : fc.constant([] as RawTensor[]))),
  metadata: fc.option(
    fc.dictionary(
      fc.string().filter((k) => k !== '__proto__'),
      fc.string(),
      { maxKeys: 3 },
    ),
    { nil: undefined },
  ),
});

describe('safetensors round trip', () => {
  test.prop([fileArb], { numRuns: 150 })(
    'every tensor comes back with its name, dtype, shape and bytes',
    ({ tensors, metadata }) => {
      const file = put(safetensorsBytes(tensors, metadata));
      const header = readHeader(file);
      expect([...header.tensors.keys()]).toEqual(tensors.map((t) => t.name));
      expect(header.metadata).toEqual(metadata);
      for (const t of tensors) {
        const info = header.tensors.get(t.name);
        expect(info?.dtype).toBe(t.dtype);
        expect(info?.shape).toEqual(t.shape);
        const read = readTensor(info as NonNullable<typeof info>);
        expect(new Uint8Array(read.data.buffer)).toEqual(t.bytes);
      }
    },
  );

  test.prop(
    [
      fileArb.filter((f) => f.tensors.length > 0),
      fc.oneof(
        fc.record({
          kind: fc.constant('byte' as const),
          at: fc.nat(),
          value: fc.integer({ min: 0, max: 255 }),
        }),
        fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
      ),
    ],
    { numRuns: 300 },
  )(
    'damage gives a valid file or a CheckpointError, and no read outside the file',
    ({ tensors, metadata }, damage) => {
      const bytes = safetensorsBytes(tensors, metadata);
      // Damage the length prefix and the header, where the reader decides what to trust.
      const headerEnd = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const at = damage.at % headerEnd;
      const broken = damage.kind === 'cut' ? bytes.slice(0, at) : bytes.slice();
      if (damage.kind === 'byte') broken[at] = damage.value;
      const file = put(broken);
      let header: ReturnType<typeof readHeader>;
      try {
        header = readHeader(file);
      } catch (e) {
        expect(e).toBeInstanceOf(CheckpointError);
        expect((e as Error).message).toContain(file);
        return;
      }
      const fileSize = statSync(file).size;
      for (const info of header.tensors.values()) {
        expect(info.offset + info.byteLength).toBeLessThanOrEqual(fileSize);
        expect(readTensor(info).data.byteLength).toBe(info.byteLength);
      }
    },
  );
});
