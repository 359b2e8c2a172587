import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import {
  ConfigError,
  configToJson,
  loadConfig,
  type ModelConfig,
  validateConfig,
} from '../../src/model/config.ts';
import { presetNames, presets } from '../../src/model/presets.ts';
import { parameterCount } from '../../src/model/weights.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const writeJson = (file: string, text: string): string => {
  const path = join(dir, file);
  writeFileSync(path, text);
  return path;
};

/** A valid snake_case config (the canonical JSON spelling). */
const base = (): Record<string, unknown> => ({
  name: 'm',
  layers: 2,
  d_model: 32,
  heads: 4,
  kv_heads: 2,
  head_dim: 8,
  d_ff: 64,
  vocab: 48,
  rope_theta: 10000,
  qkv_bias: true,
  norm_eps: 1e-5,
  mask_token_id: 47,
  ar_shift: false,
  attention: 'full',
  tie_embeddings: false,
});

const errorOf = (f: () => unknown): ConfigError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
};

const bad = (patch: Record<string, unknown>, drop: string[] = []): string => {
  const obj = { ...base(), ...patch };
  for (const k of drop) delete obj[k];
  return errorOf(() => validateConfig(obj, 'model.json')).message;
};

describe('presets', () => {
  test('the preset names are the five documented ones', () => {
    expect([...presetNames].sort()).toEqual([
      'dream-7b',
      'fast-dllm-v2-1.5b',
      'llada-8b',
      'sdar-1.7b',
      'sdar-8b',
      'small',
      'tiny',
    ]);
  });

  test.each([...presetNames])('preset %s validates to itself, by name and through its JSON form', (name) => {
    const p = presets[name] as ModelConfig;
    expect(p.name).toBe(name);
    expect(validateConfig(p, name)).toEqual(p);
    expect(validateConfig(JSON.parse(JSON.stringify(configToJson(p))), name)).toEqual(p);
    expect(loadConfig(name)).toEqual(p);
  });

  test('loadConfig returns a copy; presets are frozen', () => {
    const c = loadConfig('tiny');
    c.layers = 99;
    expect(presets.tiny?.layers).toBe(2);
    expect(Object.isFrozen(presets.tiny)).toBe(true);
  });

  test('real presets have the published parameter counts', () => {
    // Qwen2.5-7B (Dream-v0's base) has 7,615,616,512 parameters, Q/K/V biases included.
    expect(parameterCount(presets['dream-7b'] as ModelConfig)).toBe(7_615_616_512);
    // Qwen3-8B has 8,190,735,360, its 36 x 2 x 128 q_norm / k_norm weights included.
    expect(parameterCount(presets['sdar-8b'] as ModelConfig)).toBe(8_190_735_360);
    // LLaDA-8B: "8B" (8.02e9) on its model card.
    expect(parameterCount(presets['llada-8b'] as ModelConfig)).toBe(8_015_581_184);
  });

  test('model families: GQA, bias, AR shift and block-causal attention where published', () => {
    const { 'llada-8b': llada, 'dream-7b': dream, 'sdar-8b': sdar, tiny } = presets;
    expect([llada?.kvHeads, llada?.qkvBias, llada?.arShift, llada?.attention]).toEqual([
      32,
      false,
      false,
      'full',
    ]);
    expect([dream?.kvHeads, dream?.qkvBias, dream?.arShift, dream?.attention]).toEqual([
      4,
      true,
      true,
      'full',
    ]);
    expect([sdar?.kvHeads, sdar?.qkvBias, sdar?.arShift, sdar?.attention]).toEqual([
      8,
      false,
      false,
      'block_causal',
    ]);
    expect([tiny?.heads, tiny?.kvHeads, tiny?.qkvBias]).toEqual([4, 2, true]);
  });
});

describe('loading JSON files', () => {
  test('snake_case keys load (the canonical spelling)', () => {
    const path = writeJson('snake.json', JSON.stringify(base()));
    expect(loadConfig(path)).toEqual({
      name: 'm',
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
    });
  });

  test('camelCase keys are accepted too, and equal the snake_case reading', () => {
    const camel = { ...presets.tiny };
    const path = writeJson('camel.json', JSON.stringify(camel));
    expect(loadConfig(path)).toEqual(presets.tiny);
  });

  test('optional fields take their defaults; the name defaults to the file name', () => {
    const path = writeJson(
      'minimal-model.json',
      JSON.stringify({
        layers: 1,
        d_model: 16,
        heads: 2,
        d_ff: 32,
        vocab: 10,
        rope_theta: 10000,
        norm_eps: 1e-6,
        mask_token_id: 9,
      }),
    );
    const c = loadConfig(path);
    expect(c).toMatchObject({
      name: 'minimal-model',
      kvHeads: 2,
      headDim: 8,
      qkvBias: false,
      arShift: false,
      attention: 'full',
      tieEmbeddings: false,
    });
  });

  test('a missing file names the path', () => {
    const path = join(dir, 'nope.json');
    const e = errorOf(() => loadConfig(path));
    expect(e.message).toBe(`${path}: cannot read model config: no such file`);
  });

  test('a directory is not a config file', () => {
    const sub = join(dir, 'adir.json');
    mkdirSync(sub);
    expect(errorOf(() => loadConfig(sub)).message).toBe(`${sub}: cannot read model config: is a directory`);
  });

  test('bad JSON gives the parser message and the path', () => {
    const path = writeJson('broken.json', '{"layers": 2,');
    const e = errorOf(() => loadConfig(path));
    expect(e.message).toMatch(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: invalid JSON: `));
    expect(e.message).toMatch(/JSON/);
  });

  test('field errors from a file name the file', () => {
    const path = writeJson('gqa.json', JSON.stringify({ ...base(), heads: 28, kv_heads: 5, d_model: 140 }));
    expect(errorOf(() => loadConfig(path)).message).toBe(
      `${path}: field "kv_heads" must divide "heads" (got heads=28, kv_heads=5)`,
    );
  });

  test('an unknown preset name suggests the closest preset', () => {
    const e = errorOf(() => loadConfig('llada-7b'));
    expect(e.message).toMatch(
      /^unknown model "llada-7b": not a preset \(llada-8b, dream-7b, sdar-8b, sdar-1\.7b, fast-dllm-v2-1\.5b, tiny, small\)/,
    );
    expect(e.message).toContain('did you mean "llada-8b"?');
    // Inherited object properties are not presets.
    expect(errorOf(() => loadConfig('toString')).message).toMatch(/^unknown model "toString"/);
  });
});

describe('field validation', () => {
  test('the error example of the brief, with camelCase keys', () => {
    const obj = { ...presets.tiny, heads: 28, kvHeads: 5 };
    expect(errorOf(() => validateConfig(obj, 'model.json')).message).toBe(
      'model.json: field "kvHeads" must divide "heads" (got heads=28, kvHeads=5)',
    );
  });

  test('wrong types', () => {
    expect(bad({ layers: '2' })).toBe('model.json: field "layers" must be a positive integer (got "2")');
    expect(bad({ qkv_bias: 1 })).toBe('model.json: field "qkv_bias" must be true or false (got 1)');
    expect(bad({ rope_theta: 'big' })).toBe(
      'model.json: field "rope_theta" must be a finite number > 0 (got "big")',
    );
    expect(bad({ name: 3 })).toBe('model.json: field "name" must be a non-empty string (got 3)');
    expect(bad({ name: '  ' })).toBe('model.json: field "name" must be a non-empty string (got "  ")');
    expect(bad({ d_ff: null })).toBe('model.json: field "d_ff" must be a positive integer (got null)');
    expect(bad({ vocab: [48] })).toBe('model.json: field "vocab" must be a positive integer (got an array)');
  });

  test('integers must be positive integers', () => {
    expect(bad({ d_model: 0 })).toBe('model.json: field "d_model" must be a positive integer (got 0)');
    expect(bad({ heads: -4 })).toBe('model.json: field "heads" must be a positive integer (got -4)');
    expect(bad({ layers: 2.5 })).toBe('model.json: field "layers" must be a positive integer (got 2.5)');
    expect(bad({ vocab: 2 ** 60 })).toMatch(/field "vocab" must be a positive integer/);
  });

  test('real numbers must be finite and positive', () => {
    expect(bad({ norm_eps: 0 })).toBe('model.json: field "norm_eps" must be a finite number > 0 (got 0)');
    expect(bad({ rope_theta: -1 })).toBe(
      'model.json: field "rope_theta" must be a finite number > 0 (got -1)',
    );
  });

  test('head_dim must be even for RoPE, given or derived', () => {
    expect(bad({ head_dim: 7 })).toBe('model.json: field "head_dim" must be even for RoPE (got 7)');
    expect(bad({ d_model: 12, heads: 4, kv_heads: 4 }, ['head_dim'])).toBe(
      'model.json: field "head_dim" must be even for RoPE (got 3 = d_model / heads)',
    );
    expect(bad({ d_model: 30 }, ['head_dim'])).toBe(
      'model.json: "d_model"=30 is not a multiple of "heads"=4; give "head_dim" explicitly',
    );
  });

  test('the mask token must be in the vocabulary', () => {
    expect(bad({ mask_token_id: 48 })).toBe(
      'model.json: field "mask_token_id" must be < "vocab" (got mask_token_id=48, vocab=48)',
    );
    expect(bad({ mask_token_id: -1 })).toBe(
      'model.json: field "mask_token_id" must be an integer >= 0 (got -1)',
    );
  });

  test('attention must be full or block_causal, with a suggestion', () => {
    expect(bad({ attention: 'block-causal' })).toBe(
      'model.json: field "attention" must be "full" or "block_causal" (got "block-causal") (did you mean "block_causal"?)',
    );
    expect(bad({ attention: 'causal' })).toMatch(
      /field "attention" must be "full" or "block_causal" \(got "causal"\)/,
    );
  });

  test('missing required fields', () => {
    for (const key of [
      'layers',
      'd_model',
      'heads',
      'd_ff',
      'vocab',
      'rope_theta',
      'norm_eps',
      'mask_token_id',
    ])
      expect(bad({}, [key])).toBe(`model.json: missing required field "${key}"`);
  });

  test('unknown keys, with did-you-mean and Hugging Face hints', () => {
    expect(bad({ kv_head: 2 }, ['kv_heads'])).toBe(
      'model.json: unknown field "kv_head" (did you mean "kv_heads"?)',
    );
    expect(bad({ rope_thetta: 1 }, ['rope_theta'])).toBe(
      'model.json: unknown field "rope_thetta" (did you mean "rope_theta"?)',
    );
    expect(bad({ zzzzzz: 1 })).toBe('model.json: unknown field "zzzzzz"');
    expect(bad({ hidden_size: 32 }, ['d_model'])).toBe(
      'model.json: unknown field "hidden_size" (a Hugging Face key; kvplan calls it "d_model")',
    );
  });

  test('the same field in both spellings is an error', () => {
    expect(bad({ dModel: 32 })).toBe(
      'model.json: field "d_model" is given twice (as "d_model" and "dModel")',
    );
  });

  test('the top level must be an object', () => {
    expect(errorOf(() => validateConfig([1, 2], 'x.json')).message).toBe(
      'x.json: a model config must be a JSON object, got an array',
    );
    expect(errorOf(() => validateConfig(null, 'x.json')).message).toBe(
      'x.json: a model config must be a JSON object, got null',
    );
    expect(errorOf(() => validateConfig(3, 'x.json')).message).toBe(
      'x.json: a model config must be a JSON object, got 3',
    );
  });

  test('ConfigError is an Error with its own name', () => {
    const e = errorOf(() => validateConfig({}, 'x.json'));
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('ConfigError');
  });
});
