/**
 * Writes Hugging Face checkpoint directories in a family's own layout: config.json with the
 * family's keys (the inverse of `describeConfig`), the tensors under the family's names, in
 * safetensors files sharded as transformers' `save_pretrained` shards them. The weights are
 * streamed a chunk at a time, random (seeded, per tensor) or given, so that memory stays bounded
 * by the chunk whatever the model's size. See docs/checkpoints.md, "Writing checkpoints".
 */
import { closeSync, mkdirSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { jsonKeys, type ModelConfig } from '../config.ts';
import {
  createRng,
  expectShape,
  floatsOf,
  parameterCount,
  tensorCount,
  type WeightSpec,
  type Weights,
  weightSpec,
} from '../weights.ts';
import { type CheckpointModel, describeConfig, type Family, familyLabel, tensorName } from './families.ts';
import { dtypeBytes, indexFileName, type StoredDtype, singleFileName } from './safetensors.ts';

/** A checkpoint that cannot be written as asked; the message says why. */
export class CheckpointWriteError extends Error {
  override readonly name = 'CheckpointWriteError';
}

/** `writeCheckpoint` refuses checkpoints whose tensors take more bytes than this (64 GB). */
export const maxCheckpointBytes = 64e9;

/** … or that have more tensors than this (a model of ~7,000 layers; each shard's header stays small). */
export const maxCheckpointTensors = 100_000;

/** transformers' `save_pretrained` default `max_shard_size` ("5GB"). */
export const defaultShardBytes = 5e9;

/** Where the weights come from: random (deterministic from `seed`), or given tensors by canonical name. */
export type WeightSource = { readonly seed: number } | { readonly weights: Weights };

export interface WriteCheckpointOptions {
  readonly dtype: StoredDtype;
  /** The largest shard, in bytes of tensor data (default 5e9, as save_pretrained). */
  readonly shardBytes?: number;
  /** bos/eos/pad ids for config.json (they do not change the shape). */
  readonly tokenIds?: TokenIds;
}

export interface TokenIds {
  readonly bos?: number;
  readonly eos?: number;
  readonly pad?: number;
}

// -------------------------------------------------------------------------------------------------
// config.json
// -------------------------------------------------------------------------------------------------

export const torchDtype: Readonly<Record<StoredDtype, string>> = {
  F32: 'float32',
  BF16: 'bfloat16',
  F16: 'float16',
};

/** The block size each block-diffusion family was trained with, for configs that do not say. */
export const defaultBlockSize: Readonly<Partial<Record<Family, number>>> = { sdar: 4, 'fast-dllm-v2': 32 };

const idKeys = (ids: TokenIds | undefined): Record<string, number> => ({
  ...(ids?.bos === undefined ? {} : { bos_token_id: ids.bos }),
  ...(ids?.eos === undefined ? {} : { eos_token_id: ids.eos }),
  ...(ids?.pad === undefined ? {} : { pad_token_id: ids.pad }),
});

/** The keys Dream, SDAR and Fast-dLLM v2 share with their Qwen2 / Qwen3 bases. */
function qwenKeys(m: CheckpointModel): Record<string, unknown> {
  return {
    attention_dropout: 0.0,
    hidden_act: 'silu',
    hidden_size: m.dModel,
    initializer_range: 0.02,
    intermediate_size: m.dFF,
    max_position_embeddings: 32768,
    max_window_layers: m.layers,
    num_attention_heads: m.heads,
    num_hidden_layers: m.layers,
    num_key_value_heads: m.kvHeads,
    rms_norm_eps: m.normEps,
    rope_scaling: null,
    rope_theta: m.ropeTheta,
    sliding_window: null,
    tie_word_embeddings: m.tieEmbeddings,
    use_cache: false,
    use_sliding_window: false,
    vocab_size: m.vocab,
  };
}

/**
 * config.json of a model of `family` with the shape `m`: the keys the family's published configs
 * carry (docs/checkpoints.md, "Config keys"), sorted as transformers writes them. Written for any
 * `m`; whether the family can express `m` is `inexpressible`'s question.
 */
export function hfConfigJson(
  family: Family,
  m: CheckpointModel,
  dtype: StoredDtype,
  ids?: TokenIds,
): Record<string, unknown> {
  const common = { ...idKeys(ids), mask_token_id: m.maskTokenId, torch_dtype: torchDtype[dtype] };
  const derived = m.dModel % m.heads === 0 && m.dModel / m.heads === m.headDim;
  const block = m.blockSize ?? defaultBlockSize[family];
  const byFamily: Record<Family, () => Record<string, unknown>> = {
    llada: () => ({
      activation_type: 'silu',
      alibi: false,
      architectures: ['LLaDAModelLM'],
      attention_layer_norm: false,
      bias_for_layer_norm: false,
      block_group_size: 1,
      block_type: 'llama',
      d_model: m.dModel,
      embedding_size: m.vocab,
      include_bias: false,
      include_qkv_bias: m.qkvBias,
      input_emb_norm: false,
      layer_norm_type: 'rms',
      layer_norm_with_affine: true,
      max_sequence_length: 4096,
      mlp_hidden_size: m.dFF,
      model_type: 'llada',
      multi_query_attention: null,
      n_heads: m.heads,
      n_kv_heads: m.kvHeads,
      n_layers: m.layers,
      rms_norm_eps: m.normEps,
      rope: true,
      rope_theta: m.ropeTheta,
      scale_logits: false,
      use_cache: false,
      vocab_size: m.vocab,
      weight_tying: m.tieEmbeddings,
    }),
    dream: () => ({ ...qwenKeys(m), architectures: ['DreamModel'], model_type: 'Dream' }),
    sdar: () => ({
      ...qwenKeys(m),
      architectures: ['SDARForCausalLM'],
      attention_bias: false,
      block_size: block,
      head_dim: m.headDim,
      model_type: 'sdar',
    }),
    'fast-dllm-v2': () => ({
      ...qwenKeys(m),
      architectures: ['Fast_dLLM_QwenForCausalLM'],
      bd_size: block,
      // Qwen2's configs have no head_dim; the family's code reads one when it is set.
      ...(derived ? {} : { head_dim: m.headDim }),
      model_type: 'Fast_dLLM_Qwen',
    }),
  };
  const json: Record<string, unknown> = { ...byFamily[family](), ...common };
  return Object.fromEntries(
    Object.keys(json)
      .sort()
      .map((k) => [k, json[k]]),
  );
}

/**
 * A small shape of each family (the default of `make-model --format hf`): two layers of width 64,
 * a 512-token vocabulary (room for a byte-level BPE tokenizer) with the mask at 496, and the
 * family's traits: LLaDA's full multi-head attention, Dream's q/k/v bias and AR shift, SDAR's
 * q/k norm with head_dim 32 ≠ hidden / heads and block size 4, Fast-dLLM v2's tied embeddings and
 * bd_size 32.
 */
export function smallShape(family: Family): ModelConfig & { blockSize?: number } {
  const base = {
    name: `${family}-small`,
    layers: 2,
    dModel: 64,
    heads: 4,
    kvHeads: 2,
    headDim: 16,
    dFF: 128,
    vocab: 512,
    maskTokenId: 496,
    ropeTheta: 1e6,
    normEps: 1e-6,
    qkvBias: true,
    arShift: true,
    attention: 'full' as const,
    tieEmbeddings: false,
  };
  const shapes: Record<Family, ModelConfig & { blockSize?: number }> = {
    llada: { ...base, kvHeads: 4, ropeTheta: 500000, normEps: 1e-5, qkvBias: false, arShift: false },
    dream: base,
    sdar: {
      ...base,
      headDim: 32,
      qkvBias: false,
      arShift: false,
      attention: 'block_causal',
      qkNorm: true,
      alignedBlocks: true,
      blockSize: 4,
    },
    'fast-dllm-v2': {
      ...base,
      attention: 'block_causal',
      tieEmbeddings: true,
      alignedBlocks: true,
      blockSize: 32,
    },
  };
  return shapes[family];
}

const fieldNames = Object.keys(jsonKeys) as (keyof ModelConfig)[];

/** Optional flags read as false when absent. */
const flag = (m: Partial<CheckpointModel>, f: keyof CheckpointModel): unknown =>
  f === 'qkNorm' || f === 'alignedBlocks' || f === 'qkvBias' || f === 'arShift' || f === 'tieEmbeddings'
    ? (m[f] ?? false)
    : m[f];

/**
 * What a checkpoint of `family` cannot say about `m`, field by field (`[]` when it can say
 * everything): `describeConfig` of the config.json written for `m` must give `m` back. The
 * family's fixed traits (Dream's AR shift, SDAR's q/k norm, LLaDA's head_dim = d_model / n_heads,
 * …) show up here as differences, in kvplan's JSON names.
 */
export function inexpressible(family: Family, m: CheckpointModel): string[] {
  const label = familyLabel(family);
  let back: CheckpointModel;
  try {
    back = describeConfig(hfConfigJson(family, m, 'F32'), 'config.json', m.name).config;
  } catch (e) {
    return [(e as Error).message.replace(/^config\.json \([^)]*\): /, '')];
  }
  const out: string[] = [];
  for (const f of [...fieldNames, 'blockSize' as const]) {
    if (f === 'name') continue;
    const want = f === 'blockSize' ? (m.blockSize ?? defaultBlockSize[family]) : flag(m, f);
    const got = flag(back, f);
    if (want !== got) {
      const key = f === 'blockSize' ? 'block_size' : jsonKeys[f];
      out.push(
        `${key} is ${JSON.stringify(want) ?? 'absent'}, but a ${label} checkpoint has ${JSON.stringify(got) ?? 'none'}`,
      );
    }
  }
  return out;
}

/**
 * `m` as a checkpoint of `family` describes it (`describeConfig` of its config.json): the block
 * size filled in with the family's default, the family's derived flags set. Throws a
 * CheckpointWriteError listing every field the family cannot express.
 */
export function asFamilyModel(family: Family, m: ModelConfig & { blockSize?: number }): CheckpointModel {
  const full: CheckpointModel = {
    ...m,
    qkNorm: m.qkNorm ?? false,
    ...(defaultBlockSize[family] === undefined ? {} : { blockSize: m.blockSize ?? defaultBlockSize[family] }),
  };
  const problems = inexpressible(family, full);
  if (problems.length > 0)
    throw new CheckpointWriteError(
      `model "${m.name}" cannot be written as a ${familyLabel(family)} checkpoint: ${problems.join('; ')}`,
    );
  return describeConfig(hfConfigJson(family, full, 'F32'), 'config.json', m.name).config;
}

// -------------------------------------------------------------------------------------------------
// Size, and the layout of the files
// -------------------------------------------------------------------------------------------------

export interface CheckpointSize {
  parameters: number;
  /** Bytes of tensor data. */
  bytes: number;
  tensors: number;
}

const gb = (n: number): string => `${(n / 1e9).toFixed(2)} GB`;
const count = (n: number): string => n.toLocaleString('en-US');

/** Parameters, bytes and tensors of a checkpoint of this shape, from the declared shape alone. */
export function checkpointSize(m: CheckpointModel, dtype: StoredDtype): CheckpointSize {
  const parameters = parameterCount(m);
  return { parameters, bytes: parameters * dtypeBytes[dtype], tensors: tensorCount(m) };
}

/**
 * The size of a checkpoint, refused (CheckpointWriteError) above 64 GB, above 100,000 tensors, or
 * above `freeBytes` when given. Costs nothing for an absurd shape: nothing is listed.
 */
export function checkWritable(m: CheckpointModel, dtype: StoredDtype, freeBytes?: number): CheckpointSize {
  const size = checkpointSize(m, dtype);
  const what = `model "${m.name}" has ${count(size.parameters)} parameters in ${count(size.tensors)} tensors, ${gb(size.bytes)} in ${dtype}`;
  if (!Number.isFinite(size.bytes) || size.bytes > maxCheckpointBytes)
    throw new CheckpointWriteError(`${what}; kvplan writes checkpoints of at most ${gb(maxCheckpointBytes)}`);
  if (size.tensors > maxCheckpointTensors)
    throw new CheckpointWriteError(
      `${what}; kvplan writes checkpoints of at most ${count(maxCheckpointTensors)} tensors`,
    );
  if (freeBytes !== undefined && size.bytes > freeBytes)
    throw new CheckpointWriteError(`${what}, but only ${gb(freeBytes)} are free on the disk`);
  return size;
}

/** Bytes free for an unprivileged writer on the file system that holds `path` (or its nearest existing ancestor). */
export function freeDiskBytes(path: string): number | undefined {
  let p = resolve(path);
  for (;;) {
    try {
      const s = statfsSync(p);
      return s.bavail * s.bsize;
    } catch {
      const up = dirname(p);
      if (up === p) return undefined;
      p = up;
    }
  }
}

export interface PlannedTensor extends WeightSpec {
  /** The checkpoint's name (`name` is kvplan's canonical one). */
  stored: string;
  bytes: number;
}

export interface PlannedFile {
  file: string;
  /** In the file's data order (by name, as the safetensors writer sorts them). */
  tensors: PlannedTensor[];
  /** The header: its length prefix, JSON and padding. */
  header: Uint8Array;
  /** Header and data. */
  bytes: number;
}

const shardName = (i: number, n: number): string =>
  `model-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/** The header of a safetensors file of these tensors, packed in order, padded to 8 bytes with spaces. */
function headerBytes(tensors: readonly PlannedTensor[], dtype: StoredDtype): Uint8Array {
  const entries = [`"__metadata__":{"format":"pt"}`];
  let offset = 0;
  for (const t of tensors) {
    const entry = { dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes] };
    entries.push(`${JSON.stringify(t.stored)}:${JSON.stringify(entry)}`);
    offset += t.bytes;
  }
  const json = new TextEncoder().encode(`{${entries.join(',')}}`);
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * The files of a checkpoint: tensors in module order (`weightSpec`'s), a new shard started when
 * the next tensor would take the current one past `shardBytes` (a tensor larger than that gets a
 * shard of its own), as transformers' `shard_checkpoint` does; one shard is `model.safetensors`.
 */
export function planFiles(
  family: Family,
  m: CheckpointModel,
  dtype: StoredDtype,
  shardBytes: number,
): PlannedFile[] {
  const groups: PlannedTensor[][] = [[]];
  let size = 0;
  for (const spec of weightSpec(m)) {
    const bytes = spec.shape.reduce((a, b) => a * b, 1) * dtypeBytes[dtype];
    const current = groups[groups.length - 1] as PlannedTensor[];
    if (current.length > 0 && size + bytes > shardBytes) {
      groups.push([]);
      size = 0;
    }
    (groups[groups.length - 1] as PlannedTensor[]).push({
      ...spec,
      stored: tensorName(family, spec.name),
      bytes,
    });
    size += bytes;
  }
  return groups.map((group, i) => {
    const tensors = [...group].sort((a, b) => (a.stored < b.stored ? -1 : a.stored > b.stored ? 1 : 0));
    const header = headerBytes(tensors, dtype);
    return {
      file: groups.length === 1 ? singleFileName : shardName(i + 1, groups.length),
      tensors,
      header,
      bytes: header.length + group.reduce((a, t) => a + t.bytes, 0),
    };
  });
}

// -------------------------------------------------------------------------------------------------
// Values: random per tensor, float32 → bf16 / f16
// -------------------------------------------------------------------------------------------------

/** FNV-1a over the UTF-16 units of `text`, from `basis`. */
function fnv1a(text: string, basis: number): number {
  let h = basis >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The seed of one tensor: from the model's seed and the tensor's canonical name, not its position. */
export function tensorSeed(seed: number, name: string): number {
  const key = `${seed}:${name}`;
  return (fnv1a(key, 0x811c9dc5) & 0x1fffff) * 2 ** 32 + fnv1a(key, 0x050c5d1f);
}

/**
 * Fills `out` with the next `out.length` values of a tensor: `randomWeights`' distribution
 * (embeddings N(0, 1), linear N(0, 1 / fan_in), norms 1 + N(0, 0.1²), biases N(0, 0.1²)) drawn
 * from the tensor's own generator, so that any tensor can be written without the others.
 */
function randomFiller(spec: WeightSpec, seed: number): (out: Float32Array) => void {
  const rng = createRng(tensorSeed(seed, spec.name));
  const fanIn = spec.shape[spec.shape.length - 1] ?? 1;
  const [scale, shift] =
    spec.kind === 'embedding'
      ? [1, 0]
      : spec.kind === 'linear'
        ? [1 / Math.sqrt(fanIn), 0]
        : spec.kind === 'norm'
          ? [0.1, 1]
          : [0.1, 0];
  return (out) => {
    for (let i = 0; i < out.length; i++) out[i] = shift + scale * rng.normal();
  };
}

/** The values of a given tensor, a chunk at a time. */
function givenFiller(weights: Weights, spec: WeightSpec): (out: Float32Array) => void {
  const data = floatsOf(expectShape(weights, spec.name, spec.shape));
  let at = 0;
  return (out) => {
    out.set(data.subarray(at, at + out.length));
    at += out.length;
  };
}

/**
 * float32 to bfloat16, rounded to nearest, ties to even, as PyTorch's `.to(torch.bfloat16)` (the
 * same bits for every non-NaN float32; overflow rounds to ±infinity). A NaN becomes the quiet NaN
 * 0x7fc0.
 */
export function float32ToBf16(
  src: Float32Array,
  dst: Uint16Array = new Uint16Array(src.length),
): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u[i] as number;
    dst[i] = (x & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return dst;
}

/** One float32 bit pattern to binary16, rounded to nearest, ties to even (subnormals, overflow to ±inf; NaN → ±0x7e00). */
function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | (mant === 0 ? 0x7c00 : 0x7e00);
  const e = exp - 112; // the binary16 exponent field
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A binary16 subnormal (or zero): m × 2^-24 with m = (1.mant × 2^(exp-127)) / 2^-24.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const full = mant | 0x800000;
    let m = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // a carry runs into the exponent, up to inf
  return sign | h;
}

/** float32 to IEEE binary16, rounded to nearest, ties to even, as PyTorch's `.to(torch.float16)`. */
export function float32ToF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) dst[i] = f32BitsToF16(u[i] as number);
  return dst;
}

// -------------------------------------------------------------------------------------------------
// Writing
// -------------------------------------------------------------------------------------------------

/** Values per chunk: the writer holds one chunk as float32 and one in the stored dtype. */
const chunkValues = 1 << 20;

function writeAll(fd: number, bytes: Uint8Array): void {
  let at = 0;
  while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
}

function writeTensor(
  fd: number,
  t: PlannedTensor,
  dtype: StoredDtype,
  fill: (out: Float32Array) => void,
): void {
  const n = t.bytes / dtypeBytes[dtype];
  const floats = new Float32Array(Math.min(n, chunkValues));
  const halves = dtype === 'F32' ? undefined : new Uint16Array(floats.length);
  for (let at = 0; at < n; at += floats.length) {
    const k = Math.min(floats.length, n - at);
    const chunk = floats.subarray(0, k);
    fill(chunk);
    if (halves === undefined) writeAll(fd, new Uint8Array(chunk.buffer, 0, k * 4));
    else {
      const out = halves.subarray(0, k);
      if (dtype === 'BF16') float32ToBf16(chunk, out);
      else float32ToF16(chunk, out);
      writeAll(fd, new Uint8Array(out.buffer, 0, k * 2));
    }
  }
}

export interface WrittenCheckpoint {
  family: Family;
  config: CheckpointModel;
  /** Paths and sizes of config.json, the safetensors files and the index, in the order written. */
  files: { path: string; bytes: number }[];
  parameters: number;
  tensors: number;
  /** Bytes of all the files written. */
  bytes: number;
}

const jsonText = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/**
 * Writes config.json and the safetensors files (and the index, when sharded) of a `family`
 * checkpoint of shape `m` into `dir` (created if missing; files already there are never
 * overwritten). Tensors are written one chunk at a time with `writeSync`; memory stays a few MB
 * whatever the model's size. Refuses (CheckpointWriteError) a shape the family cannot express,
 * and sizes `checkWritable` refuses; on a failure while writing, removes what it wrote.
 */
export function writeCheckpoint(
  dir: string,
  family: Family,
  m: CheckpointModel,
  source: WeightSource,
  options: WriteCheckpointOptions,
): WrittenCheckpoint {
  const { dtype } = options;
  const shardBytes = options.shardBytes ?? defaultShardBytes;
  if (!(shardBytes > 0))
    throw new CheckpointWriteError(`the shard size must be positive (got ${shardBytes})`);
  if (endianness() !== 'LE')
    throw new CheckpointWriteError('kvplan writes safetensors on little-endian hosts only');
  const problems = inexpressible(family, m);
  if (problems.length > 0)
    throw new CheckpointWriteError(
      `model "${m.name}" cannot be written as a ${familyLabel(family)} checkpoint: ${problems.join('; ')}`,
    );
  const size = checkWritable(m, dtype);
  if ('seed' in source && !Number.isSafeInteger(source.seed))
    throw new CheckpointWriteError(`the seed must be a safe integer (got ${source.seed})`);

  const plan = planFiles(family, m, dtype, shardBytes);
  const written: WrittenCheckpoint['files'] = [];
  const create = (name: string, write: (fd: number) => void, bytes: number): void => {
    const path = join(dir, name);
    const fd = openSync(path, 'wx');
    written.push({ path, bytes });
    try {
      write(fd);
    } finally {
      closeSync(fd);
    }
  };
  const text = (name: string, content: string): void => {
    const bytes = new TextEncoder().encode(content);
    create(name, (fd) => writeAll(fd, bytes), bytes.length);
  };
  mkdirSync(dir, { recursive: true });
  try {
    text('config.json', jsonText(hfConfigJson(family, m, dtype, options.tokenIds)));
    for (const f of plan)
      create(
        f.file,
        (fd) => {
          writeAll(fd, f.header);
          for (const t of f.tensors) {
            const fill = 'seed' in source ? randomFiller(t, source.seed) : givenFiller(source.weights, t);
            writeTensor(fd, t, dtype, fill);
          }
        },
        f.bytes,
      );
    if (plan.length > 1) {
      const weightMap: Record<string, string> = {};
      for (const f of plan) for (const t of f.tensors) weightMap[t.stored] = f.file;
      const sorted = Object.fromEntries(
        Object.keys(weightMap)
          .sort()
          .map((k) => [k, weightMap[k]]),
      );
      text(indexFileName, jsonText({ metadata: { total_size: size.bytes }, weight_map: sorted }));
    }
  } catch (e) {
    for (const f of written) rmSync(f.path, { force: true });
    throw e;
  }
  return {
    family,
    config: m,
    files: written,
    parameters: size.parameters,
    tensors: size.tensors,
    bytes: written.reduce((a, f) => a + f.bytes, 0),
  };
}
