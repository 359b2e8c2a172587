/**
 * A GGUF v3 writer (llama.cpp's model file), written from the format's specification, and a kvplan
 * model laid out as llama.cpp's `llada` architecture: the same weights in float32, for llama.cpp
 * to run as a same-weights peer of kvplan's forward (bench/llamacpp.ts).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { ModelConfig } from '../src/model/config.ts';
import { expectShape, floatsOf, layerPrefix, type Weights } from '../src/model/weights.ts';

/** A metadata value and the GGUF type it is stored as: llama.cpp refuses a key of the wrong type. */
type GgufValue =
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: readonly string[] }
  | { type: 'i32s'; value: Int32Array };

interface GgufTensor {
  name: string;
  /** In ggml order, the contiguous dimension first: a row-major [rows, cols] matrix is [cols, rows]. */
  dims: readonly number[];
  /** The values, asked for as the tensor is written, so that one tensor at a time is held. */
  data: () => Float32Array;
}

// The specification's codes (gguf_type, ggml_type).
const valueCode = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;
const GGML_F32 = 0;
/** Tensor data starts, and every tensor is padded, to this many bytes (the default of `general.alignment`). */
const ALIGNMENT = 32;

const padded = (n: number): number => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

/** A little-endian byte buffer that grows as the header is written. */
class Bytes {
  private buf = new Uint8Array(4096);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private take(n: number): number {
    if (this.length + n > this.buf.length) {
      const grown = new Uint8Array(Math.max(2 * this.buf.length, this.length + n));
      grown.set(this.buf);
      this.buf = grown;
      this.view = new DataView(grown.buffer);
    }
    this.length += n;
    return this.length - n;
  }
  // The offset is taken before the view is read: taking may replace the buffer and its view.
  u8(x: number): void {
    const at = this.take(1);
    this.view.setUint8(at, x);
  }
  u32(x: number): void {
    const at = this.take(4);
    this.view.setUint32(at, x, true);
  }
  i32(x: number): void {
    const at = this.take(4);
    this.view.setInt32(at, x, true);
  }
  f32(x: number): void {
    const at = this.take(4);
    this.view.setFloat32(at, x, true);
  }
  u64(x: number): void {
    const at = this.take(8);
    this.view.setBigUint64(at, BigInt(x), true);
  }
  /** A GGUF string: its UTF-8 length as u64, then the bytes, no terminator. */
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    const at = this.take(b.length);
    this.buf.set(b, at);
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(out: Bytes, v: GgufValue): void {
  switch (v.type) {
    case 'u32':
      out.u32(valueCode.u32);
      out.u32(v.value);
      return;
    case 'f32':
      out.u32(valueCode.f32);
      out.f32(v.value);
      return;
    case 'bool':
      out.u32(valueCode.bool);
      out.u8(v.value ? 1 : 0);
      return;
    case 'string':
      out.u32(valueCode.string);
      out.string(v.value);
      return;
    case 'strings':
      out.u32(valueCode.array);
      out.u32(valueCode.string);
      out.u64(v.value.length);
      for (const s of v.value) out.string(s);
      return;
    case 'i32s':
      out.u32(valueCode.array);
      out.u32(valueCode.i32);
      out.u64(v.value.length);
      for (const x of v.value) out.i32(x);
      return;
  }
}

const elements = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/**
 * Writes a GGUF v3 file: header (magic, version, tensor and key counts), the metadata, each tensor's
 * name, dimensions, type (F32) and offset, then the data, every tensor starting on the alignment.
 * Little-endian throughout: the tensors are written as the host's float32 bytes, which are
 * little-endian on every platform llama.cpp's prebuilt binaries exist for.
 */
function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensor[],
): void {
  const head = new Bytes();
  for (const c of 'GGUF') head.u8(c.charCodeAt(0));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(metadata.size);
  for (const [key, value] of metadata) {
    head.string(key);
    writeValue(head, value);
  }
  let offset = 0;
  for (const t of tensors) {
    head.string(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(GGML_F32);
    head.u64(offset);
    offset += padded(4 * elements(t.dims));
  }
  while (head.length % ALIGNMENT !== 0) head.u8(0);

  const fd = openSync(path, 'w');
  try {
    writeSync(fd, head.bytes());
    const zeros = new Uint8Array(ALIGNMENT);
    for (const t of tensors) {
      const data = t.data();
      if (data.length !== elements(t.dims))
        throw new RangeError(`tensor ${t.name}: ${data.length} values for dimensions [${t.dims.join(', ')}]`);
      writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      writeSync(fd, zeros, 0, padded(data.byteLength) - data.byteLength);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Rows of a q or k projection reordered within each head, row i to 2i and row i + headDim/2 to
 * 2i + 1: llama.cpp runs llada with its "normal" RoPE, which rotates adjacent pairs (2i, 2i + 1)
 * by the angle of pair i, where Hugging Face's rotate_half rotates (i, i + headDim/2). q and k
 * are reordered alike, so their dot product is unchanged. llama.cpp's converter does the same to
 * LLaDA's q_proj and k_proj.
 */
function interleaveHalves(w: Float32Array, heads: number, headDim: number): Float32Array {
  const cols = w.length / (heads * headDim);
  const half = headDim / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const from = (h * headDim + j * half + i) * cols;
        out.set(w.subarray(from, from + cols), (h * headDim + 2 * i + j) * cols);
      }
  return out;
}

/** The tokenizer type llama.cpp gives a control token (the mask) and an ordinary one. */
const tokenType = { normal: 1, control: 3 } as const;

/**
 * Metadata and tensors of `config`'s model as llama.cpp's `llada` architecture, float32. llada
 * has no Q/K/V bias, no q/k norm and full (non-causal) attention; a model with any of those other
 * features is refused rather than written as a different model.
 *
 * The tokenizer is a stand-in, enough for llama.cpp to load the file (the peer is fed token ids):
 * `vocab` pieces "[id]", the mask a control token, nothing added around a sequence. It is of the
 * GPT-2 (BPE) type with no merges, because node-llama-cpp tokenizes a probe text when it loads a
 * model, and a SentencePiece-type vocabulary without the 256 byte tokens then throws out of
 * llama.cpp and aborts the process. llama.cpp's default special ids for the type (BOS = EOS = 11)
 * name an ordinary token, which a forward never consults.
 */
function lladaGguf(
  config: ModelConfig,
  weights: Weights,
  contextLength: number,
): { metadata: Map<string, GgufValue>; tensors: GgufTensor[] } {
  const unsupported = [
    config.qkvBias ? 'Q/K/V bias' : '',
    config.qkNorm ? 'q/k norm' : '',
    config.attention === 'full' ? '' : `${config.attention} attention`,
  ].filter((x) => x !== '');
  if (unsupported.length > 0)
    throw new Error(
      `model ${config.name}: llama.cpp's llada architecture has no ${unsupported.join(', ')}; cannot write it as GGUF`,
    );
  const { dModel: d, heads, kvHeads, headDim, dFF, vocab } = config;
  const u32 = (value: number): GgufValue => ({ type: 'u32', value });
  const f32 = (value: number): GgufValue => ({ type: 'f32', value });
  const bool = (value: boolean): GgufValue => ({ type: 'bool', value });
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llada' }],
    ['general.name', { type: 'string', value: config.name }],
    ['general.file_type', u32(0)], // all float32
    ['llada.context_length', u32(contextLength)],
    ['llada.embedding_length', u32(d)],
    ['llada.block_count', u32(config.layers)],
    ['llada.feed_forward_length', u32(dFF)],
    ['llada.attention.head_count', u32(heads)],
    ['llada.attention.head_count_kv', u32(kvHeads)],
    // Given, not derived: llama.cpp would take d_model / heads, which need not be the head width.
    ['llada.attention.key_length', u32(headDim)],
    ['llada.attention.value_length', u32(headDim)],
    ['llada.rope.dimension_count', u32(headDim)],
    ['llada.rope.freq_base', f32(config.ropeTheta)],
    ['llada.attention.layer_norm_rms_epsilon', f32(config.normEps)],
    ['llada.vocab_size', u32(vocab)],
    // llama.cpp's llada loader makes the model non-causal whatever this says; written, as its
    // converter writes it, for readers of the file.
    ['llada.attention.causal', bool(false)],
    // Whether row i's logits predict token i + 1; read by llama.cpp's diffusion sampler only.
    ['diffusion.shift_logits', bool(config.arShift)],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    // The pre-tokenizer named, or llama.cpp warns at length that it is missing.
    ['tokenizer.ggml.pre', { type: 'string', value: 'default' }],
    ['tokenizer.ggml.merges', { type: 'strings', value: [] }],
    [
      'tokenizer.ggml.tokens',
      {
        type: 'strings',
        value: Array.from({ length: vocab }, (_, i) =>
          i === config.maskTokenId ? '<|mdm_mask|>' : `[${i}]`,
        ),
      },
    ],
    [
      'tokenizer.ggml.token_type',
      {
        type: 'i32s',
        value: Int32Array.from({ length: vocab }, (_, i) =>
          i === config.maskTokenId ? tokenType.control : tokenType.normal,
        ),
      },
    ],
    ['tokenizer.ggml.mask_token_id', u32(config.maskTokenId)],
    ['tokenizer.ggml.add_bos_token', bool(false)],
    ['tokenizer.ggml.add_eos_token', bool(false)],
  ]);

  // Each tensor checked against the config's shape, read (and widened to float32) when written.
  const floats = (name: string, shape: number[]): Float32Array => {
    const x = floatsOf(expectShape(weights, name, shape));
    return x instanceof Float32Array ? x : Float32Array.from(x);
  };
  const tensors: GgufTensor[] = [];
  const add = (name: string, from: string, shape: number[], reorder?: (x: Float32Array) => Float32Array) =>
    tensors.push({
      name,
      dims: [...shape].reverse(),
      data: () => (reorder ? reorder(floats(from, shape)) : floats(from, shape)),
    });
  add('token_embd.weight', 'model.embed_tokens.weight', [vocab, d]);
  for (let l = 0; l < config.layers; l++) {
    const p = layerPrefix(l);
    const blk = `blk.${l}`;
    add(`${blk}.attn_norm.weight`, `${p}.input_layernorm.weight`, [d]);
    add(`${blk}.attn_q.weight`, `${p}.self_attn.q_proj.weight`, [heads * headDim, d], (x) =>
      interleaveHalves(x, heads, headDim),
    );
    add(`${blk}.attn_k.weight`, `${p}.self_attn.k_proj.weight`, [kvHeads * headDim, d], (x) =>
      interleaveHalves(x, kvHeads, headDim),
    );
    add(`${blk}.attn_v.weight`, `${p}.self_attn.v_proj.weight`, [kvHeads * headDim, d]);
    add(`${blk}.attn_output.weight`, `${p}.self_attn.o_proj.weight`, [d, heads * headDim]);
    add(`${blk}.ffn_norm.weight`, `${p}.post_attention_layernorm.weight`, [d]);
    add(`${blk}.ffn_gate.weight`, `${p}.mlp.gate_proj.weight`, [dFF, d]);
    add(`${blk}.ffn_up.weight`, `${p}.mlp.up_proj.weight`, [dFF, d]);
    add(`${blk}.ffn_down.weight`, `${p}.mlp.down_proj.weight`, [d, dFF]);
  }
  add('output_norm.weight', 'model.norm.weight', [d]);
  // Tied: llama.cpp's llada loader reuses token_embd when the file has no output.weight.
  if (!config.tieEmbeddings) add('output.weight', 'lm_head.weight', [vocab, d]);
  return { metadata, tensors };
}

/** Writes `config`'s model to `path` as a float32 llada GGUF (see `lladaGguf`). */
export function writeLladaGguf(
  path: string,
  config: ModelConfig,
  weights: Weights,
  o: { contextLength: number },
): void {
  const { metadata, tensors } = lladaGguf(config, weights, o.contextLength);
  writeGguf(path, metadata, tensors);
}
