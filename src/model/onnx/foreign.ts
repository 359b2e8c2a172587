/**
 * Loading an ONNX file kvplan did not write (a plain `torch.onnx.export` of a LLaMA-family model):
 * trace the graph, derive and cross-check the config, add the sidecar's fields, and only then read
 * the weights, transposing back those the exporter stored as W^T. Every problem found on the way
 * is reported in one OnnxError, so that one re-export fixes them all.
 */
import { ConfigError, type ModelConfig, validateConfig } from '../config.ts';
import { transposeInto } from '../transpose.ts';
import { checkWeights, type Tensor, type Weights } from '../weights.ts';
import { Deriver, shapeOf } from './derive.ts';
import { OnnxError } from './error.ts';
import { type GraphProto, OnnxGraph } from './graph.ts';
import { mergeSidecar, readSidecar } from './sidecar.ts';
import type { TensorReader } from './tensors.ts';
import { Tracer } from './trace.ts';

const reexport =
  'kvplan reads a file without kvplan metadata as a plain torch.onnx.export of a LLaMA-family model ' +
  '(docs/model.md, "Foreign ONNX files"). Re-export it in float32 with bidirectional attention (no causal ' +
  'or padding mask) and no KV cache: torch.onnx.export(model, (input_ids,), path, ' +
  "input_names=['input_ids'], output_names=['logits'], dynamic_axes={'input_ids': {1: 'L'}, " +
  "'logits': {1: 'L'}}, opset_version=14, do_constant_folding=True), or write it with kvplan's exportOnnx.";

/** [rows, cols] row-major -> [cols, rows]. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  transposeInto(out, data, rows, cols);
  return out;
}

export function loadForeign(
  path: string,
  graph: GraphProto,
  reader: TensorReader,
): { config: ModelConfig; weights: Weights } {
  const g = new OnnxGraph(graph, reader);
  const tracer = new Tracer(g);
  tracer.unsupportedOps();
  const traced = tracer.trace();
  const deriver = new Deriver(g);
  const derived = traced && deriver.derive(traced);
  const problems = [...tracer.problems, ...deriver.problems];
  const ofExport = problems.length > 0;
  const fields = mergeSidecar(path, derived, readSidecar(path, problems), problems);
  let config: ModelConfig | undefined;
  if (derived && fields.mask_token_id !== undefined)
    try {
      config = validateConfig(fields, path);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(e.message.replace(`${path}: `, '')); // the header names the file
    }
  if (problems.length > 0 || !config || !derived) {
    // Layers sharing a node (the rotary embedding) find its problem once each.
    const list = [...new Set(problems)].map((p) => `\n  - ${p}`).join('');
    const n = new Set(problems).size;
    const count = `${n} problem${n === 1 ? '' : 's'}`;
    throw new OnnxError(
      `${path}: cannot use this ONNX file (${count}):${list}${ofExport ? `\n${reexport}` : ''}`,
    );
  }
  const weights = new Map<string, Tensor>();
  for (const [name, s] of derived.weights) {
    const data = reader.floats(s.tensor);
    const shape = shapeOf(s);
    weights.set(name, { shape, data: s.transposed ? transpose(data, shape[1] ?? 1, shape[0] ?? 1) : data });
  }
  try {
    checkWeights(config, weights);
  } catch (e) {
    throw new OnnxError(`${path}: ${(e as Error).message}`);
  }
  return { config, weights };
}
