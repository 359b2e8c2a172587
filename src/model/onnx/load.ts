import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import pkg from 'onnx-proto';
import { ConfigError, type ModelConfig, validateConfig } from '../config.ts';
import { checkWeights, type Tensor, type Weights } from '../weights.ts';
import { OnnxError } from './error.ts';
import { loadForeign } from './foreign.ts';
import type { GraphProto } from './graph.ts';
import { dimsOf, type TensorProto, TensorReader } from './tensors.ts';

export { OnnxError } from './error.ts';

const { onnx } = pkg;

/** A file kvplan wrote: the architecture from its `kvplan.config` metadata, weights by Hugging Face name. */
function loadKvplan(path: string, meta: string, graph: GraphProto, reader: TensorReader) {
  let config: ModelConfig;
  try {
    config = validateConfig(JSON.parse(meta), `${path} (metadata kvplan.config)`);
  } catch (e) {
    if (e instanceof SyntaxError)
      throw new OnnxError(`${path}: metadata kvplan.config is not JSON: ${e.message}`);
    if (e instanceof ConfigError) throw new OnnxError(e.message);
    throw e;
  }
  if (config.qkNorm)
    throw new OnnxError(
      `${path}: the config has a per-head q/k norm, which kvplan's ONNX graphs do not compute (use a Hugging Face checkpoint directory)`,
    );
  const weights = new Map<string, Tensor>();
  for (const t of (graph.initializer ?? []) as TensorProto[]) {
    const name = t.name ?? '';
    if (!name.startsWith('model.') && name !== 'lm_head.weight') continue; // graph constants
    weights.set(name, { shape: dimsOf(t), data: reader.floats(t) });
  }
  try {
    checkWeights(config, weights);
  } catch (e) {
    throw new OnnxError(`${path}: ${(e as Error).message}`);
  }
  return { config, weights };
}

/**
 * Loads a LLaMA-family model exported to ONNX. A file kvplan wrote carries its config in the
 * `kvplan.config` metadata and its weights under Hugging Face names; any other file is read as a
 * plain `torch.onnx.export` (foreign.ts), its config derived from the graph and its sidecar. The
 * graph itself is not executed by kvplan (its step programs are); onnxruntime running it serves
 * as the oracle. Weights are float32.
 */
export function loadOnnx(path: string): { config: ModelConfig; weights: Weights; tokenizer?: unknown } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new OnnxError(`${path}: cannot read: ${(e as Error).message}`);
  }
  let model: ReturnType<typeof onnx.ModelProto.decode>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new OnnxError(`${path}: not a valid ONNX model (${(e as Error).message}); is the file truncated?`);
  }
  const graph = model.graph as GraphProto | null | undefined;
  if (!graph || (graph.initializer ?? []).length === 0)
    throw new OnnxError(`${path}: the model has no graph or no initializers (weights)`);
  const meta = (model.metadataProps ?? []).find((m) => m.key === 'kvplan.config')?.value;
  const reader = new TensorReader(path, dirname(path));
  try {
    if (!meta) return loadForeign(path, graph, reader);
    const loaded = loadKvplan(path, meta, graph, reader);
    const tokenizer = (model.metadataProps ?? []).find((m) => m.key === 'kvplan.tokenizer')?.value;
    if (tokenizer === undefined || tokenizer === null) return loaded;
    try {
      return { ...loaded, tokenizer: JSON.parse(tokenizer) };
    } catch (e) {
      throw new OnnxError(`${path}: metadata kvplan.tokenizer is not JSON: ${(e as Error).message}`);
    }
  } finally {
    reader.close();
  }
}
