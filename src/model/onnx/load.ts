import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import pkg from 'onnx-proto';
import { ConfigError, type ModelConfig, validateConfig } from '../config.ts';
import { checkWeights, type Tensor, type Weights } from '../weights.ts';

const { onnx } = pkg;

/** A model file that cannot be used: the message names the file and what is wrong with it. */
export class OnnxError extends Error {
  override readonly name = 'OnnxError';
}

interface TensorProto {
  name?: string;
  dims?: (number | { toNumber(): number })[];
  dataType?: number;
  rawData?: Uint8Array;
  floatData?: number[];
  dataLocation?: number;
  externalData?: { key?: string; value?: string }[];
}

const FLOAT = 1;
const EXTERNAL = 1;
const num = (d: number | { toNumber(): number }) => (typeof d === 'number' ? d : d.toNumber());

/** Reads an initializer's floats, from the file itself or from its external data file. */
function floats(t: TensorProto, where: string, dir: string): Float64Array {
  const name = t.name ?? '(unnamed)';
  if (t.dataType !== FLOAT) {
    throw new OnnxError(
      `${where}: initializer ${name} has data type ${t.dataType}; only float32 (1) weights are supported`,
    );
  }
  const count = (t.dims ?? []).map(num).reduce((a, b) => a * b, 1);
  let bytes = t.rawData;
  if (t.dataLocation === EXTERNAL) {
    const entry = (k: string) => t.externalData?.find((e) => e.key === k)?.value;
    const location = entry('location');
    if (!location || isAbsolute(location) || normalize(location).startsWith('..')) {
      throw new OnnxError(
        `${where}: initializer ${name} has an invalid external data location ${JSON.stringify(location)}`,
      );
    }
    const offset = Number(entry('offset') ?? 0);
    const length = Number(entry('length') ?? count * 4);
    let file: Buffer;
    try {
      file = readFileSync(join(dir, location));
    } catch (e) {
      throw new OnnxError(
        `${where}: cannot read external data ${location} of ${name}: ${(e as Error).message}`,
      );
    }
    if (offset + length > file.length)
      throw new OnnxError(`${where}: external data of ${name} ends past the end of ${location} (truncated?)`);
    bytes = file.subarray(offset, offset + length);
  }
  if (bytes && bytes.length > 0) {
    if (bytes.length !== count * 4)
      throw new OnnxError(
        `${where}: initializer ${name} holds ${bytes.length} bytes, its shape needs ${count * 4}`,
      );
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return Float64Array.from({ length: count }, (_, i) => view.getFloat32(4 * i, true));
  }
  const data = t.floatData ?? [];
  if (data.length !== count)
    throw new OnnxError(
      `${where}: initializer ${name} holds ${data.length} floats, its shape needs ${count}`,
    );
  return Float64Array.from(data);
}

/**
 * Loads a LLaMA-family model exported to ONNX: the weights from its initializers (Hugging Face
 * names), the architecture from the `kvplan.config` metadata. The graph itself is not executed
 * by kvplan (its step programs are); onnxruntime running it serves as the oracle.
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
  const graph = model.graph;
  if (!graph || (graph.initializer ?? []).length === 0)
    throw new OnnxError(`${path}: the model has no graph or no initializers (weights)`);
  const meta = (model.metadataProps ?? []).find((m) => m.key === 'kvplan.config')?.value;
  if (!meta) {
    throw new OnnxError(
      `${path}: no 'kvplan.config' metadata: the number of attention heads cannot be inferred from weight shapes alone (export with kvplan, or add the metadata)`,
    );
  }
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
  const weights: Weights = new Map();
  const dir = dirname(path);
  for (const t of graph.initializer as TensorProto[]) {
    const name = t.name ?? '';
    if (!name.startsWith('model.') && name !== 'lm_head.weight') continue; // graph constants
    const tensor: Tensor = { shape: (t.dims ?? []).map(num), data: floats(t, path, dir) };
    weights.set(name, tensor);
  }
  try {
    checkWeights(config, weights);
  } catch (e) {
    throw new OnnxError(`${path}: ${(e as Error).message}`);
  }
  const tokenizer = (model.metadataProps ?? []).find((m) => m.key === 'kvplan.tokenizer')?.value;
  if (tokenizer === undefined || tokenizer === null) return { config, weights };
  try {
    return { config, weights, tokenizer: JSON.parse(tokenizer) };
  } catch (e) {
    throw new OnnxError(`${path}: metadata kvplan.tokenizer is not JSON: ${(e as Error).message}`);
  }
}
