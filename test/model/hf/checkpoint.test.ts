import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { ModelConfig } from '../../../src/model/config.ts';
import { openCheckpoint, weightMemory } from '../../../src/model/hf/checkpoint.ts';
import { CheckpointError } from '../../../src/model/hf/checkpointError.ts';
import type { CheckpointModel, Family } from '../../../src/model/hf/families.ts';
import { readHeader, type StoredTensor } from '../../../src/model/hf/safetensors.ts';
import { presets } from '../../../src/model/presets.ts';
import { parameterCount } from '../../../src/model/weights.ts';
import { expectThrown } from '../../support/errors.ts';
import { scratch } from './scratch.ts';
import { type RawTensor, randomTensor, type WriteOptions, writeCheckpoint } from './write.ts';

const tmp = scratch('kvplan-checkpoint-');

const tiny = presets.tiny as ModelConfig;
/** Tiny models in each family's shape; SDAR's head_dim differs from hidden / heads, as in SDAR-4B. */
const models: Record<Family, CheckpointModel> = {
  llada: { ...tiny, headDim: 8, qkNorm: false },
  dream: { ...tiny, normEps: 1e-6, arShift: true, qkNorm: false },
  sdar: {
    ...tiny,
    headDim: 16,
    qkvBias: false,
    attention: 'block_causal',
    qkNorm: true,
    alignedBlocks: true,
    blockSize: 4,
  },
  'fast-dllm-v2': {
    ...tiny,
    arShift: true,
    attention: 'block_causal',
    tieEmbeddings: true,
    qkNorm: false,
    alignedBlocks: true,
    blockSize: 8,
  },
};
const families = Object.keys(models) as Family[];

const bytesOf = (t: StoredTensor): Uint8Array =>
  new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function write(family: Family, opts: Partial<WriteOptions> = {}, model = models[family]) {
  const dir = tmp.path(`${family}-`);
  const written = writeCheckpoint(
    dir,
    family,
    { ...model, name: basename(dir) },
    { dtype: 'BF16', shards: 1, seed: 7, ...opts },
  );
  return { dir, written };
}

/** The call fails with a CheckpointError whose message contains every part; returns the message. */
const expectError = (f: () => unknown, ...parts: string[]): string =>
  expectThrown(f, CheckpointError, ...parts).message;

const layouts: [Family, WriteOptions['dtype'], number][] = families.flatMap((f) => [
  [f, 'F32', 1] as [Family, WriteOptions['dtype'], number],
  [f, 'BF16', 3] as [Family, WriteOptions['dtype'], number],
  [f, 'F16', 2] as [Family, WriteOptions['dtype'], number],
]);

describe('tiny checkpoints in each family layout open and read back bit for bit', () => {
  test.each(layouts)('%s, %s, %i file(s)', (family, dtype, shards) => {
    const { dir, written } = write(family, { dtype, shards, tokenizer: true });
    const ckpt = openCheckpoint(dir);
    expect(ckpt.family).toBe(family);
    expect(ckpt.config).toEqual({ ...models[family], name: basename(dir) });
    expect(ckpt.files).toHaveLength(shards);
    expect(ckpt.index === undefined).toBe(shards === 1);
    expect(ckpt.tokenizer).toEqual({
      json: join(dir, 'tokenizer.json'),
      config: join(dir, 'tokenizer_config.json'),
    });
    expect(ckpt.ignored).toEqual([]);
    // Every written tensor is used exactly once, and reads back as written.
    expect(new Set([...ckpt.tensors.values()].map((t) => t.name))).toEqual(new Set(written.keys()));
    for (const [canonical, info] of ckpt.tensors) {
      expect(info.canonical).toBe(canonical);
      const t = ckpt.tensor(canonical);
      expect(t.dtype).toBe(dtype);
      const w = written.get(info.name) as RawTensor;
      expect(t.shape).toEqual(w.shape);
      expect(bytesOf(t)).toEqual(w.bytes);
    }
    const count = parameterCount(models[family]);
    expect(ckpt.memory.parameters).toBe(count);
    expect(ckpt.memory.bytes).toBe(count * (dtype === 'F32' ? 4 : 2));
    expect(ckpt.memory.byDtype).toEqual({
      [dtype]: { tensors: written.size, parameters: count, bytes: ckpt.memory.bytes },
    });
  });

  test('LLaDA: kvplan names read the published tensors (gate = ff_proj, down = ff_out, head = transformer.ff_out)', () => {
    const { dir, written } = write('llada');
    const ckpt = openCheckpoint(dir);
    const pairs: [string, string][] = [
      ['model.layers.1.mlp.gate_proj.weight', 'model.transformer.blocks.1.ff_proj.weight'],
      ['model.layers.1.mlp.up_proj.weight', 'model.transformer.blocks.1.up_proj.weight'],
      ['model.layers.1.mlp.down_proj.weight', 'model.transformer.blocks.1.ff_out.weight'],
      ['model.layers.0.self_attn.o_proj.weight', 'model.transformer.blocks.0.attn_out.weight'],
      ['model.layers.0.post_attention_layernorm.weight', 'model.transformer.blocks.0.ff_norm.weight'],
      ['lm_head.weight', 'model.transformer.ff_out.weight'],
      ['model.embed_tokens.weight', 'model.transformer.wte.weight'],
    ];
    for (const [canonical, name] of pairs)
      expect(bytesOf(ckpt.tensor(canonical))).toEqual((written.get(name) as RawTensor).bytes);
  });

  test('SDAR: q_norm and k_norm are read, [headDim] each', () => {
    const { dir, written } = write('sdar');
    const ckpt = openCheckpoint(dir);
    const t = ckpt.tensor('model.layers.1.self_attn.k_norm.weight');
    expect(t.shape).toEqual([16]);
    expect(bytesOf(t)).toEqual((written.get('model.layers.1.self_attn.k_norm.weight') as RawTensor).bytes);
  });

  test('tied embeddings: no head is needed, and a stored one is listed as ignored', () => {
    const { dir } = write('fast-dllm-v2', {
      edit: (ts) => [...ts, randomTensor('lm_head.weight', 'BF16', [48, 32], 1)],
    });
    const ckpt = openCheckpoint(dir);
    expect(ckpt.tensors.has('lm_head.weight')).toBe(false);
    expect(ckpt.ignored).toEqual(['lm_head.weight']);
    expect(ckpt.memory.parameters).toBe(parameterCount(models['fast-dllm-v2']));
  });

  test('mixed stored dtypes are summarised per dtype', () => {
    const { dir } = write('dream', {
      edit: (ts) =>
        ts.map((t) => (t.name.endsWith('norm.weight') ? randomTensor(t.name, 'F32', t.shape, 3) : t)),
    });
    const { byDtype, bytes } = openCheckpoint(dir).memory;
    const norms = 2 * 2 + 1;
    expect(byDtype.F32).toEqual({ tensors: norms, parameters: norms * 32, bytes: norms * 32 * 4 });
    expect(byDtype.BF16?.tensors).toBe(27 - norms);
    expect(bytes).toBe((byDtype.F32?.bytes ?? 0) + (byDtype.BF16?.bytes ?? 0));
  });

  test('no tokenizer files: both absent', () => {
    const { dir } = write('sdar');
    expect(openCheckpoint(dir).tokenizer).toEqual({ json: undefined, config: undefined });
  });

  test('weightMemory counts from headers alone', () => {
    const { dir } = write('llada', { dtype: 'F16' });
    const tensors = [...readHeader(join(dir, 'model.safetensors')).tensors.values()];
    const m = weightMemory(tensors);
    expect(m.parameters).toBe(parameterCount(models.llada));
    expect(m.bytes).toBe(2 * m.parameters);
    expect(weightMemory([])).toEqual({ parameters: 0, bytes: 0, byDtype: {} });
  });
});

describe('checkpoints that do not match their config are refused, naming the place', () => {
  test('a missing tensor, with its expected shape', () => {
    const { dir } = write('llada', {
      edit: (ts) => ts.filter((t) => t.name !== 'model.transformer.blocks.1.up_proj.weight'),
    });
    expectError(
      () => openCheckpoint(dir),
      join(dir, 'model.safetensors'),
      join(dir, 'config.json'),
      '1 missing tensor: "model.transformer.blocks.1.up_proj.weight" [64, 32]',
    );
  });

  test('a tensor with the wrong shape', () => {
    const { dir } = write('sdar', {
      shards: 2,
      edit: (ts) =>
        ts.map((t) =>
          t.name === 'model.layers.0.self_attn.q_norm.weight' ? randomTensor(t.name, 'BF16', [8], 1) : t,
        ),
    });
    expectError(
      () => openCheckpoint(dir),
      join(dir, 'model.safetensors.index.json'),
      '1 tensor with the wrong shape: "model.layers.0.self_attn.q_norm.weight" is [8], expected [16]',
    );
  });

  test('a tensor the family does not have (a bias kvplan would silently drop)', () => {
    const { dir } = write('dream', {
      edit: (ts) => [...ts, randomTensor('model.layers.0.self_attn.o_proj.bias', 'BF16', [32], 1)],
    });
    expectError(
      () => openCheckpoint(dir),
      '1 tensor a Dream model of this config does not have: "model.layers.0.self_attn.o_proj.bias"',
    );
  });

  test('many problems: every kind reported, each list bounded', () => {
    const { dir } = write('dream', {
      edit: (ts) => [
        ...ts.filter((t) => !t.name.startsWith('model.layers.1.')),
        ...Array.from({ length: 30 }, (_, i) => randomTensor(`extra.${i}`, 'BF16', [2], i)),
      ],
    });
    const message = expectError(
      () => openCheckpoint(dir),
      '12 missing tensors',
      'and 4 more',
      '30 tensors',
      'and 22 more',
    );
    expect(message.length).toBeLessThan(1500);
  });

  test('a config claiming 10^8 layers is refused at once, before its tensors are listed', () => {
    const { dir } = write('llada');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, n_layers: 1e8 }));
    const start = performance.now();
    expectError(
      () => openCheckpoint(dir),
      join(dir, 'config.json'),
      `field "layers" is 100,000,000, above kvplan's limit of 512`,
    );
    expect(performance.now() - start).toBeLessThan(1000);
  });

  test('a config claiming a d_model within the limits but not the tensors is refused by the shapes', () => {
    const { dir } = write('sdar');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, hidden_size: 60000 }));
    expectError(() => openCheckpoint(dir), 'wrong shape', 'expected [48, 60000]');
  });

  test('a config claiming d_model 10^9 is refused by the limit, before the shapes are compared', () => {
    const { dir } = write('sdar');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, hidden_size: 1e9 }));
    expectError(
      () => openCheckpoint(dir),
      `field "d_model" is 1,000,000,000, above kvplan's limit of 65,536`,
    );
  });

  test('an unknown family, a missing key, no config.json, an index naming a missing shard, not a directory', () => {
    const a = write('sdar').dir;
    const config = JSON.parse(readFileSync(join(a, 'config.json'), 'utf8'));
    writeFileSync(
      join(a, 'config.json'),
      JSON.stringify({ ...config, model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'] }),
    );
    expectError(() => openCheckpoint(a), join(a, 'config.json'), 'unknown model family', '"qwen3"');

    delete config.block_size;
    writeFileSync(join(a, 'config.json'), JSON.stringify(config));
    expectError(() => openCheckpoint(a), join(a, 'config.json'), 'missing required key "block_size"');

    rmSync(join(a, 'config.json'));
    expectError(() => openCheckpoint(a), a, 'no config.json');

    const b = write('dream', { shards: 3 }).dir;
    rmSync(join(b, 'model-00002-of-00003.safetensors'));
    expectError(
      () => openCheckpoint(b),
      join(b, 'model.safetensors.index.json'),
      'shard "model-00002-of-00003.safetensors"',
    );

    expectError(() => openCheckpoint(join(b, 'config.json')), 'not a checkpoint directory');
  });

  test('an unsupported dtype in a shard names the shard and the tensor', () => {
    const { dir } = write('llada', {
      shards: 2,
      edit: (ts) => [...ts, randomTensor('model.transformer.blocks.0.rotary.inv_freq', 'I64', [4], 1)],
    });
    expectError(
      () => openCheckpoint(dir),
      join(dir, 'model-00002-of-00002.safetensors'),
      'tensor "model.transformer.blocks.0.rotary.inv_freq": dtype I64 is not supported',
    );
  });

  test('tensor() with a name kvplan does not use', () => {
    const { dir } = write('dream');
    expectError(
      () => openCheckpoint(dir).tensor('model.layers.0.self_attn.q_norm.weight'),
      dir,
      'no tensor kvplan calls',
    );
  });
});
