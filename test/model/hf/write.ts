/**
 * A safetensors writer for tests only, and tiny checkpoints in each family's published layout.
 * The layouts (tensor names here, config keys in published.ts) are written out from the families'
 * model code and checkpoints, independently of src/model/hf/families.ts, so that the tests check
 * one against the other.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointModel, Family } from '../../../src/model/hf/families.ts';
import { createRng } from '../../../src/model/weights.ts';
import { published } from './published.ts';

/** A tensor as bytes; `dtype` is any string so that tests can write dtypes kvplan refuses. */
export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

const sizes: Record<string, number> = { F32: 4, BF16: 2, F16: 2, I64: 8, F8_E4M3: 1 };

/** A file made of a u64 little-endian length (`length`, default the header's), the header, the data. */
export function rawSafetensors(header: string | Uint8Array, data: Uint8Array, length?: bigint): Uint8Array {
  const head = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

/** The header text of tensors packed back to back in the order given, padded to 8 bytes like the reference writer. */
export function headerText(tensors: readonly RawTensor[], metadata?: Record<string, string>): string {
  // Written as text, not built as an object, so that a tensor may be called "__proto__".
  const entries: string[] = metadata ? [`"__metadata__":${JSON.stringify(metadata)}`] : [];
  let offset = 0;
  for (const t of tensors) {
    const entry = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    entries.push(`${JSON.stringify(t.name)}:${JSON.stringify(entry)}`);
    offset += t.bytes.length;
  }
  const text = `{${entries.join(',')}}`;
  const length = new TextEncoder().encode(text).length;
  return text + ' '.repeat((8 - (length % 8)) % 8);
}

export function safetensorsBytes(
  tensors: readonly RawTensor[],
  metadata?: Record<string, string>,
): Uint8Array {
  const data = new Uint8Array(tensors.reduce((n, t) => n + t.bytes.length, 0));
  let offset = 0;
  for (const t of tensors) {
    data.set(t.bytes, offset);
    offset += t.bytes.length;
  }
  return rawSafetensors(headerText(tensors, metadata), data);
}

/** A tensor of seeded random bytes (any bit pattern: NaNs and infinities included). */
export function randomTensor(name: string, dtype: string, shape: number[], seed: number): RawTensor {
  const rng = createRng(seed);
  const bytes = new Uint8Array(shape.reduce((a, b) => a * b, 1) * (sizes[dtype] ?? 1));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rng.uniform() * 256);
  return { name, dtype, shape, bytes };
}

/** A tensor's name (under its layer's prefix, for a layer's tensors) and shape. */
type Entry = [name: string, shape: number[]];

/** The family's tensor names and shapes, from its published model code. */
export function familyTensors(family: Family, m: CheckpointModel): { name: string; shape: number[] }[] {
  const { dModel: d, heads, kvHeads, headDim: hd, dFF, vocab } = m;
  const qkv = (prefix: string, bias: boolean): Entry[] => {
    const out: Entry[] = [];
    for (const [proj, rows] of [
      ['q_proj', heads * hd],
      ['k_proj', kvHeads * hd],
      ['v_proj', kvHeads * hd],
    ] as const) {
      out.push([`${prefix}${proj}.weight`, [rows, d]]);
      if (bias) out.push([`${prefix}${proj}.bias`, [rows]]);
    }
    return out;
  };
  // LLaDAModelLM.model.transformer = {wte, blocks, ln_f, ff_out} with LLaDALlamaBlock's modules;
  // Qwen2 (Dream, Fast-dLLM v2) and Qwen3 (SDAR, with per-head q/k norms): model = {embed_tokens,
  // layers, norm} and lm_head.
  const llada = family === 'llada';
  const [embed, blocks, norm, head] = llada
    ? [
        'model.transformer.wte',
        'model.transformer.blocks',
        'model.transformer.ln_f',
        'model.transformer.ff_out',
      ]
    : ['model.embed_tokens', 'model.layers', 'model.norm', 'lm_head'];
  const qkNorms: Entry[] =
    family === 'sdar'
      ? [
          ['self_attn.q_norm.weight', [hd]],
          ['self_attn.k_norm.weight', [hd]],
        ]
      : [];
  const layer: Entry[] = llada
    ? [
        ['attn_norm.weight', [d]],
        ...qkv('', m.qkvBias),
        ['attn_out.weight', [d, d]],
        ['ff_norm.weight', [d]],
        ['ff_proj.weight', [dFF, d]],
        ['up_proj.weight', [dFF, d]],
        ['ff_out.weight', [d, dFF]],
      ]
    : [
        ['input_layernorm.weight', [d]],
        ...qkv('self_attn.', family !== 'sdar'),
        ['self_attn.o_proj.weight', [d, heads * hd]],
        ...qkNorms,
        ['post_attention_layernorm.weight', [d]],
        ['mlp.gate_proj.weight', [dFF, d]],
        ['mlp.up_proj.weight', [dFF, d]],
        ['mlp.down_proj.weight', [d, dFF]],
      ];
  const entries: Entry[] = [
    [`${embed}.weight`, [vocab, d]],
    ...Array.from({ length: m.layers }, (_, i) =>
      layer.map(([name, shape]): Entry => [`${blocks}.${i}.${name}`, shape]),
    ).flat(),
    [`${norm}.weight`, [d]],
    ...(m.tieEmbeddings ? [] : [[`${head}.weight`, [vocab, d]] as Entry]),
  ];
  return entries.map(([name, shape]) => ({ name, shape }));
}

/**
 * config.json of a tiny checkpoint: the family's published one (published.ts, docs/checkpoints.md)
 * with the keys of the shape, and the token ids, of `m`.
 */
export function hfConfig(family: Family, m: CheckpointModel): Record<string, unknown> {
  const ids = (bos: number, eos: number) => ({
    bos_token_id: bos,
    eos_token_id: eos,
    mask_token_id: m.maskTokenId,
  });
  const qwen = {
    hidden_size: m.dModel,
    intermediate_size: m.dFF,
    max_window_layers: m.layers,
    num_attention_heads: m.heads,
    num_hidden_layers: m.layers,
    num_key_value_heads: m.kvHeads,
    rms_norm_eps: m.normEps,
    rope_theta: m.ropeTheta,
    tie_word_embeddings: m.tieEmbeddings,
    vocab_size: m.vocab,
  };
  const shape: Record<Family, Record<string, unknown>> = {
    llada: {
      d_model: m.dModel,
      embedding_size: m.vocab,
      eos_token_id: m.vocab - 2,
      include_qkv_bias: m.qkvBias,
      mask_token_id: m.maskTokenId,
      mlp_hidden_size: m.dFF,
      n_heads: m.heads,
      n_kv_heads: m.kvHeads,
      n_layers: m.layers,
      pad_token_id: m.vocab - 2,
      rms_norm_eps: m.normEps,
      rope_theta: m.ropeTheta,
      vocab_size: m.vocab,
      weight_tying: m.tieEmbeddings,
    },
    dream: { ...qwen, ...ids(m.vocab - 3, m.vocab - 3), pad_token_id: m.vocab - 3 },
    sdar: { ...qwen, ...ids(m.vocab - 3, m.vocab - 3), head_dim: m.headDim, block_size: m.blockSize },
    'fast-dllm-v2': {
      ...qwen,
      // The published checkpoints rely on the code's default mask id (151665), outside a tiny vocabulary.
      ...ids(m.vocab - 3, m.vocab - 2),
      bd_size: m.blockSize,
      layer_types: Array.from({ length: m.layers }, () => 'full_attention'),
    },
  };
  return { ...published[family], ...shape[family] };
}

export interface WriteOptions {
  dtype: 'F32' | 'BF16' | 'F16';
  /** 1 writes model.safetensors; more writes model-0000i-of-0000n.safetensors and the index. */
  shards: number;
  seed: number;
  tokenizer?: boolean;
  /** Changes the tensor list before it is written (drop, reshape, add). */
  edit?: (tensors: RawTensor[]) => RawTensor[];
}

/** Writes a tiny checkpoint in the family's layout; returns what was written, by checkpoint name. */
export function writeCheckpoint(
  dir: string,
  family: Family,
  m: CheckpointModel,
  opts: WriteOptions,
): Map<string, RawTensor> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfig(family, m), null, 2));
  let tensors = familyTensors(family, m).map((t, i) =>
    randomTensor(t.name, opts.dtype, t.shape, opts.seed * 1000 + i),
  );
  if (opts.edit) tensors = opts.edit(tensors);
  if (opts.shards === 1)
    writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes(tensors, { format: 'pt' }));
  else {
    const n = opts.shards;
    const pad = (i: number) => String(i).padStart(5, '0');
    const weightMap: Record<string, string> = {};
    const per = Math.ceil(tensors.length / n);
    for (let s = 0; s < n; s++) {
      const file = `model-${pad(s + 1)}-of-${pad(n)}.safetensors`;
      const part = tensors.slice(s * per, (s + 1) * per);
      for (const t of part) weightMap[t.name] = file;
      writeFileSync(join(dir, file), safetensorsBytes(part, { format: 'pt' }));
    }
    const totalSize = tensors.reduce((a, t) => a + t.bytes.length, 0);
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2),
    );
  }
  if (opts.tokenizer) {
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE' } }));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 4096 }));
  }
  return new Map(tensors.map((t) => [t.name, t]));
}
