/**
 * One-node and few-node ONNX graphs built in memory (onnx-proto, opset 17) and run by
 * onnxruntime-node (MLAS on CPU): the external baseline of the kernel benchmarks.
 */
import pkg from 'onnx-proto';
import * as ort from 'onnxruntime-node';

const { onnx } = pkg;

const FLOAT = 1; // onnx.TensorProto.DataType.FLOAT
const INT32 = 6; // onnx.TensorProto.DataType.INT32
const INT64 = 7; // onnx.TensorProto.DataType.INT64

export const ortVersion: string = ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown';

interface ValueInfo {
  name: string;
  elemType: number;
  dims: readonly number[];
}

function valueInfo(v: ValueInfo) {
  return {
    name: v.name,
    type: { tensorType: { elemType: v.elemType, shape: { dim: v.dims.map((d) => ({ dimValue: d })) } } },
  };
}

interface Initializer {
  name: string;
  dims: number[];
  data: Float32Array | BigInt64Array;
}

interface NodeSpec {
  op: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  attrs?: Array<{ name: string; ints?: number[]; i?: number }>;
}

function modelBytes(
  nodes: NodeSpec[],
  inputs: ValueInfo[],
  outputs: ValueInfo[],
  initializers: Initializer[],
): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'kvplan-bench',
    opsetImport: [
      { domain: '', version: 17 },
      { domain: 'com.microsoft', version: 1 },
    ],
    graph: {
      name: 'bench',
      node: nodes.map((n, i) => ({
        name: `n${i}`,
        opType: n.op,
        domain: n.domain ?? '',
        input: n.inputs,
        output: n.outputs,
        attribute: (n.attrs ?? []).map((a) =>
          a.ints !== undefined
            ? { name: a.name, type: onnx.AttributeProto.AttributeType.INTS, ints: a.ints }
            : { name: a.name, type: onnx.AttributeProto.AttributeType.INT, i: a.i ?? 0 },
        ),
      })),
      initializer: initializers.map((t) => ({
        name: t.name,
        dims: t.dims,
        dataType: t.data instanceof Float32Array ? FLOAT : INT64,
        rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      })),
      input: inputs.map(valueInfo),
      output: outputs.map(valueInfo),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

export type Session = ort.InferenceSession;
export type OrtTensor = ort.Tensor;

/** A session with `threads` intra-op threads, one inter-op thread, all graph optimisations. */
export async function createSession(bytes: Uint8Array, threads: number): Promise<Session> {
  return ort.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
}

/** C[m,n] = A[m,k] × B[k,n] with B a constant initializer (so MLAS pre-packs it). */
export function matmulModel(m: number, n: number, k: number, b: Float32Array): Uint8Array {
  return modelBytes(
    [{ op: 'MatMul', inputs: ['A', 'B'], outputs: ['C'] }],
    [{ name: 'A', elemType: FLOAT, dims: [m, k] }],
    [{ name: 'C', elemType: FLOAT, dims: [m, n] }],
    [{ name: 'B', dims: [k, n], data: b }],
  );
}

/**
 * Grouped-query attention in a graph without a GQA op: each of `names` (K and V, kvh heads) is
 * reshaped to `split` (a unit axis after its head axis), expanded to `grouped` (h / kvh copies of
 * every head) and reshaped to `flat` (h heads). Returns the new names; unchanged when kvh = h.
 */
function repeatKv(
  nodes: NodeSpec[],
  initializers: Initializer[],
  names: [string, string],
  h: number,
  kvh: number,
  shapes: { split: number[]; grouped: number[]; flat: number[] },
): [string, string] {
  if (kvh === h) return names;
  for (const [key, dims] of Object.entries(shapes))
    initializers.push({ name: key, dims: [dims.length], data: BigInt64Array.from(dims.map(BigInt)) });
  return names.map((x) => {
    nodes.push(
      { op: 'Reshape', inputs: [x, 'split'], outputs: [`${x}s`] },
      { op: 'Expand', inputs: [`${x}s`, 'grouped'], outputs: [`${x}e`] },
      { op: 'Reshape', inputs: [`${x}e`, 'flat'], outputs: [`${x}r`] },
    );
    return `${x}r`;
  }) as [string, string];
}

/**
 * Eager attention per head batch: O[H,N,d] = Softmax(scale · Q[H,N,d] × K[H,Nk,d]^T) × V[H,Nk,d].
 * With `gather` > 0, K and V are canvas-sized ([H, Nk, d]) and the keys used are the `gather`
 * positions of the int32 input `idx` (Gather on axis 1), i.e. attention over an index list. With
 * `kvh` < h (grouped-query attention), K and V have kvh heads, each repeated for h / kvh query
 * heads inside the graph (Expand), as an exported model does.
 */
export function attentionModel(h: number, n: number, nk: number, d: number, gather = 0, kvh = h): Uint8Array {
  const kUsed = gather > 0 ? gather : nk;
  const nodes: NodeSpec[] = [];
  let kName = 'K';
  let vName = 'V';
  if (gather > 0) {
    nodes.push({ op: 'Gather', inputs: ['K', 'idx'], outputs: ['Kg'], attrs: [{ name: 'axis', i: 1 }] });
    nodes.push({ op: 'Gather', inputs: ['V', 'idx'], outputs: ['Vg'], attrs: [{ name: 'axis', i: 1 }] });
    kName = 'Kg';
    vName = 'Vg';
  }
  const initializers: Initializer[] = [
    { name: 'scale', dims: [], data: new Float32Array([1 / Math.sqrt(d)]) },
  ];
  // [kvh, Nk, d] -> [kvh, 1, Nk, d] -> [kvh, h/kvh, Nk, d] -> [h, Nk, d]
  [kName, vName] = repeatKv(nodes, initializers, [kName, vName], h, kvh, {
    split: [kvh, 1, kUsed, d],
    grouped: [kvh, h / kvh, kUsed, d],
    flat: [h, kUsed, d],
  });
  nodes.push(
    { op: 'Transpose', inputs: [kName], outputs: ['Kt'], attrs: [{ name: 'perm', ints: [0, 2, 1] }] },
    { op: 'MatMul', inputs: ['Q', 'Kt'], outputs: ['S'] },
    { op: 'Mul', inputs: ['S', 'scale'], outputs: ['Ss'] },
    { op: 'Softmax', inputs: ['Ss'], outputs: ['P'], attrs: [{ name: 'axis', i: -1 }] },
    { op: 'MatMul', inputs: ['P', vName], outputs: ['O'] },
  );
  const inputs: ValueInfo[] = [
    { name: 'Q', elemType: FLOAT, dims: [h, n, d] },
    { name: 'K', elemType: FLOAT, dims: [kvh, nk, d] },
    { name: 'V', elemType: FLOAT, dims: [kvh, nk, d] },
  ];
  if (gather > 0) inputs.push({ name: 'idx', elemType: INT32, dims: [kUsed] });
  return modelBytes(nodes, inputs, [{ name: 'O', elemType: FLOAT, dims: [h, n, d] }], initializers);
}

/**
 * onnxruntime's fused CPU attention (contrib op com.microsoft.MultiHeadAttention, MLAS flash-style
 * kernel): Q [1, N, H·d], K and V [1, Nk, KV·d] (our canvas layout), output [1, N, H·d]. With
 * `gather` > 0, K and V are gathered at the int32 input `idx` (axis 1) first; with kvh < h, their
 * heads are repeated first (the op has no grouped-query form).
 */
export function fusedAttentionModel(
  h: number,
  n: number,
  nk: number,
  d: number,
  gather = 0,
  kvh = h,
): Uint8Array {
  const nodes: NodeSpec[] = [];
  let kName = 'K';
  let vName = 'V';
  if (gather > 0) {
    nodes.push({ op: 'Gather', inputs: ['K', 'idx'], outputs: ['Kg'], attrs: [{ name: 'axis', i: 1 }] });
    nodes.push({ op: 'Gather', inputs: ['V', 'idx'], outputs: ['Vg'], attrs: [{ name: 'axis', i: 1 }] });
    kName = 'Kg';
    vName = 'Vg';
  }
  const kUsed = gather > 0 ? gather : nk;
  const initializers: Initializer[] = [];
  // MultiHeadAttention wants as many key/value heads as query heads:
  // [1, Nk, kvh·d] -> [1, Nk, kvh, 1, d] -> [1, Nk, kvh, h/kvh, d] -> [1, Nk, h·d]
  [kName, vName] = repeatKv(nodes, initializers, [kName, vName], h, kvh, {
    split: [1, kUsed, kvh, 1, d],
    grouped: [1, kUsed, kvh, h / kvh, d],
    flat: [1, kUsed, h * d],
  });
  nodes.push({
    op: 'MultiHeadAttention',
    domain: 'com.microsoft',
    inputs: ['Q', kName, vName],
    outputs: ['O'],
    attrs: [{ name: 'num_heads', i: h }],
  });
  const inputs: ValueInfo[] = [
    { name: 'Q', elemType: FLOAT, dims: [1, n, h * d] },
    { name: 'K', elemType: FLOAT, dims: [1, nk, kvh * d] },
    { name: 'V', elemType: FLOAT, dims: [1, nk, kvh * d] },
  ];
  if (gather > 0) inputs.push({ name: 'idx', elemType: INT32, dims: [gather] });
  return modelBytes(nodes, inputs, [{ name: 'O', elemType: FLOAT, dims: [1, n, h * d] }], initializers);
}

export function floatTensor(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function int32Tensor(data: Int32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int32', data, dims);
}

/** Runs the session and returns the float data of its one output `name`. */
export async function runFloat(
  session: Session,
  feeds: Record<string, ort.Tensor>,
  name: string,
): Promise<Float32Array> {
  const out = await session.run(feeds);
  const t = out[name];
  if (!t) throw new Error(`onnxruntime returned no output ${name}`);
  return t.data as Float32Array;
}
