/**
 * Weights of a model as a map from Hugging Face style tensor names to row-major float64 tensors,
 * and a deterministic random initialisation for tests. See docs/model.md for the names and shapes.
 */
import { ConfigError, type ModelConfig } from './config.ts';
import { type HalfDtype, halfToFloat32 } from './half.ts';

/** A tensor of floats: float64 for the test models, float32 for a checkpoint's F32 weights. */
export interface FloatTensor {
  shape: number[];
  /** Row-major; length = product of `shape`. */
  data: Float64Array | Float32Array;
}

/**
 * A tensor kept in the 16-bit dtype a checkpoint stores it in: raw bit patterns, row-major. A
 * backend widens it (or reads it as it is: the CPU backend's GEMM), one tensor at a time.
 */
export interface HalfTensor {
  shape: number[];
  half: HalfDtype;
  bits: Uint16Array;
}

export type Tensor = FloatTensor | HalfTensor;

/**
 * A model's weights by name: a Map for the models kvplan makes or reads whole (ONNX), read on
 * demand for a checkpoint (src/model/hf/storedWeights.ts), so that callers get a tensor when they
 * need it and hold none they do not.
 */
export type Weights = ReadonlyMap<string, Tensor>;

export const isHalf = (t: Tensor): t is HalfTensor => 'bits' in t;

/** How a tensor is stored: as floats, or as the bits of a 16-bit dtype. */
export interface StoredForm {
  shape: number[];
  half: HalfDtype | undefined;
}

/**
 * Weights that tell how a tensor is stored without reading it, and read it straight into memory
 * the caller owns (a checkpoint's): a backend loading its weights so holds each one once.
 */
export interface StreamedWeights extends ReadonlyMap<string, Tensor> {
  form(name: string): StoredForm | undefined;
  /** Reads tensor `name` as stored into `into` (exactly its bytes), checking that it is finite. */
  readInto(name: string, into: Uint8Array): void;
}

const isStreamed = (w: Weights): w is StreamedWeights => 'readInto' in w;

/** How tensor `name` is stored, without reading it; undefined when there is no such tensor. */
export function storedForm(weights: Weights, name: string): StoredForm | undefined {
  if (isStreamed(weights)) return weights.form(name);
  const t = weights.get(name);
  return t && { shape: t.shape, half: isHalf(t) ? t.half : undefined };
}

/**
 * Loads tensor `name` into `into`: its 16-bit bits (a Uint16Array, for a tensor stored so) or its
 * values as float32. Streamed weights in the form asked for are read straight into it; anything
 * else is copied from the tensor, widened.
 */
export function loadWeight(weights: Weights, name: string, into: Float32Array | Uint16Array): void {
  const form = storedForm(weights, name);
  if (form === undefined) throw new WeightError(`the model has no weight ${name}`);
  const bits = into instanceof Uint16Array;
  if (bits && form.half === undefined) throw new WeightError(`weight ${name} is not stored in 16 bits`);
  if (isStreamed(weights) && bits === (form.half !== undefined)) {
    weights.readInto(name, new Uint8Array(into.buffer, into.byteOffset, into.byteLength));
    return;
  }
  const t = weights.get(name) as Tensor;
  if (bits) into.set((t as HalfTensor).bits);
  else into.set(floatsOf(t));
}

/** The values of a tensor: its floats, or its 16-bit bits widened to float32 (a copy of this tensor only). */
export function floatsOf(t: Tensor): Float64Array | Float32Array {
  return isHalf(t) ? halfToFloat32(t.bits, t.half) : t.data;
}

/**
 * The first element that is NaN or infinite, or -1; 16-bit bits are tested by their exponent
 * field (all ones), without widening the tensor.
 */
function firstNonFinite(t: Tensor): number {
  // Plain loops: a checkpoint's billions of values are scanned as they load (findIndex's callback
  // made that several times slower than reading them).
  if (!isHalf(t)) {
    const d = t.data;
    for (let i = 0; i < d.length; i++) {
      const x = d[i] as number;
      if (x - x !== 0) return i; // NaN - NaN and inf - inf are NaN
    }
    return -1;
  }
  const exponent = t.half === 'bf16' ? 0x7f80 : 0x7c00;
  const b = t.bits;
  for (let i = 0; i < b.length; i++) if (((b[i] as number) & exponent) === exponent) return i;
  return -1;
}

/** Throws a WeightError when tensor `name` of model `model` holds a NaN or an infinity. */
export function checkFinite(name: string, t: Tensor, model: string): void {
  const bad = firstNonFinite(t);
  if (bad >= 0)
    throw new WeightError(
      `weight "${name}" of model "${model}" holds a non-finite value (${floatsOf(t)[bad]}) at element ${bad}`,
    );
}

/** A tensor's values as float64: itself when already so, else a widened copy (one tensor, for the float64 reference). */
export function widened(t: Tensor): { shape: number[]; data: Float64Array } {
  const data = floatsOf(t);
  return { shape: t.shape, data: data instanceof Float64Array ? data : Float64Array.from(data) };
}

/** A tensor that is missing, has the wrong shape, or whose data does not match its shape. */
export class WeightError extends Error {
  override name = 'WeightError';
}

/** `randomWeights` refuses configurations with more parameters than this (1 GiB of float64). */
export const maxRandomParameters = 2 ** 27;

export const layerPrefix = (i: number): string => `model.layers.${i}`;

export interface WeightSpec {
  name: string;
  shape: number[];
  kind: 'embedding' | 'norm' | 'linear' | 'bias';
}

/** Every tensor a model of this shape has, in a fixed order (the order `randomWeights` fills). */
export function weightSpec(config: ModelConfig): WeightSpec[] {
  const { dModel: d, heads, kvHeads, headDim, dFF, vocab } = config;
  const q = heads * headDim;
  const kv = kvHeads * headDim;
  const out: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, d], kind: 'embedding' }];
  for (let i = 0; i < config.layers; i++) {
    const p = layerPrefix(i);
    out.push({ name: `${p}.input_layernorm.weight`, shape: [d], kind: 'norm' });
    for (const [proj, rows] of [
      ['q_proj', q],
      ['k_proj', kv],
      ['v_proj', kv],
    ] as const) {
      out.push({ name: `${p}.self_attn.${proj}.weight`, shape: [rows, d], kind: 'linear' });
      if (config.qkvBias) out.push({ name: `${p}.self_attn.${proj}.bias`, shape: [rows], kind: 'bias' });
    }
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [d, q], kind: 'linear' });
    if (config.qkNorm)
      for (const n of ['q_norm', 'k_norm'])
        out.push({ name: `${p}.self_attn.${n}.weight`, shape: [config.headDim], kind: 'norm' });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [d], kind: 'norm' });
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [dFF, d], kind: 'linear' });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [dFF, d], kind: 'linear' });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [d, dFF], kind: 'linear' });
  }
  out.push({ name: 'model.norm.weight', shape: [d], kind: 'norm' });
  if (!config.tieEmbeddings) out.push({ name: 'lm_head.weight', shape: [vocab, d], kind: 'linear' });
  return out;
}

const product = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * Number of parameters (scalars) of a model of this shape, biases and norms included: the sizes of
 * `weightSpec`, counted without listing them, so that an absurd declared shape costs nothing.
 */
export function parameterCount(config: ModelConfig): number {
  const { dModel: d, heads, kvHeads, headDim, dFF, vocab } = config;
  const q = heads * headDim;
  const kv = kvHeads * headDim;
  const layer =
    d +
    (q + 2 * kv) * d +
    (config.qkvBias ? q + 2 * kv : 0) +
    d * q +
    (config.qkNorm ? 2 * headDim : 0) +
    d +
    3 * dFF * d;
  return vocab * d + config.layers * layer + d + (config.tieEmbeddings ? 0 : vocab * d);
}

/** A seeded PRNG (mulberry32) with a Box-Muller normal sampler. Deterministic across platforms. */
export interface Rng {
  /** Uniform in [0, 1), 32 bits of randomness. */
  uniform(): number;
  /** Standard normal. */
  normal(): number;
}

const mix32 = (x: number): number => {
  // A 32-bit finaliser (murmur3 fmix32): spreads nearby seeds far apart.
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
};

export function createRng(seed: number): Rng {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer (got ${seed})`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  let state = mix32(lo ^ mix32(hi + 0x9e3779b9));
  let spare: number | undefined;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const normal = (): number => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u1 = 1 - uniform(); // (0, 1]: log is finite
    const u2 = uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  };
  return { uniform, normal };
}

const formatCount = (n: number): string => n.toLocaleString('en-US');

const humanCount = (n: number): string =>
  n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : formatCount(n);

export interface RandomWeightOptions {
  /**
   * Multiplies every `o_proj` weight (default 1). 0 makes a model in which no row's hidden state
   * depends on any other row: attention contributes nothing to the residual stream.
   */
  attentionOutputScale?: number;
}

/**
 * Deterministic random weights: embeddings ~ N(0, 1); linear weights ~ N(0, 1 / fan_in) (fan_in =
 * the input width, the last dimension); norm weights ~ 1 + N(0, 0.1^2); biases ~ N(0, 0.1^2).
 * The same (config, seed, options) gives bit-identical weights. Refuses models with more than
 * 2^27 parameters (a ConfigError naming the model and its size).
 */
export function randomWeights(
  config: ModelConfig,
  seed: number,
  opts: RandomWeightOptions = {},
): Map<string, FloatTensor> {
  const count = parameterCount(config);
  if (count > maxRandomParameters)
    throw new ConfigError(
      `model "${config.name}" has ${formatCount(count)} parameters (${humanCount(count)}); randomWeights ` +
        `allocates at most ${formatCount(maxRandomParameters)} (2^27, 1 GiB of float64) — use a small preset such as "tiny" or "small"`,
    );
  const scale = opts.attentionOutputScale ?? 1;
  if (!Number.isFinite(scale)) throw new RangeError(`attentionOutputScale must be finite (got ${scale})`);
  const rng = createRng(seed);
  const weights = new Map<string, FloatTensor>();
  for (const spec of weightSpec(config)) {
    const data = new Float64Array(product(spec.shape));
    const fanIn = spec.shape[spec.shape.length - 1] ?? 1;
    switch (spec.kind) {
      case 'embedding':
        for (let i = 0; i < data.length; i++) data[i] = rng.normal();
        break;
      case 'norm':
        for (let i = 0; i < data.length; i++) data[i] = 1 + 0.1 * rng.normal();
        break;
      case 'bias':
        for (let i = 0; i < data.length; i++) data[i] = 0.1 * rng.normal();
        break;
      case 'linear': {
        const std = 1 / Math.sqrt(fanIn);
        // The draw happens whatever the scale, so that other tensors do not depend on it.
        const s = spec.name.endsWith('.o_proj.weight') ? std * scale : std;
        for (let i = 0; i < data.length; i++) data[i] = s * rng.normal();
        break;
      }
    }
    weights.set(spec.name, { shape: [...spec.shape], data });
  }
  return weights;
}

const showShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** The tensor called `name`, checked to have exactly `shape`; a WeightError naming it otherwise. */
export function expectShape(weights: Weights, name: string, shape: readonly number[]): Tensor {
  const t = weights.get(name);
  if (t === undefined) throw new WeightError(`missing weight "${name}" (expected shape ${showShape(shape)})`);
  if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i]))
    throw new WeightError(`weight "${name}" has shape ${showShape(t.shape)}, expected ${showShape(shape)}`);
  const n = isHalf(t) ? t.bits.length : t.data.length;
  if (n !== product(shape))
    throw new WeightError(
      `weight "${name}" has ${n} values, but its shape ${showShape(shape)} needs ${product(shape)}`,
    );
  return t;
}

/** Tensors a model of this shape has (the length of `weightSpec`), counted without listing them. */
export function tensorCount(config: ModelConfig): number {
  const perLayer = 9 + (config.qkvBias ? 3 : 0) + (config.qkNorm ? 2 : 0);
  return 2 + (config.tieEmbeddings ? 0 : 1) + config.layers * perLayer;
}

/**
 * Checks that `weights` holds exactly the tensors of `config` with the right shapes and finite
 * values. A config claiming far more tensors than there are (1e8 layers) is refused before they
 * are listed.
 */
export function checkWeights(config: ModelConfig, weights: Weights): void {
  // Far more than are given: say so at once instead of listing them (a few missing are named below).
  const count = tensorCount(config);
  if (count > weights.size + 1024)
    throw new WeightError(
      `model "${config.name}" (${config.layers.toLocaleString('en-US')} layers) has ${count.toLocaleString('en-US')} tensors, but only ${weights.size} are given`,
    );
  const spec = weightSpec(config);
  for (const w of spec) checkFinite(w.name, expectShape(weights, w.name, w.shape), config.name);
  if (weights.size !== spec.length) {
    const known = new Set(spec.map((w) => w.name));
    const extra = [...weights.keys()].filter((k) => !known.has(k));
    throw new WeightError(
      `unexpected weight${extra.length === 1 ? '' : 's'} for model "${config.name}": ${extra.map((k) => `"${k}"`).join(', ')}`,
    );
  }
}
