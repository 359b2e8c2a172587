/**
 * The dLLM families kvplan reads from Hugging Face checkpoint directories: how each is recognised
 * in config.json, which of its keys give kvplan's model shape, and what its tensors are called.
 * Every key, default and name below was checked against the family's published model code; the
 * sources are listed in docs/checkpoints.md.
 */
import { configOverLimit, type ModelConfig } from '../config.ts';
import { CheckpointError } from './checkpointError.ts';

export type Family = 'llada' | 'dream' | 'sdar' | 'fast-dllm-v2';

/** kvplan's model shape, plus what a checkpoint family has beyond `ModelConfig`. */
export interface CheckpointModel extends ModelConfig {
  /** A per-head RMSNorm (weight [headDim], eps normEps) on q and k before RoPE (SDAR, from Qwen3). */
  qkNorm: boolean;
  /** The block size the model was trained with (SDAR `block_size`, Fast-dLLM v2 `bd_size`). */
  blockSize?: number;
}

export interface FamilyDescription {
  family: Family;
  config: CheckpointModel;
}

interface FamilyInfo {
  label: string;
  modelType: string;
  architecture: string;
  describe(keys: ConfigKeys, name: string): CheckpointModel;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A config value for a message, clipped: a hostile config may hold huge values. */
const show = (v: unknown): string => {
  if (v === undefined) return 'absent';
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 100)}…` : s;
};

/** Typed access to config.json keys; every failure names the file and the key. */
class ConfigKeys {
  constructor(
    private readonly rec: Record<string, unknown>,
    readonly where: string,
  ) {}

  fail(msg: string): never {
    throw new CheckpointError(`${this.where}: ${msg}`);
  }

  /** JSON null reads as absent: Python's None selects the default in every family's config class. */
  get(key: string): unknown {
    const v = Object.hasOwn(this.rec, key) ? this.rec[key] : undefined;
    return v === null ? undefined : v;
  }

  has(key: string): boolean {
    return Object.hasOwn(this.rec, key);
  }

  private value(key: string, dflt: unknown): unknown {
    const v = this.get(key);
    if (v !== undefined) return v;
    if (dflt === undefined) this.fail(`missing required key "${key}"`);
    return dflt;
  }

  /** A positive integer. */
  int(key: string, dflt?: number): number {
    const v = this.value(key, dflt);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      this.fail(`key "${key}" must be a positive integer (got ${show(v)})`);
    return v as number;
  }

  /** A token id: a non-negative integer. */
  id(key: string, dflt?: number): number {
    const v = this.value(key, dflt);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      this.fail(`key "${key}" must be a token id, a non-negative integer (got ${show(v)})`);
    return v as number;
  }

  /** A finite number > 0. */
  real(key: string, dflt?: number): number {
    const v = this.value(key, dflt);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      this.fail(`key "${key}" must be a finite number > 0 (got ${show(v)})`);
    return v as number;
  }

  bool(key: string, dflt?: boolean): boolean {
    const v = this.value(key, dflt);
    if (typeof v !== 'boolean') this.fail(`key "${key}" must be true or false (got ${show(v)})`);
    return v as boolean;
  }

  /**
   * A key that selects an architecture variant: its value (or, when absent, the published code's
   * default `dflt`) must be the one kvplan implements, else the checkpoint is refused rather
   * than run as something it is not.
   */
  only(key: string, supported: string | number | boolean, dflt: unknown, what: string): void {
    const v = this.get(key) ?? dflt;
    if (v !== supported)
      this.fail(
        `key "${key}" is ${show(this.get(key))}${this.get(key) === undefined ? ` (the published code then uses ${show(dflt)})` : ''}; ` +
          `kvplan implements only ${JSON.stringify(supported)}: ${what}`,
      );
  }
}

const qwenKeys = { heads: 'num_attention_heads', kvHeads: 'num_key_value_heads', vocab: 'vocab_size' };

/** Checks shared by every family once the shape is known; messages use the family's own keys. */
function checkShape(
  k: ConfigKeys,
  m: CheckpointModel,
  keys: { heads: string; kvHeads: string; vocab: string } = qwenKeys,
): CheckpointModel {
  if (m.heads % m.kvHeads !== 0)
    k.fail(`key "${keys.kvHeads}" (${m.kvHeads}) must divide "${keys.heads}" (${m.heads})`);
  if (m.headDim % 2 !== 0) k.fail(`the head dimension ${m.headDim} is odd; RoPE rotates pairs`);
  if (m.maskTokenId >= m.vocab)
    k.fail(
      `key "mask_token_id" (${m.maskTokenId}) is not below the vocabulary size "${keys.vocab}" (${m.vocab})`,
    );
  return m;
}

/** head_dim = hidden / heads, where the family's code derives it (and refuses a remainder). */
function derivedHeadDim(
  k: ConfigKeys,
  hidden: number,
  heads: number,
  hiddenKey: string,
  headsKey: string,
): number {
  if (hidden % heads !== 0)
    k.fail(`key "${hiddenKey}" (${hidden}) must be divisible by "${headsKey}" (${heads})`);
  return hidden / heads;
}

/**
 * LLaDA (GSAI-ML LLaDA-8B-Base/Instruct, LLaDA-1.5): OLMo's configuration class, whose defaults
 * are GPT-2's, so every key that fixes a shape or a number kvplan computes with is required;
 * the keys that select OLMo variants must name the variant LLaDA-8B uses.
 */
function describeLlada(k: ConfigKeys, name: string): CheckpointModel {
  k.only(
    'block_type',
    'llama',
    'sequential',
    'LLaDALlamaBlock (separate q/k/v, SwiGLU with ff_proj and up_proj)',
  );
  k.only('activation_type', 'silu', 'swiglu', 'SiLU of ff_proj times up_proj');
  k.only('layer_norm_type', 'rms', 'default', 'RMSNorm');
  k.only('layer_norm_with_affine', true, true, 'norms with a weight');
  k.only('bias_for_layer_norm', false, false, 'norms without a bias');
  k.only('include_bias', false, false, 'no biases outside q/k/v');
  k.only('rope', true, false, 'rotary position embeddings');
  k.only('alibi', false, false, 'no ALiBi');
  k.only('attention_layer_norm', false, false, 'no norm on q and k');
  k.only('input_emb_norm', false, false, 'embeddings not scaled by sqrt(d_model)');
  k.only('scale_logits', false, false, 'logits not scaled');
  k.only('block_group_size', 1, 1, 'blocks named model.transformer.blocks.{i}');
  const dModel = k.int('d_model');
  const heads = k.int('n_heads');
  // effective_n_kv_heads: n_kv_heads, else 1 under multi_query_attention, else n_heads.
  const mqa = k.get('multi_query_attention');
  if (mqa !== undefined && typeof mqa !== 'boolean')
    k.fail(`key "multi_query_attention" must be true, false or null`);
  const kvHeads = k.int('n_kv_heads', mqa === true ? 1 : heads);
  if (mqa !== undefined && k.get('n_kv_heads') !== undefined && kvHeads !== (mqa ? 1 : heads))
    k.fail(`keys "multi_query_attention" (${mqa}) and "n_kv_heads" (${kvHeads}) disagree`);
  // The embedding and the output head have embedding_size rows when it is set, else vocab_size.
  const vocab = k.int('embedding_size', k.int('vocab_size'));
  const model: CheckpointModel = {
    name,
    layers: k.int('n_layers'),
    dModel,
    heads,
    kvHeads,
    headDim: derivedHeadDim(k, dModel, heads, 'd_model', 'n_heads'),
    dFF: k.int('mlp_hidden_size'),
    vocab,
    ropeTheta: k.real('rope_theta'),
    qkvBias: k.bool('include_qkv_bias', false),
    normEps: k.real('rms_norm_eps', 1e-5),
    maskTokenId: k.id('mask_token_id'),
    arShift: false,
    attention: 'full',
    tieEmbeddings: k.bool('weight_tying'),
    qkNorm: false,
  };
  const vocabKey = k.get('embedding_size') === undefined ? 'vocab_size' : 'embedding_size';
  return checkShape(k, model, { heads: 'n_heads', kvHeads: 'n_kv_heads', vocab: vocabKey });
}

/** Keys Dream, SDAR and Fast-dLLM v2 share with their Qwen2 / Qwen3 bases. */
function qwenShape(k: ConfigKeys) {
  k.only('hidden_act', 'silu', 'silu', 'SwiGLU with SiLU');
  k.only('use_sliding_window', false, false, 'full attention in every layer');
  if (k.get('rope_scaling') !== undefined)
    k.fail(
      `key "rope_scaling" is ${show(k.get('rope_scaling'))}; kvplan implements only the default RoPE (null)`,
    );
  const heads = k.int('num_attention_heads');
  // Present but null means "as many as query heads" in every Qwen config class.
  const kvHeads = k.has('num_key_value_heads')
    ? k.int('num_key_value_heads', heads)
    : k.int('num_key_value_heads');
  return {
    dModel: k.int('hidden_size'),
    layers: k.int('num_hidden_layers'),
    heads,
    kvHeads,
    dFF: k.int('intermediate_size'),
    vocab: k.int('vocab_size'),
    ropeTheta: k.real('rope_theta'),
    normEps: k.real('rms_norm_eps', 1e-6),
    tieEmbeddings: k.bool('tie_word_embeddings', false),
  };
}

/** Dream-v0 (Qwen2.5 names): q/k/v bias always (the code ignores attention_bias), AR shift. */
function describeDream(k: ConfigKeys, name: string): CheckpointModel {
  const s = qwenShape(k);
  return checkShape(k, {
    name,
    ...s,
    headDim: derivedHeadDim(k, s.dModel, s.heads, 'hidden_size', 'num_attention_heads'),
    qkvBias: true,
    maskTokenId: k.id('mask_token_id', 151666),
    arShift: true,
    attention: 'full',
    qkNorm: false,
  });
}

/** SDAR (Qwen3 names): per-head q_norm / k_norm, head_dim default 128, block diffusion. */
function describeSdar(k: ConfigKeys, name: string): CheckpointModel {
  const s = qwenShape(k);
  k.only(
    'attention_bias',
    false,
    false,
    'no bias on q/k/v/o (SDAR puts one on o_proj too, which kvplan lacks)',
  );
  return checkShape(k, {
    name,
    ...s,
    headDim: k.int('head_dim', 128),
    qkvBias: false,
    maskTokenId: k.id('mask_token_id'),
    arShift: false,
    attention: 'block_causal',
    qkNorm: true,
    // generate.py counts blocks from position 0 and prefills the prompt with the block mask.
    alignedBlocks: true,
    blockSize: k.int('block_size'),
  });
}

/** Fast-dLLM v2 (Qwen2.5 names): q/k/v bias always, AR shift, block diffusion of bd_size. */
function describeFastDllmV2(k: ConfigKeys, name: string): CheckpointModel {
  const s = qwenShape(k);
  const layerTypes = k.get('layer_types');
  if (
    layerTypes !== undefined &&
    (!Array.isArray(layerTypes) || layerTypes.some((t) => t !== 'full_attention'))
  )
    k.fail(
      `key "layer_types" must list only "full_attention" (got ${show(layerTypes)}); kvplan has no sliding window`,
    );
  return checkShape(k, {
    name,
    ...s,
    headDim:
      k.get('head_dim') === undefined
        ? derivedHeadDim(k, s.dModel, s.heads, 'hidden_size', 'num_attention_heads')
        : k.int('head_dim'),
    qkvBias: true,
    // Not a config key of the published checkpoints: the model code's generate() default.
    maskTokenId: k.id('mask_token_id', 151665),
    arShift: true,
    attention: 'block_causal',
    qkNorm: false,
    // The block mask q // bs >= kv // bs is over absolute positions, the prompt's included.
    alignedBlocks: true,
    blockSize: k.int('bd_size'),
  });
}

const families: Readonly<Record<Family, FamilyInfo>> = {
  llada: { label: 'LLaDA', modelType: 'llada', architecture: 'LLaDAModelLM', describe: describeLlada },
  dream: { label: 'Dream', modelType: 'Dream', architecture: 'DreamModel', describe: describeDream },
  sdar: { label: 'SDAR', modelType: 'sdar', architecture: 'SDARForCausalLM', describe: describeSdar },
  'fast-dllm-v2': {
    label: 'Fast-dLLM v2',
    modelType: 'Fast_dLLM_Qwen',
    architecture: 'Fast_dLLM_QwenForCausalLM',
    describe: describeFastDllmV2,
  },
};

const familyNames = Object.keys(families) as Family[];

export const familyLabel = (f: Family): string => families[f].label;

const known = familyNames
  .map((f) => `${families[f].label} (model_type "${families[f].modelType}", ${families[f].architecture})`)
  .join(', ');

/** The family of a parsed config.json, from `model_type` and `architectures`, which must agree. */
export function detectFamily(json: unknown, where: string): Family {
  if (!isRecord(json)) throw new CheckpointError(`${where}: not a JSON object`);
  const modelType = json.model_type;
  const archs = json.architectures;
  if (modelType !== undefined && typeof modelType !== 'string')
    throw new CheckpointError(`${where}: key "model_type" must be a string (got ${show(modelType)})`);
  if (archs !== undefined && (!Array.isArray(archs) || !archs.every((a) => typeof a === 'string')))
    throw new CheckpointError(
      `${where}: key "architectures" must be an array of strings (got ${show(archs)})`,
    );
  if (modelType === undefined && archs === undefined)
    throw new CheckpointError(
      `${where}: missing keys "model_type" and "architectures"; kvplan reads ${known}`,
    );
  const byType = familyNames.find((f) => families[f].modelType.toLowerCase() === modelType?.toLowerCase());
  const byArch = familyNames.find((f) => archs?.includes(families[f].architecture));
  if (byType !== undefined && byArch !== undefined && byType !== byArch)
    throw new CheckpointError(
      `${where}: "model_type" ${show(modelType)} is ${families[byType].label} but "architectures" ${show(archs)} is ${families[byArch].label}`,
    );
  const family = byType ?? byArch;
  if (family === undefined)
    throw new CheckpointError(
      `${where}: unknown model family (model_type ${show(modelType)}, architectures ${show(archs)}); kvplan reads ${known}`,
    );
  return family;
}

/** The family of a parsed config.json and its shape in kvplan's terms; `name` labels the model. */
export function describeConfig(json: unknown, where: string, name: string): FamilyDescription {
  const family = detectFamily(json, where);
  const keys = new ConfigKeys(json as Record<string, unknown>, `${where} (${families[family].label})`);
  const config = families[family].describe(keys, name);
  // Every path that reads a checkpoint's shape comes here: sizes are bounded before anything is sized from them.
  const why = configOverLimit(config);
  if (why !== undefined) keys.fail(why);
  return { family, config };
}

/** LLaDA's names (OLMo's): the top-level tensors, and the per-block ones after `layers.{i}.`. */
const lladaTop: ReadonlyMap<string, string> = new Map([
  ['model.embed_tokens.weight', 'model.transformer.wte.weight'],
  ['model.norm.weight', 'model.transformer.ln_f.weight'],
  ['lm_head.weight', 'model.transformer.ff_out.weight'],
]);
const lladaBlock: ReadonlyMap<string, string> = new Map(
  Object.entries({
    'input_layernorm.weight': 'attn_norm.weight',
    'self_attn.q_proj.weight': 'q_proj.weight',
    'self_attn.q_proj.bias': 'q_proj.bias',
    'self_attn.k_proj.weight': 'k_proj.weight',
    'self_attn.k_proj.bias': 'k_proj.bias',
    'self_attn.v_proj.weight': 'v_proj.weight',
    'self_attn.v_proj.bias': 'v_proj.bias',
    'self_attn.o_proj.weight': 'attn_out.weight',
    'post_attention_layernorm.weight': 'ff_norm.weight',
    // LLaDALlamaBlock computes ff_out(act(ff_proj(x)) * up_proj(x)): ff_proj is the gate.
    'mlp.gate_proj.weight': 'ff_proj.weight',
    'mlp.up_proj.weight': 'up_proj.weight',
    'mlp.down_proj.weight': 'ff_out.weight',
  }),
);

/**
 * The checkpoint's name for a canonical tensor name. Dream, SDAR and Fast-dLLM v2 use the
 * canonical (Hugging Face LLaMA / Qwen) names themselves; LLaDA uses OLMo's.
 */
export function tensorName(family: Family, canonical: string): string {
  if (family !== 'llada') return canonical;
  const top = lladaTop.get(canonical);
  if (top !== undefined) return top;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(canonical);
  const block = m ? lladaBlock.get(m[2] as string) : undefined;
  if (m === null || block === undefined)
    throw new CheckpointError(`LLaDA checkpoints have no tensor for kvplan's "${canonical}"`);
  return `model.transformer.blocks.${m[1]}.${block}`;
}
