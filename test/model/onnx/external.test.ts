// External data (how exporters store models over 2 GiB): every weight file is opened once and
// each tensor's bytes read once from it, never the whole file per tensor.
import * as fs from 'node:fs';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkg from 'onnx-proto';
import { afterAll, expect, test, vi } from 'vitest';
import { loadOnnx } from '../../../src/model/onnx/load.ts';

vi.mock('node:fs', async (original) => {
  const real = await original<typeof import('node:fs')>();
  return { ...real, openSync: vi.fn(real.openSync), readFileSync: vi.fn(real.readFileSync) };
});

const { onnx } = pkg;
const dir = mkdtempSync(join(tmpdir(), 'kvplan-external-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Init = {
  rawData: Uint8Array;
  dataLocation: number;
  externalData: { key: string; value: string }[];
};

test('a foreign file with its weights in an external data file loads the same, opening it once', () => {
  const root = 'test/fixtures/onnx-foreign';
  const bytes = readFileSync(join(root, 'qwen2-tiny.onnx'));
  const m = onnx.ModelProto.decode(bytes);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  let moved = 0;
  for (const t of (m.graph as unknown as { initializer: Init[] }).initializer) {
    if (t.rawData.length < 64) continue;
    t.externalData = [
      { key: 'location', value: 'weights.bin' },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(t.rawData.length) },
    ];
    t.dataLocation = 1;
    chunks.push(t.rawData);
    offset += t.rawData.length;
    t.rawData = new Uint8Array(0);
    moved++;
  }
  writeFileSync(join(dir, 'weights.bin'), Buffer.concat(chunks));
  writeFileSync(join(dir, 'm.onnx'), onnx.ModelProto.encode(m).finish());
  writeFileSync(join(dir, 'm.kvplan.json'), readFileSync(join(root, 'qwen2-tiny.kvplan.json')));
  expect(moved).toBeGreaterThan(20);

  const opened = vi.mocked(fs.openSync);
  const whole = vi.mocked(fs.readFileSync);
  opened.mockClear();
  whole.mockClear();
  const external = loadOnnx(join(dir, 'm.onnx'));
  const onWeights = (calls: unknown[][]) => calls.filter((c) => String(c[0]).endsWith('weights.bin')).length;
  expect(onWeights(opened.mock.calls)).toBe(1);
  expect(onWeights(whole.mock.calls)).toBe(0);

  const inline = loadOnnx(join(root, 'qwen2-tiny.onnx'));
  expect(external.config).toEqual({ ...inline.config, name: 'm' });
  expect([...external.weights.keys()]).toEqual([...inline.weights.keys()]);
  for (const [name, t] of inline.weights) expect(external.weights.get(name)).toEqual(t);
});

test('external data past the end of its file is refused, naming both', () => {
  writeFileSync(join(dir, 'weights.bin'), new Uint8Array(100));
  expect(() => loadOnnx(join(dir, 'm.onnx'))).toThrow(
    /external data of .* ends past the end of weights\.bin \(100 bytes; truncated\?\)/,
  );
});
