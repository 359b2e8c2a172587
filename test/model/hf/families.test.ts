import { describe, expect, test } from 'vitest';
import { type ModelConfig, validateConfig } from '../../../src/model/config.ts';
import { CheckpointError } from '../../../src/model/hf/checkpointError.ts';
import {
  type CheckpointModel,
  describeConfig,
  detectFamily,
  type Family,
  tensorName,
} from '../../../src/model/hf/families.ts';
import { presets } from '../../../src/model/presets.ts';
import { weightSpec } from '../../../src/model/weights.ts';
import { expectThrown } from '../../support/errors.ts';
import { dream7b, fastDllm7b, llada8b, qwen25_7b, sdar1p7b, sdar8b } from './published.ts';
import { hfConfig } from './write.ts';

const where = '/ckpt/config.json';
const describeAs = (json: unknown, name = 'm') => describeConfig(json, where, name);

/** The description fails with a CheckpointError naming config.json and every part. */
function expectError(json: unknown, ...parts: string[]): void {
  expectThrown(() => describeAs(json), CheckpointError, where, ...parts);
}

const without = (obj: Record<string, unknown>, key: string): Record<string, unknown> => {
  const copy = { ...obj };
  delete copy[key];
  return copy;
};

const fields = (c: CheckpointModel): ModelConfig => {
  const { qkNorm: _q, blockSize: _b, ...rest } = c;
  return rest;
};

describe('published configs give the published shapes', () => {
  /** A published config, its family, the preset of its shape, and how its description differs from it. */
  const shapes: Record<string, [Record<string, unknown>, Family, string, Partial<CheckpointModel>]> = {
    'LLaDA-8B-Instruct is the llada-8b preset': [llada8b, 'llada', 'llada-8b', { qkNorm: false }],
    'SDAR-8B-Chat is the sdar-8b preset, with per-head q/k norms and block size 4': [
      sdar8b,
      'sdar',
      'sdar-8b',
      { qkNorm: true, blockSize: 4 },
    ],
    'Dream-v0 7B is the dream-7b preset': [dream7b, 'dream', 'dream-7b', { qkNorm: false }],
    'Fast-dLLM v2 7B: Qwen2.5-7B shapes, Q/K/V bias, AR shift, block-causal, mask 151665 by default': [
      fastDllm7b,
      'fast-dllm-v2',
      'dream-7b',
      {
        name: 'fast-dllm-v2-7b',
        maskTokenId: 151665,
        attention: 'block_causal',
        qkNorm: false,
        alignedBlocks: true,
        blockSize: 32,
      },
    ],
  };
  test.each(Object.entries(shapes))('%s', (_title, [json, family, preset, differences]) => {
    const config = { ...presets[preset], ...differences };
    expect(describeAs(json, config.name)).toEqual({ family, config });
  });

  test('SDAR-1.7B-Chat: head_dim 128 with hidden 2048 over 16 heads', () => {
    expect(describeAs(sdar1p7b).config).toMatchObject({
      layers: 28,
      dModel: 2048,
      heads: 16,
      kvHeads: 8,
      headDim: 128,
      dFF: 6144,
      vocab: 151936,
      maskTokenId: 151669,
      blockSize: 4,
      tieEmbeddings: false,
    });
  });

  test.each([llada8b, sdar8b, sdar1p7b, dream7b, fastDllm7b])(
    'validateConfig accepts the description (%#)',
    (json) => {
      const c = fields(describeAs(json).config);
      expect(validateConfig(c, 'x')).toEqual(c);
    },
  );
});

describe('detection', () => {
  test('by model_type alone, by architectures alone, and model_type case-insensitively', () => {
    expect(detectFamily({ model_type: 'sdar' }, where)).toBe('sdar');
    expect(detectFamily({ architectures: ['LLaDAModelLM'] }, where)).toBe('llada');
    expect(detectFamily({ model_type: 'dream' }, where)).toBe('dream');
    expect(detectFamily({ architectures: ['X', 'Fast_dLLM_QwenForCausalLM'] }, where)).toBe('fast-dllm-v2');
  });

  test('an autoregressive Qwen2.5 config is an unknown family, and the message lists the known ones', () => {
    expectError(qwen25_7b, 'unknown model family', '"qwen2"', 'LLaDA (model_type "llada"', 'Fast_dLLM_Qwen');
  });

  test('model_type and architectures that disagree', () => {
    expectError({ ...sdar8b, architectures: ['DreamModel'] }, '"sdar" is SDAR', 'is Dream');
  });

  test('neither key, a non-string model_type, non-string architectures, not an object', () => {
    expectError({ hidden_size: 8 }, 'missing keys "model_type" and "architectures"');
    expectError({ model_type: 3 }, 'key "model_type" must be a string');
    expectError({ architectures: 'SDARForCausalLM' }, 'key "architectures" must be an array of strings');
    expectError([1], 'not a JSON object');
  });
});

describe('keys', () => {
  /** The keys every Qwen family (Dream, SDAR, Fast-dLLM v2) requires. */
  const qwenRequired = [
    'hidden_size',
    'num_hidden_layers',
    'num_attention_heads',
    'num_key_value_heads',
    'intermediate_size',
    'vocab_size',
    'rope_theta',
  ];
  const required: [string, Record<string, unknown>, string[]][] = [
    [
      'LLaDA',
      llada8b,
      [
        'd_model',
        'n_heads',
        'n_layers',
        'mlp_hidden_size',
        'vocab_size',
        'rope_theta',
        'mask_token_id',
        'weight_tying',
        'block_type',
        'rope',
      ],
    ],
    ['SDAR', sdar8b, [...qwenRequired, 'mask_token_id', 'block_size']],
    ['Dream', dream7b, qwenRequired],
    ['Fast-dLLM v2', fastDllm7b, [...qwenRequired, 'bd_size']],
  ];
  test.each(required)('%s: each required key, when missing, is named', (label, json, keys) => {
    for (const key of keys) expectError(without(json, key), `(${label})`, `"${key}"`);
  });

  test('defaults from the published code: Dream mask 151666, SDAR head_dim 128, rms_norm_eps, tie false', () => {
    expect(describeAs(without(dream7b, 'mask_token_id')).config.maskTokenId).toBe(151666);
    expect(describeAs(without(sdar8b, 'head_dim')).config.headDim).toBe(128);
    expect(describeAs(without(llada8b, 'rms_norm_eps')).config.normEps).toBe(1e-5);
    expect(describeAs(without(sdar8b, 'rms_norm_eps')).config.normEps).toBe(1e-6);
    expect(describeAs(without(dream7b, 'tie_word_embeddings')).config.tieEmbeddings).toBe(false);
  });

  test('LLaDA: n_kv_heads defaults to n_heads, or 1 under multi_query_attention; embedding_size to vocab_size', () => {
    expect(describeAs({ ...llada8b, n_kv_heads: null }).config.kvHeads).toBe(32);
    expect(describeAs(without(llada8b, 'n_kv_heads')).config.kvHeads).toBe(32);
    expect(describeAs({ ...llada8b, n_kv_heads: null, multi_query_attention: true }).config.kvHeads).toBe(1);
    expectError(
      { ...llada8b, multi_query_attention: true },
      '"multi_query_attention" (true) and "n_kv_heads" (32) disagree',
    );
    expect(describeAs({ ...llada8b, embedding_size: null, vocab_size: 126400 }).config.vocab).toBe(126400);
    expect(describeAs({ ...llada8b, embedding_size: 126592 }).config.vocab).toBe(126592);
    expect(describeAs({ ...llada8b, include_qkv_bias: true }).config.qkvBias).toBe(true);
  });

  test('Qwen families: num_key_value_heads null means num_attention_heads; head_dim is used when given', () => {
    expect(describeAs({ ...dream7b, num_key_value_heads: null }).config.kvHeads).toBe(28);
    expect(describeAs({ ...fastDllm7b, head_dim: 64 }).config.headDim).toBe(64);
    // Dream's code derives head_dim from hidden_size and ignores the key.
    expect(describeAs({ ...dream7b, head_dim: 64 }).config.headDim).toBe(128);
  });

  // biome-ignore format: a table, one case a line
  const unsupported: [string, Record<string, unknown>, string[]][] = [
    ['LLaDA sequential block', { ...llada8b, block_type: 'sequential' },
      ['"block_type" is "sequential"', '"llama"']],
    ['LLaDA without block_type', without(llada8b, 'block_type'),
      ['"block_type" is absent', 'uses "sequential"']],
    ['LLaDA fused SwiGLU', { ...llada8b, activation_type: 'swiglu' }, ['"activation_type"']],
    ['LLaDA LayerNorm', { ...llada8b, layer_norm_type: 'default' }, ['"layer_norm_type"', 'RMSNorm']],
    ['LLaDA without rope', without(llada8b, 'rope'), ['"rope" is absent', 'uses false']],
    ['LLaDA ALiBi', { ...llada8b, alibi: true }, ['"alibi"']],
    ['LLaDA biases', { ...llada8b, include_bias: true }, ['"include_bias"']],
    ['LLaDA norm biases', { ...llada8b, bias_for_layer_norm: true }, ['"bias_for_layer_norm"']],
    ['LLaDA OLMo q/k norm', { ...llada8b, attention_layer_norm: true }, ['"attention_layer_norm"']],
    ['LLaDA scaled embeddings', { ...llada8b, input_emb_norm: true }, ['"input_emb_norm"']],
    ['LLaDA scaled logits', { ...llada8b, scale_logits: true }, ['"scale_logits"']],
    ['LLaDA block groups', { ...llada8b, block_group_size: 2 }, ['"block_group_size"']],
    ['SDAR attention bias', { ...sdar8b, attention_bias: true }, ['"attention_bias"', 'o_proj']],
    ['RoPE scaling', { ...dream7b, rope_scaling: { type: 'yarn', factor: 4 } },
      ['"rope_scaling"', 'default RoPE']],
    ['sliding window', { ...sdar8b, use_sliding_window: true }, ['"use_sliding_window"']],
    ['GELU', { ...fastDllm7b, hidden_act: 'gelu' }, ['"hidden_act" is "gelu"']],
    ['sliding layers', { ...fastDllm7b, layer_types: ['full_attention', 'sliding_attention'] },
      ['"layer_types"']],
  ];
  test.each(unsupported)('refused: %s', (_what, json, parts) => expectError(json, ...parts));

  // biome-ignore format: a table, one case a line
  const inconsistent: [string, Record<string, unknown>, string[]][] = [
    ['kv heads not dividing heads', { ...sdar8b, num_key_value_heads: 5 },
      ['"num_key_value_heads" (5) must divide "num_attention_heads" (32)']],
    ['LLaDA kv heads', { ...llada8b, n_kv_heads: 3 }, ['"n_kv_heads" (3) must divide "n_heads" (32)']],
    ['an odd head dimension', { ...sdar8b, head_dim: 127 }, ['head dimension 127 is odd']],
    ['hidden not divisible by heads', { ...dream7b, hidden_size: 3585 },
      ['"hidden_size" (3585) must be divisible by "num_attention_heads" (28)']],
    ['LLaDA d_model not divisible', { ...llada8b, d_model: 4100 },
      ['"d_model" (4100) must be divisible by "n_heads"']],
    ['the mask outside the vocabulary', { ...sdar8b, mask_token_id: 151936 },
      ['"mask_token_id" (151936) is not below', '"vocab_size" (151936)']],
    ['LLaDA mask outside embedding_size', { ...llada8b, mask_token_id: 126464 }, ['"embedding_size" (126464)']],
    ['Fast-dLLM default mask outside a small vocabulary', { ...fastDllm7b, vocab_size: 1000 },
      ['"mask_token_id" (151665)']],
    ['a non-integer size', { ...dream7b, hidden_size: 3584.5 },
      ['"hidden_size" must be a positive integer (got 3584.5)']],
    ['a zero size', { ...llada8b, n_layers: 0 }, ['"n_layers" must be a positive integer']],
    ['a negative mask id', { ...sdar8b, mask_token_id: -1 }, ['"mask_token_id" must be a token id']],
    ['a string theta', { ...sdar8b, rope_theta: '1e6' }, ['"rope_theta" must be a finite number']],
    ['a string flag', { ...llada8b, weight_tying: 'false' }, ['"weight_tying" must be true or false']],
  ];
  test.each(inconsistent)('refused: %s', (_what, json, parts) => expectError(json, ...parts));
});

describe('tensor names', () => {
  test('LLaDA: OLMo names, with ff_proj as the gate, up_proj as up, ff_out as down and as the head', () => {
    const expected: Record<string, string> = {
      'model.embed_tokens.weight': 'model.transformer.wte.weight',
      'model.layers.3.input_layernorm.weight': 'model.transformer.blocks.3.attn_norm.weight',
      'model.layers.3.self_attn.q_proj.weight': 'model.transformer.blocks.3.q_proj.weight',
      'model.layers.3.self_attn.k_proj.bias': 'model.transformer.blocks.3.k_proj.bias',
      'model.layers.3.self_attn.v_proj.weight': 'model.transformer.blocks.3.v_proj.weight',
      'model.layers.3.self_attn.o_proj.weight': 'model.transformer.blocks.3.attn_out.weight',
      'model.layers.3.post_attention_layernorm.weight': 'model.transformer.blocks.3.ff_norm.weight',
      'model.layers.3.mlp.gate_proj.weight': 'model.transformer.blocks.3.ff_proj.weight',
      'model.layers.3.mlp.up_proj.weight': 'model.transformer.blocks.3.up_proj.weight',
      'model.layers.3.mlp.down_proj.weight': 'model.transformer.blocks.3.ff_out.weight',
      'model.norm.weight': 'model.transformer.ln_f.weight',
      'lm_head.weight': 'model.transformer.ff_out.weight',
    };
    for (const [canonical, name] of Object.entries(expected))
      expect(tensorName('llada', canonical)).toBe(name);
  });

  test('LLaDA has no q_norm, and unknown names are refused', () => {
    expect(() => tensorName('llada', 'model.layers.0.self_attn.q_norm.weight')).toThrow(CheckpointError);
    expect(() => tensorName('llada', 'model.layers.0.constructor')).toThrow(
      /LLaDA checkpoints have no tensor/,
    );
    expect(() => tensorName('llada', 'constructor')).toThrow(CheckpointError);
  });

  test.each(['dream', 'sdar', 'fast-dllm-v2'] as Family[])('%s uses the canonical names', (family) => {
    for (const name of [
      'model.layers.1.self_attn.q_norm.weight',
      'model.layers.0.mlp.gate_proj.weight',
      'lm_head.weight',
    ])
      expect(tensorName(family, name)).toBe(name);
  });

  test('the weights of an SDAR config have q_norm and k_norm of [headDim] per layer, and a Dream one none', () => {
    const sdar = describeAs(sdar1p7b).config;
    const spec = weightSpec(sdar);
    const norms = spec.filter((w) => /\.self_attn\.[qk]_norm\.weight$/.test(w.name));
    expect(norms).toHaveLength(2 * 28);
    expect(norms.every((w) => w.shape.length === 1 && w.shape[0] === 128 && w.kind === 'norm')).toBe(true);
    expect(spec.map((w) => w.name)).toContain('model.layers.27.self_attn.k_norm.weight');
    const dream = describeAs(dream7b).config;
    expect(
      weightSpec(dream).some((w) => w.name.includes('_norm.weight') && w.name.includes('self_attn')),
    ).toBe(false);
  });
});

describe('the test writer and the reader agree on every family', () => {
  const tiny: Record<Family, CheckpointModel> = {
    llada: { ...(presets.tiny as ModelConfig), name: 'm', headDim: 8, qkvBias: false, qkNorm: false },
    dream: { ...(presets.tiny as ModelConfig), name: 'm', normEps: 1e-6, arShift: true, qkNorm: false },
    sdar: {
      ...(presets.tiny as ModelConfig),
      name: 'm',
      headDim: 16,
      qkvBias: false,
      attention: 'block_causal',
      qkNorm: true,
      alignedBlocks: true,
      blockSize: 4,
    },
    'fast-dllm-v2': {
      ...(presets.tiny as ModelConfig),
      name: 'm',
      arShift: true,
      attention: 'block_causal',
      tieEmbeddings: true,
      qkNorm: false,
      alignedBlocks: true,
      blockSize: 8,
    },
  };
  test.each(Object.keys(tiny) as Family[])('%s', (family) => {
    expect(describeAs(hfConfig(family, tiny[family]))).toEqual({ family, config: tiny[family] });
  });
});
