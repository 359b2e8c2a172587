import type { ModelConfig } from '../model/config.ts';
import { loadOnnx } from '../model/onnx/load.ts';
import type { Weights } from '../model/weights.ts';
import { CharTokenizer, defaultAlphabet, type Tokenizer, tokenizerFromJson } from './tokenizer.ts';

export interface OpenedModel {
  readonly path: string;
  readonly config: ModelConfig;
  readonly weights: Weights;
  readonly tokenizer: Tokenizer;
}

/**
 * A model file with its tokenizer: the one stored in the file's metadata, else the default
 * character alphabet of its vocabulary. Throws OnnxError or TokenizerError naming what is wrong.
 */
export function openModel(path: string): OpenedModel {
  const model = loadOnnx(path);
  const { config } = model;
  const tokenizer =
    model.tokenizer === undefined
      ? new CharTokenizer(defaultAlphabet(config.vocab, config.maskTokenId), config.maskTokenId)
      : tokenizerFromJson(model.tokenizer, config.maskTokenId);
  return { path, config, weights: model.weights, tokenizer };
}
