import pkg from 'onnx-proto';
import type { ModelConfig } from '../config.ts';
import { ConfigError, configToJson } from '../config.ts';
import { floatsOf, layerPrefix, type Weights } from '../weights.ts';

const { onnx } = pkg;
const FLOAT = 1;
const INT64 = 7;

type Attr = { name: string; i?: number; f?: number; ints?: number[] };

/** Accumulates nodes and initializers with fresh names. */
class Graph {
  readonly nodes: object[] = [];
  readonly initializers: object[] = [];
  private n = 0;

  fresh(hint: string): string {
    return `${hint}_${this.n++}`;
  }
  tensor(name: string, dims: number[], data: Float32Array | BigInt64Array): string {
    const type = data instanceof Float32Array ? FLOAT : INT64;
    this.initializers.push({
      name,
      dims,
      dataType: type,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }
  ints(values: number[]): string {
    return this.tensor(this.fresh('c'), [values.length], BigInt64Array.from(values.map(BigInt)));
  }
  scalar(value: number): string {
    return this.tensor(this.fresh('s'), [], Float32Array.of(value));
  }
  node(op: string, inputs: string[], attrs: Attr[] = [], outputs = 1): string[] {
    const out = Array.from({ length: outputs }, () => this.fresh(op.toLowerCase()));
    const attribute = attrs.map((a) => {
      if (a.ints) return { name: a.name, type: onnx.AttributeProto.AttributeType.INTS, ints: a.ints };
      if (a.f !== undefined) return { name: a.name, type: onnx.AttributeProto.AttributeType.FLOAT, f: a.f };
      return { name: a.name, type: onnx.AttributeProto.AttributeType.INT, i: a.i ?? 0 };
    });
    this.nodes.push({ name: this.fresh('n'), opType: op, input: inputs, output: out, attribute });
    return out;
  }
  one(op: string, inputs: string[], attrs: Attr[] = []): string {
    return this.node(op, inputs, attrs)[0] as string;
  }
}

/**
 * An executable ONNX graph of the model (opset 17): input `input_ids` int64 [1, L] (and, for
 * block-causal models, `block_ids` int64 [L]: -1 for the prompt, then block indices), output
 * `logits` float [1, L, vocab]. Weights are initializers with Hugging Face names; the config is
 * stored in metadata_props under `kvplan.config`. onnxruntime running this file is the external
 * oracle of the golden forward. With `fusedAttention`, each layer's attention is onnxruntime's
 * contrib op com.microsoft.MultiHeadAttention instead of MatMul-Softmax-MatMul: a graph only
 * onnxruntime runs, its fastest on CPU (the whole-model peer of `npm run bench -- peers`).
 */
export function exportOnnx(
  config: ModelConfig,
  weights: Weights,
  opts: { maxPositions?: number; tokenizer?: object; fusedAttention?: boolean } = {},
): Uint8Array {
  if (config.qkNorm)
    throw new ConfigError(
      `model "${config.name}" has a per-head q/k norm, which kvplan's ONNX graph does not compute; write it with --format hf`,
    );
  const g = new Graph();
  const c = config;
  for (const [name, t] of weights) g.tensor(name, [...t.shape], Float32Array.from(floatsOf(t)));
  const w = (name: string) => {
    if (!weights.has(name)) throw new Error(`export: the model has no weight ${name}`);
    return name;
  };
  const linear = (x: string, name: string, bias: boolean) => {
    const y = g.one('MatMul', [
      x,
      g.one('Transpose', [w(`${name}.weight`)], [{ name: 'perm', ints: [1, 0] }]),
    ]);
    return bias ? g.one('Add', [y, w(`${name}.bias`)]) : y;
  };
  const eps = g.scalar(c.normEps);
  const rms = (x: string, weight: string) => {
    const mean = g.one(
      'ReduceMean',
      [g.one('Mul', [x, x])],
      [
        { name: 'axes', ints: [-1] },
        { name: 'keepdims', i: 1 },
      ],
    );
    return g.one('Mul', [g.one('Div', [x, g.one('Sqrt', [g.one('Add', [mean, eps])])]), w(weight)]);
  };
  // RoPE tables for positions 0..maxPositions-1, rotate-half convention.
  const P = opts.maxPositions ?? 4096;
  const half = c.headDim / 2;
  const cos = new Float32Array(P * half);
  const sin = new Float32Array(P * half);
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * c.ropeTheta ** ((-2 * i) / c.headDim);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  const shape = g.one('Shape', ['input_ids']);
  const L = g.one('Gather', [shape, g.tensor('one', [], BigInt64Array.of(1n))], [{ name: 'axis', i: 0 }]);
  const positions = g.one('Range', [g.tensor('zero', [], BigInt64Array.of(0n)), L, 'one']);
  const cosL = g.one('Gather', [g.tensor('rope_cos', [P, half], cos), positions]);
  const sinL = g.one('Gather', [g.tensor('rope_sin', [P, half], sin), positions]);
  const rope = (x: string) => {
    const axes = g.ints([3]);
    const x1 = g.one('Slice', [x, g.ints([0]), g.ints([half]), axes]);
    const x2 = g.one('Slice', [x, g.ints([half]), g.ints([c.headDim]), axes]);
    const a = g.one('Sub', [g.one('Mul', [x1, cosL]), g.one('Mul', [x2, sinL])]);
    const b = g.one('Add', [g.one('Mul', [x2, cosL]), g.one('Mul', [x1, sinL])]);
    return g.one('Concat', [a, b], [{ name: 'axis', i: 3 }]);
  };
  let mask: string | undefined;
  if (c.attention === 'block_causal') {
    const bi = g.one('Unsqueeze', ['block_ids', g.ints([1])]);
    const bj = g.one('Unsqueeze', ['block_ids', g.ints([0])]);
    mask = g.one('Where', [g.one('LessOrEqual', [bj, bi]), g.scalar(0), g.scalar(-1e9)]);
  }
  const heads = (x: string, n: number) =>
    g.one(
      'Transpose',
      [g.one('Reshape', [x, g.ints([0, 0, n, c.headDim])])],
      [{ name: 'perm', ints: [0, 2, 1, 3] }],
    );
  const group = c.heads / c.kvHeads;
  const repeat = (x: string) =>
    group === 1
      ? x
      : g.one('Reshape', [
          g.one('Expand', [g.one('Unsqueeze', [x, g.ints([2])]), g.ints([1, c.kvHeads, group, 1, 1])]),
          g.ints([0, c.heads, -1, c.headDim]),
        ]);
  // [1, H, L, d] -> [1, L, H·d]
  const merge = (x: string) =>
    g.one('Reshape', [
      g.one('Transpose', [x], [{ name: 'perm', ints: [0, 2, 1, 3] }]),
      g.ints([0, 0, c.heads * c.headDim]),
    ]);
  const eager = (q: string, k: string, v: string) => {
    let s = g.one('Mul', [
      g.one('MatMul', [q, g.one('Transpose', [k], [{ name: 'perm', ints: [0, 1, 3, 2] }])]),
      g.scalar(1 / Math.sqrt(c.headDim)),
    ]);
    if (mask) s = g.one('Add', [s, mask]);
    return merge(g.one('MatMul', [g.one('Softmax', [s], [{ name: 'axis', i: -1 }]), v]));
  };
  // onnxruntime's contrib op (default scale 1/sqrt(d)); the block mask is its attention_bias [1, 1, L, L].
  const bias = mask && g.one('Unsqueeze', [mask, g.ints([0, 1])]);
  const fused = (q: string, k: string, v: string) => {
    const out = g.fresh('multiheadattention');
    g.nodes.push({
      name: g.fresh('n'),
      opType: 'MultiHeadAttention',
      domain: 'com.microsoft',
      input: [merge(q), merge(k), merge(v), ...(bias ? ['', '', bias] : [])],
      output: [out],
      attribute: [{ name: 'num_heads', type: onnx.AttributeProto.AttributeType.INT, i: c.heads }],
    });
    return out;
  };
  let h = g.one('Gather', [w('model.embed_tokens.weight'), 'input_ids']);
  for (let l = 0; l < c.layers; l++) {
    const p = layerPrefix(l);
    const x = rms(h, `${p}.input_layernorm.weight`);
    const q = rope(heads(linear(x, `${p}.self_attn.q_proj`, c.qkvBias), c.heads));
    const k = repeat(rope(heads(linear(x, `${p}.self_attn.k_proj`, c.qkvBias), c.kvHeads)));
    const v = repeat(heads(linear(x, `${p}.self_attn.v_proj`, c.qkvBias), c.kvHeads));
    const merged = opts.fusedAttention ? fused(q, k, v) : eager(q, k, v);
    h = g.one('Add', [h, linear(merged, `${p}.self_attn.o_proj`, false)]);
    const x2 = rms(h, `${p}.post_attention_layernorm.weight`);
    const gate = linear(x2, `${p}.mlp.gate_proj`, false);
    const act = g.one('Mul', [
      g.one('Mul', [gate, g.one('Sigmoid', [gate])]),
      linear(x2, `${p}.mlp.up_proj`, false),
    ]);
    h = g.one('Add', [h, linear(act, `${p}.mlp.down_proj`, false)]);
  }
  const head = c.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const logits = g.one('MatMul', [
    rms(h, 'model.norm.weight'),
    g.one('Transpose', [w(head)], [{ name: 'perm', ints: [1, 0] }]),
  ]);
  g.nodes.push({
    name: g.fresh('n'),
    opType: 'Identity',
    input: [logits],
    output: ['logits'],
    attribute: [],
  });
  const dim = (d: string | number) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d });
  const info = (name: string, elemType: number, dims: (string | number)[]) => ({
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map(dim) } } },
  });
  const inputs = [info('input_ids', INT64, [1, 'L'])];
  if (mask) inputs.push(info('block_ids', INT64, ['L']));
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'kvplan',
    opsetImport: [
      { domain: '', version: 17 },
      ...(opts.fusedAttention ? [{ domain: 'com.microsoft', version: 1 }] : []),
    ],
    metadataProps: [
      { key: 'kvplan.config', value: JSON.stringify(configToJson(c)) },
      ...(opts.tokenizer ? [{ key: 'kvplan.tokenizer', value: JSON.stringify(opts.tokenizer) }] : []),
    ],
    graph: {
      name: c.name,
      node: g.nodes,
      initializer: g.initializers,
      input: inputs,
      output: [info('logits', FLOAT, [1, 'L', c.vocab])],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
