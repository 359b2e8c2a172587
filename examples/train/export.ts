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
import { exportOnnx } from '../../src/model/onnx/export.ts';
import { loadOnnx } from '../../src/model/onnx/load.ts';
import { floatsOf } from '../../src/model/weights.ts';
import { tokenizerFromJson } from '../../src/runtime/tokenizer.ts';
import { readTrained } from './trainedWeights.ts';

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

const { manifest, config, weights } = readTrained(inDir);
const tokenizer = tokenizerFromJson(manifest.tokenizer, config.maskTokenId); // validates it

const bytes = exportOnnx(config, weights, { maxPositions, tokenizer: tokenizer.toJSON() });
writeFileSync(outPath, bytes);
console.log(`wrote ${outPath}: ${(statSync(outPath).size / 2 ** 20).toFixed(2)} MiB`);

// The file loads back to the very same weights.
const back = loadOnnx(outPath);
for (const [name, t] of weights) {
  const u = back.weights.get(name);
  if (!u || floatsOf(u).some((x, i) => x !== t.data[i]))
    throw new Error(`weight ${name} differs after loadOnnx`);
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
