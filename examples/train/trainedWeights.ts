/**
 * What examples/train/train.py writes (weights.json: config, tokenizer, tensor table; weights.bin:
 * float32 little-endian under Hugging Face names), read and checked for the exporters.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ModelConfig, validateConfig } from '../../src/model/config.ts';
import { checkWeights, type FloatTensor } from '../../src/model/weights.ts';

export interface TrainedManifest {
  config: unknown;
  tokenizer: { kind: string; chars: string; eos?: string };
  tensors: { name: string; shape: number[]; offset: number }[];
  block_size?: number;
}

export function readTrained(inDir: string): {
  manifest: TrainedManifest;
  config: ModelConfig;
  weights: Map<string, FloatTensor>;
} {
  const manifest = JSON.parse(readFileSync(join(inDir, 'weights.json'), 'utf8')) as TrainedManifest;
  const config = validateConfig(manifest.config, join(inDir, 'weights.json'));
  const bin = readFileSync(join(inDir, 'weights.bin'));
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const weights = new Map<string, FloatTensor>();
  for (const t of manifest.tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.offset + 4 * n > bin.length) throw new Error(`${t.name} runs past the end of weights.bin`);
    const data = Float64Array.from({ length: n }, (_, i) => view.getFloat32(t.offset + 4 * i, true));
    weights.set(t.name, { shape: t.shape, data });
  }
  checkWeights(config, weights);
  return { manifest, config, weights };
}
