/**
 * Built-in model shapes. The three real presets carry the published shapes of the checkpoints
 * (sources below); they are for shape-level work (parameter counts, memory plans, kernels at
 * real sizes) and are far too large for `randomWeights` (see weights.ts). `tiny` and `small` are
 * for tests.
 */
import type { ModelConfig } from './config.ts';

/**
 * LLaDA-8B (GSAI-ML/LLaDA-8B-Instruct, config.json): d_model 4096, n_layers 32, n_heads 32,
 * n_kv_heads 32, mlp_hidden_size 12288, vocab_size 126464, rope_theta 500000, rms_norm_eps 1e-5,
 * mask_token_id 126336, include_qkv_bias false, weight_tying false. Head dim 4096 / 32 = 128.
 */
const llada8b: ModelConfig = {
  name: 'llada-8b',
  layers: 32,
  dModel: 4096,
  heads: 32,
  kvHeads: 32,
  headDim: 128,
  dFF: 12288,
  vocab: 126464,
  ropeTheta: 500000,
  qkvBias: false,
  normEps: 1e-5,
  maskTokenId: 126336,
  arShift: false,
  attention: 'full',
  tieEmbeddings: false,
};

/**
 * Dream-v0 7B (Dream-org/Dream-v0-Instruct-7B), initialised from Qwen2.5-7B and keeping its
 * shapes: hidden_size 3584, num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4,
 * intermediate_size 18944, vocab_size 152064, rope_theta 1e6, rms_norm_eps 1e-6, Q/K/V bias
 * (Qwen2), untied embeddings; mask_token_id 151666. Dream's logits at row i predict token i + 1.
 */
const dream7b: ModelConfig = {
  name: 'dream-7b',
  layers: 28,
  dModel: 3584,
  heads: 28,
  kvHeads: 4,
  headDim: 128,
  dFF: 18944,
  vocab: 152064,
  ropeTheta: 1e6,
  qkvBias: true,
  normEps: 1e-6,
  maskTokenId: 151666,
  arShift: true,
  attention: 'full',
  tieEmbeddings: false,
};

/**
 * SDAR-8B-Chat (JetLM/SDAR-8B-Chat), built on Qwen3-8B and keeping its shapes: hidden_size 4096,
 * num_hidden_layers 36, num_attention_heads 32, num_key_value_heads 8, head_dim 128,
 * intermediate_size 12288, vocab_size 151936, rope_theta 1e6, rms_norm_eps 1e-6, no attention
 * bias, tie_word_embeddings false. Block-causal attention, no AR shift. mask_token_id 151669
 * (`<|MASK|>`): the SDAR repository's generate.py reads it from the tokenizer; the value 151669
 * is the one third-party SDAR/TraDo integrations hard-code, and the checkpoints' config.json
 * carries. Qwen3's per-head RMSNorm of q and k (q_norm / k_norm, weight [head_dim]) before RoPE.
 * Trained with block size 4 (`block_size`).
 */
const sdar8b: ModelConfig = {
  name: 'sdar-8b',
  layers: 36,
  dModel: 4096,
  heads: 32,
  kvHeads: 8,
  headDim: 128,
  dFF: 12288,
  vocab: 151936,
  ropeTheta: 1e6,
  qkvBias: false,
  normEps: 1e-6,
  maskTokenId: 151669,
  arShift: false,
  attention: 'block_causal',
  tieEmbeddings: false,
  qkNorm: true,
  alignedBlocks: true,
};

/**
 * SDAR-1.7B-Chat (JetLM/SDAR-1.7B-Chat config.json, as mirrored in hxhcreate/DARE): Qwen3-1.7B's
 * shapes, hidden_size 2048, num_hidden_layers 28, num_attention_heads 16, num_key_value_heads 8,
 * head_dim 128, intermediate_size 6144, vocab_size 151936, rope_theta 1e6, rms_norm_eps 1e-6, no
 * attention bias, tie_word_embeddings false, block_size 4, mask_token_id 151669; q/k norm as SDAR-8B.
 */
const sdar1p7b: ModelConfig = {
  ...sdar8b,
  name: 'sdar-1.7b',
  layers: 28,
  dModel: 2048,
  heads: 16,
  kvHeads: 8,
  dFF: 6144,
};

/**
 * Fast-dLLM v2 1.5B (Efficient-Large-Model/Fast_dLLM_v2_1.5B), fine-tuned from Qwen2.5-1.5B-Instruct
 * and keeping its shapes: hidden_size 1536, num_hidden_layers 28, num_attention_heads 12,
 * num_key_value_heads 2, head_dim 128, intermediate_size 8960, vocab_size 151936, rope_theta 1e6,
 * rms_norm_eps 1e-6, Q/K/V bias, tied embeddings (Qwen2.5-1.5B's; not confirmed from the release's
 * own config). Block-causal (bd_size 32) with an AR shift; mask token 151665 (the default of its
 * generate).
 */
const fastDllmV2_1p5b: ModelConfig = {
  name: 'fast-dllm-v2-1.5b',
  layers: 28,
  dModel: 1536,
  heads: 12,
  kvHeads: 2,
  headDim: 128,
  dFF: 8960,
  vocab: 151936,
  ropeTheta: 1e6,
  qkvBias: true,
  normEps: 1e-6,
  maskTokenId: 151665,
  arShift: true,
  attention: 'block_causal',
  tieEmbeddings: true,
  alignedBlocks: true,
};

/** Test model: grouped-query attention (2 query heads per KV head) and Q/K/V bias. */
const tiny: ModelConfig = {
  name: 'tiny',
  layers: 2,
  dModel: 32,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  dFF: 64,
  vocab: 48,
  ropeTheta: 10000,
  qkvBias: true,
  normEps: 1e-5,
  maskTokenId: 47,
  arShift: false,
  attention: 'full',
  tieEmbeddings: false,
};

/** Test model: plain multi-head attention, no bias. */
const small: ModelConfig = {
  name: 'small',
  layers: 4,
  dModel: 64,
  heads: 4,
  kvHeads: 4,
  headDim: 16,
  dFF: 128,
  vocab: 64,
  ropeTheta: 10000,
  qkvBias: false,
  normEps: 1e-5,
  maskTokenId: 63,
  arShift: false,
  attention: 'full',
  tieEmbeddings: false,
};

export const presets: Readonly<Record<string, Readonly<ModelConfig>>> = Object.freeze({
  'llada-8b': Object.freeze(llada8b),
  'dream-7b': Object.freeze(dream7b),
  'sdar-8b': Object.freeze(sdar8b),
  'sdar-1.7b': Object.freeze(sdar1p7b),
  'fast-dllm-v2-1.5b': Object.freeze(fastDllmV2_1p5b),
  tiny: Object.freeze(tiny),
  small: Object.freeze(small),
});

export const presetNames: readonly string[] = Object.freeze(Object.keys(presets));
