import { existsSync, statSync } from 'node:fs';
import type { ModelConfig } from '../model/config.ts';
import { loadCheckpointModel } from '../model/hf/load.ts';
import { loadTokenizer } from '../model/hf/tokenizer.ts';
import { loadOnnx } from '../model/onnx/load.ts';
import type { Weights } from '../model/weights.ts';
import {
  CharTokenizer,
  defaultAlphabet,
  IdTokenizer,
  type Tokenizer,
  tokenizerFromJson,
} from './tokenizer.ts';

export interface OpenedModel {
  readonly path: string;
  readonly config: ModelConfig;
  readonly weights: Weights;
  readonly tokenizer: Tokenizer;
}

/**
 * A model with its tokenizer. A Hugging Face checkpoint directory brings its tokenizer.json (or,
 * without one, takes prompts as token ids); an ONNX file the tokenizer stored in its metadata, else
 * the default character alphabet of its vocabulary. Either config is held to `configLimits` (an
 * ONNX file's by validateConfig). Throws OnnxError, CheckpointError or TokenizerError naming what
 * is wrong.
 */
export function openModel(path: string): OpenedModel {
  if (existsSync(path) && statSync(path).isDirectory()) {
    const { checkpoint, config, weights } = loadCheckpointModel(path);
    const tokenizer = checkpoint.tokenizer.json
      ? loadTokenizer(path, { maskTokenId: config.maskTokenId })
      : new IdTokenizer(`${path} has no tokenizer.json`);
    return { path, config, weights, tokenizer };
  }
  const model = loadOnnx(path);
  const { config } = model;
  const tokenizer =
    model.tokenizer === undefined
      ? new CharTokenizer(defaultAlphabet(config.vocab, config.maskTokenId), config.maskTokenId)
      : tokenizerFromJson(model.tokenizer, config.maskTokenId);
  return { path, config, weights: model.weights, tokenizer };
}
