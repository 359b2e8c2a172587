/**
 * Published config.json files of each family, as their checkpoints carry them. families.test.ts
 * describes them; write.ts writes them with a tiny shape's keys in place of the published shape.
 */
import type { Family } from '../../../src/model/hf/families.ts';

/** GSAI-ML/LLaDA-8B-Instruct config.json, as copied in hxhcreate/DARE (models/LLaDA-8B-Instruct). */
export const llada8b = {
  activation_type: 'silu',
  alibi: false,
  alibi_bias_max: 8.0,
  architectures: ['LLaDAModelLM'],
  attention_dropout: 0.0,
  attention_layer_norm: false,
  attention_layer_norm_with_affine: true,
  auto_map: {
    AutoConfig: 'configuration_llada.LLaDAConfig',
    AutoModel: 'modeling_llada.LLaDAModelLM',
    AutoModelForCausalLM: 'modeling_llada.LLaDAModelLM',
  },
  bias_for_layer_norm: false,
  block_group_size: 1,
  block_type: 'llama',
  d_model: 4096,
  embedding_dropout: 0.0,
  embedding_size: 126464,
  eos_token_id: 126081,
  flash_attention: true,
  flash_attn_varlen: true,
  include_bias: false,
  include_qkv_bias: false,
  init_cutoff_factor: null,
  init_device: 'meta',
  init_fn: 'mitchell',
  init_std: 0.02,
  input_emb_norm: false,
  layer_norm_type: 'rms',
  layer_norm_with_affine: true,
  mask_token_id: 126336,
  max_sequence_length: 4096,
  mlp_hidden_size: 12288,
  mlp_ratio: 4,
  model_type: 'llada',
  multi_query_attention: null,
  n_heads: 32,
  n_kv_heads: 32,
  n_layers: 32,
  pad_token_id: 126081,
  precision: 'amp_bf16',
  residual_dropout: 0.0,
  rms_norm_eps: 1e-5,
  rope: true,
  rope_full_precision: true,
  rope_theta: 500000.0,
  scale_logits: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.51.2',
  use_cache: false,
  vocab_size: 126464,
  weight_tying: false,
};

/** JetAstra/SDAR training/model/SDAR-8B-Chat/config.json. */
export const sdar8b = {
  architectures: ['SDARForCausalLM'],
  auto_map: {
    AutoConfig: 'configuration_sdar.SDARConfig',
    AutoModel: 'modeling_sdar.SDARModel',
    AutoModelForCausalLM: 'modeling_sdar.SDARForCausalLM',
  },
  attention_bias: false,
  attention_dropout: 0.0,
  attn_implementation: 'flex_attention',
  bos_token_id: 151643,
  debug: false,
  eos_token_id: 151643,
  block_size: 4,
  mask_token_id: 151669,
  ep_size: 1,
  fuse_cross_entropy: true,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 12288,
  max_position_embeddings: 32768,
  max_window_layers: 36,
  micro_forward: false,
  model_type: 'sdar',
  num_attention_heads: 32,
  num_hidden_layers: 36,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  skip_checkpoint: false,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.52.4',
  use_cache: false,
  use_deepep: false,
  use_sliding_window: false,
  vocab_size: 151936,
};

/** SDAR-1.7B-Chat (hxhcreate/DARE models/SDAR-1dot7B-Chat/config.json) differs from 8B in these keys. */
export const sdar1p7b = {
  ...sdar8b,
  hidden_size: 2048,
  intermediate_size: 6144,
  max_window_layers: 28,
  num_attention_heads: 16,
  num_hidden_layers: 28,
};

/** Qwen/Qwen2.5-7B-Instruct config.json: the base of Dream-v0 7B and Fast-dLLM v2 7B. */
export const qwen25_7b = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: 'silu',
  hidden_size: 3584,
  initializer_range: 0.02,
  intermediate_size: 18944,
  max_position_embeddings: 32768,
  max_window_layers: 28,
  model_type: 'qwen2',
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 131072,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 152064,
};

/** Dream-v0-Instruct-7B: the Qwen2.5 keys under DreamConfig (model_type "Dream", DreamModel, mask 151666). */
export const dream7b = {
  ...qwen25_7b,
  architectures: ['DreamModel'],
  model_type: 'Dream',
  mask_token_id: 151666,
  pad_token_id: 151643,
  use_cache: false,
};

/** Fast-dLLM v2 7B: the Qwen2.5 keys under Fast_dLLM_QwenConfig, with bd_size; no mask_token_id. */
export const fastDllm7b = {
  ...qwen25_7b,
  architectures: ['Fast_dLLM_QwenForCausalLM'],
  model_type: 'Fast_dLLM_Qwen',
  bd_size: 32,
};

/** One published config of each family. */
export const published: Readonly<Record<Family, Readonly<Record<string, unknown>>>> = {
  llada: llada8b,
  dream: dream7b,
  sdar: sdar8b,
  'fast-dllm-v2': fastDllm7b,
};
