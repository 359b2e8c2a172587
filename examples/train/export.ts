/**
 * Turns what examples/train/train.py wrote (weights.json + weights.bin: Hugging Face names,
 * float32 little-endian) into the bundled ONNX model with kvplan's own exporter, then checks the
 * file: loadOnnx reads back the same weights, and onnxruntime running the graph reproduces the
 * PyTorch logits of models/tiny-dllm/reference.json.
 *
 *     npx tsx examples/train/export.ts [--in examples/train/out] [--out models/tiny-dllm/model.onnx]
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { validateConfig } from '../../src/model/config.ts';
import { exportOnnx } from '../../src/model/onnx/export.ts';
import { loadOnnx } from '../../src/model/onnx/load.ts';
import { checkWeights, type Weights } from '../../src/model/weights.ts';
import { tokenizerFromJson } from '../../src/runtime/tokenizer.ts';

const { values } = parseArgs({
  options: {
    in: { type: 'string', default: 'examples/train/out' },
    out: { type: 'string', default: 'models/tiny-dllm/model.onnx' },
    'max-positions': { type: 'string', default: '128' },
  },
});
const inDir = values.in as string;
const outPath = values.out as string;
const maxPositions = Number(values['max-positions']);

interface Manifest {
  config: unknown;
  tokenizer: { kind: string; chars: string; eos?: string };
  tensors: { name: string; shape: number[]; offset: number }[];
}

const manifest = JSON.parse(readFileSync(join(inDir, 'weights.json'), 'utf8')) as Manifest;
const config = validateConfig(manifest.config, join(inDir, 'weights.json'));
const tokenizer = tokenizerFromJson(manifest.tokenizer, config.maskTokenId); // validates it
const bin = readFileSync(join(inDir, 'weights.bin'));
const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
const weights: Weights = new Map();
for (const t of manifest.tensors) {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.offset + 4 * n > bin.length) throw new Error(`${t.name} runs past the end of weights.bin`);
  const data = Float64Array.from({ length: n }, (_, i) => view.getFloat32(t.offset + 4 * i, true));
  weights.set(t.name, { shape: t.shape, data });
}
checkWeights(config, weights);

const bytes = exportOnnx(config, weights, { maxPositions, tokenizer: tokenizer.toJSON() });
writeFileSync(outPath, bytes);
console.log(`wrote ${outPath}: ${(statSync(outPath).size / 2 ** 20).toFixed(2)} MiB`);

// The file loads back to the very same weights.
const back = loadOnnx(outPath);
for (const [name, t] of weights) {
  const u = back.weights.get(name);
  if (!u || u.data.some((x, i) => x !== t.data[i])) throw new Error(`weight ${name} differs after loadOnnx`);
}
console.log(`loadOnnx: ${back.weights.size} tensors identical, tokenizer ${JSON.stringify(back.tokenizer)}`);

// onnxruntime on the graph reproduces the PyTorch logits of the reference canvases.
const refPath = join(dirname(outPath), 'reference.json');
const ref = JSON.parse(readFileSync(refPath, 'utf8')) as {
  cases: { task: string; tokens: number[]; rows: number[]; logits: number[][] }[];
};
const session = await ort.InferenceSession.create(outPath);
for (const c of ref.cases) {
  const ids = new ort.Tensor('int64', BigInt64Array.from(c.tokens.map(BigInt)), [1, c.tokens.length]);
  const out = (await session.run({ input_ids: ids })).logits?.data as Float32Array;
  let dev = 0;
  let scale = 0;
  c.rows.forEach((r, k) => {
    (c.logits[k] ?? []).forEach((x, v) => {
      dev = Math.max(dev, Math.abs((out[r * config.vocab + v] ?? Number.NaN) - x));
      scale = Math.max(scale, Math.abs(x));
    });
  });
  console.log(
    `onnxruntime vs PyTorch (${c.task}): max |diff| ${dev.toExponential(2)}, scale ${scale.toFixed(2)}`,
  );
  if (!(dev <= 1e-4 * Math.max(1, scale))) throw new Error(`onnxruntime disagrees with PyTorch on ${c.task}`);
}
