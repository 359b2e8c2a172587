/**
 * The shape of a LLaMA-family bidirectional transformer (LLaDA, Dream, SDAR), its validation and
 * loading. The canonical JSON spelling of every field is snake_case (`d_model`, `kv_heads`, ...);
 * the camelCase spelling of the TypeScript type is accepted too. See docs/model.md.
 */
import { basename, extname } from 'node:path';
import { closest } from '../dsl/suggest.ts';
import { presetNames, presets } from './presets.ts';
import { readSmallFile, SmallFileError } from './smallFile.ts';

export type AttentionKind = 'full' | 'block_causal';

export interface ModelConfig {
  name: string;
  layers: number;
  dModel: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  dFF: number;
  vocab: number;
  ropeTheta: number;
  qkvBias: boolean;
  normEps: number;
  maskTokenId: number;
  /** The logits of row i predict the token at position i + 1 (Dream, Fast-dLLM v2). */
  arShift: boolean;
  attention: AttentionKind;
  tieEmbeddings: boolean;
  /** A per-head RMSNorm (weight [headDim], eps normEps) on q and k before RoPE (SDAR, from Qwen3). */
  qkNorm?: boolean;
  /**
   * Trained with blocks counted from position 0, the prompt split into them (SDAR, Fast-dLLM v2):
   * block-causal attention then sees the prompt's blocks causally, and its tail shares the first
   * generated block (see Canvas.origin). Otherwise the prompt is one block before the first.
   */
  alignedBlocks?: boolean;
}

/** A model configuration that cannot be used; the message names the file (or preset) and the field. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Field = keyof ModelConfig;

/** Field -> canonical JSON (snake_case) key. Order = validation and documentation order. */
export const jsonKeys: Readonly<Record<Field, string>> = {
  name: 'name',
  layers: 'layers',
  dModel: 'd_model',
  heads: 'heads',
  kvHeads: 'kv_heads',
  headDim: 'head_dim',
  dFF: 'd_ff',
  vocab: 'vocab',
  ropeTheta: 'rope_theta',
  qkvBias: 'qkv_bias',
  normEps: 'norm_eps',
  maskTokenId: 'mask_token_id',
  arShift: 'ar_shift',
  attention: 'attention',
  tieEmbeddings: 'tie_embeddings',
  qkNorm: 'qk_norm',
  alignedBlocks: 'aligned_blocks',
};

const fields = Object.keys(jsonKeys) as Field[];

// kv_heads divides heads, so the limit of heads bounds it too.
type SizeField = 'layers' | 'dModel' | 'heads' | 'headDim' | 'dFF' | 'vocab';

/**
 * The largest value kvplan accepts for each size field: above every published model
 * (Llama-3-405B: 126 layers, d_model 16,384, d_ff 53,248, 128 heads; Falcon-180B: 232 heads;
 * Gemma: head_dim 256, vocab about 262,000), so that no real config meets them, while a typo or a
 * hostile file (`layers: 1e8`) is refused before anything is sized, allocated or compiled from
 * it. See docs/model.md, "Size limits".
 */
export const configLimits: Readonly<Record<SizeField, number>> = {
  layers: 512,
  dModel: 65_536,
  heads: 256,
  headDim: 512,
  dFF: 262_144,
  vocab: 2 ** 21,
};

const sizeFields = Object.keys(configLimits) as SizeField[];

const count = (n: number): string => n.toLocaleString('en-US');

/** Why a size field is over its limit, naming the field as `label` spells it; undefined when none is. */
function overLimit(
  config: Pick<ModelConfig, SizeField>,
  label: (f: SizeField) => string,
): string | undefined {
  for (const f of sizeFields) {
    const limit = configLimits[f];
    if (config[f] > limit)
      return `field "${label(f)}" is ${count(config[f])}, above kvplan's limit of ${count(limit)} (docs/model.md, "Size limits")`;
  }
  return undefined;
}

/** Why a config's size fields exceed `configLimits`, naming the field by kvplan's name; undefined if none. */
export const configOverLimit = (config: ModelConfig): string | undefined =>
  overLimit(config, (f) => jsonKeys[f]);

/** Hugging Face config.json keys people will paste, and what kvplan calls them. */
const hfKeys: Readonly<Record<string, string>> = {
  hidden_size: 'd_model',
  num_hidden_layers: 'layers',
  n_layers: 'layers',
  num_attention_heads: 'heads',
  n_heads: 'heads',
  num_key_value_heads: 'kv_heads',
  n_kv_heads: 'kv_heads',
  intermediate_size: 'd_ff',
  mlp_hidden_size: 'd_ff',
  vocab_size: 'vocab',
  rms_norm_eps: 'norm_eps',
  attention_bias: 'qkv_bias',
  include_qkv_bias: 'qkv_bias',
  tie_word_embeddings: 'tie_embeddings',
  weight_tying: 'tie_embeddings',
};

const attentionKinds: readonly AttentionKind[] = ['full', 'block_causal'];

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const show = (v: unknown): string => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return String(v);
};

/**
 * Validates a parsed JSON object (or a `ModelConfig`) field by field and returns a fresh
 * `ModelConfig`. `where` names the source in messages (a file path or a preset name); it is also
 * the default `name` (its base name without extension). Optional fields and their defaults:
 * `kv_heads` = `heads`, `head_dim` = `d_model / heads`, `qkv_bias` = `ar_shift` =
 * `tie_embeddings` = `qk_norm` = `aligned_blocks` = false, `attention` = "full". Every other field
 * is required.
 */
export function validateConfig(obj: unknown, where: string): ModelConfig {
  const fail = (msg: string): never => {
    throw new ConfigError(`${where}: ${msg}`);
  };
  if (!isRecord(obj)) fail(`a model config must be a JSON object, got ${show(obj)}`);
  const rec = obj as Record<string, unknown>;

  // Resolve each field's spelling (snake_case or camelCase); reject unknown and doubled keys.
  const spelling = new Map<Field, string>();
  const byKey = new Map<string, Field>();
  for (const f of fields) {
    byKey.set(jsonKeys[f], f);
    byKey.set(f, f);
  }
  for (const key of Object.keys(rec)) {
    const f = byKey.get(key);
    if (f === undefined) {
      const hf = hfKeys[key];
      if (hf !== undefined) fail(`unknown field "${key}" (a Hugging Face key; kvplan calls it "${hf}")`);
      const hit = closest(key, [...fields.map((x) => jsonKeys[x]), ...fields]);
      fail(`unknown field "${key}"${hit ? ` (did you mean "${hit}"?)` : ''}`);
    }
    const f2 = f as Field;
    const prev = spelling.get(f2);
    if (prev !== undefined) fail(`field "${jsonKeys[f2]}" is given twice (as "${prev}" and "${key}")`);
    spelling.set(f2, key);
  }
  const label = (f: Field): string => spelling.get(f) ?? jsonKeys[f];
  const get = (f: Field): unknown => {
    const key = spelling.get(f);
    return key === undefined ? undefined : rec[key];
  };
  const required = (f: Field): unknown => {
    const v = get(f);
    if (v === undefined) fail(`missing required field "${jsonKeys[f]}"`);
    return v;
  };
  const positiveInt = (f: Field, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      fail(`field "${label(f)}" must be a positive integer (got ${show(v)})`);
    return v as number;
  };
  const positiveReal = (f: Field, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      fail(`field "${label(f)}" must be a finite number > 0 (got ${show(v)})`);
    return v as number;
  };
  const bool = (f: Field, dflt: boolean): boolean => {
    const v = get(f);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') fail(`field "${label(f)}" must be true or false (got ${show(v)})`);
    return v as boolean;
  };

  let name = get('name');
  if (name === undefined) name = basename(where, extname(where));
  if (typeof name !== 'string' || name.trim() === '')
    fail(`field "name" must be a non-empty string (got ${show(name)})`);

  const layers = positiveInt('layers', required('layers'));
  const dModel = positiveInt('dModel', required('dModel'));
  const heads = positiveInt('heads', required('heads'));
  const kvRaw = get('kvHeads');
  const kvHeads = kvRaw === undefined ? heads : positiveInt('kvHeads', kvRaw);
  if (heads % kvHeads !== 0)
    fail(
      `field "${label('kvHeads')}" must divide "${label('heads')}" (got ${label('heads')}=${heads}, ${label('kvHeads')}=${kvHeads})`,
    );
  const hdRaw = get('headDim');
  let headDim: number;
  if (hdRaw === undefined) {
    if (dModel % heads !== 0)
      fail(
        `"${label('dModel')}"=${dModel} is not a multiple of "${label('heads')}"=${heads}; give "head_dim" explicitly`,
      );
    headDim = dModel / heads;
  } else headDim = positiveInt('headDim', hdRaw);
  if (headDim % 2 !== 0)
    fail(
      `field "${hdRaw === undefined ? 'head_dim' : label('headDim')}" must be even for RoPE (got ${headDim}${hdRaw === undefined ? ` = ${label('dModel')} / ${label('heads')}` : ''})`,
    );
  const dFF = positiveInt('dFF', required('dFF'));
  const vocab = positiveInt('vocab', required('vocab'));
  const ropeTheta = positiveReal('ropeTheta', required('ropeTheta'));
  const qkvBias = bool('qkvBias', false);
  const normEps = positiveReal('normEps', required('normEps'));
  const mask = required('maskTokenId');
  if (typeof mask !== 'number' || !Number.isSafeInteger(mask) || mask < 0)
    fail(`field "${label('maskTokenId')}" must be an integer >= 0 (got ${show(mask)})`);
  const maskTokenId = mask as number;
  if (maskTokenId >= vocab)
    fail(
      `field "${label('maskTokenId')}" must be < "${label('vocab')}" (got ${label('maskTokenId')}=${maskTokenId}, ${label('vocab')}=${vocab})`,
    );
  const arShift = bool('arShift', false);
  const att = get('attention') ?? 'full';
  if (typeof att !== 'string' || !(attentionKinds as readonly string[]).includes(att)) {
    const hit = typeof att === 'string' ? closest(att, attentionKinds) : undefined;
    fail(
      `field "attention" must be "full" or "block_causal" (got ${show(att)})${hit ? ` (did you mean "${hit}"?)` : ''}`,
    );
  }
  const tieEmbeddings = bool('tieEmbeddings', false);
  const qkNorm = bool('qkNorm', false);
  const alignedBlocks = bool('alignedBlocks', false);
  const limit = overLimit({ layers, dModel, heads, headDim, dFF, vocab }, (f) =>
    f === 'headDim' && hdRaw === undefined ? 'head_dim' : label(f),
  );
  if (limit !== undefined) fail(limit);

  return {
    name: name as string,
    layers,
    dModel,
    heads,
    kvHeads,
    headDim,
    dFF,
    vocab,
    ropeTheta,
    qkvBias,
    normEps,
    maskTokenId,
    arShift,
    attention: att as AttentionKind,
    tieEmbeddings,
    ...(qkNorm ? { qkNorm } : {}),
    ...(alignedBlocks ? { alignedBlocks } : {}),
  };
}

/** A config written with the canonical snake_case JSON keys (the inverse of `validateConfig`). */
export function configToJson(config: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) if (config[f] !== undefined) out[jsonKeys[f]] = config[f];
  return out;
}

/**
 * A preset name (see presets.ts) or a path to a .json file. A spec that is neither an existing
 * preset nor looks like a path (no `/`, no `.json`) is reported as an unknown preset.
 */
export function loadConfig(spec: string): ModelConfig {
  const preset = Object.hasOwn(presets, spec) ? presets[spec] : undefined;
  if (preset !== undefined) return { ...preset };
  const looksLikePath = spec.includes('/') || spec.includes('\\') || spec.toLowerCase().endsWith('.json');
  if (!looksLikePath) {
    const hit = closest(spec, presetNames);
    throw new ConfigError(
      `unknown model "${spec}": not a preset (${presetNames.join(', ')}) nor a path to a .json file${hit ? ` (did you mean "${hit}"?)` : ''}`,
    );
  }
  let text: string;
  try {
    text = readSmallFile(spec);
  } catch (e) {
    if (!(e instanceof SmallFileError)) throw e;
    const why = e.code === 'ENOENT' ? 'no such file' : e.message;
    throw new ConfigError(`${spec}: cannot read model config: ${why}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${spec}: invalid JSON: ${(e as Error).message}`);
  }
  return validateConfig(parsed, spec);
}
