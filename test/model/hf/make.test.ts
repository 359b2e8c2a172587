// `make-model --format hf` and src/model/hf/write.ts: random checkpoints in each family's layout
// open, load, tokenize and generate; config.json is the inverse of describeConfig; bf16 / f16 are
// the float32 values rounded to nearest even; sharding follows save_pretrained; bad requests are
// refused before anything is written. The layouts are checked against test/model/hf/write.ts and
// published.ts, which are written independently of src/model/hf.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fc, test as propTest } from '@fast-check/vitest';
import { beforeAll, describe, expect, test } from 'vitest';
import { parseByteSize } from '../../../src/cli/byteSize.ts';
import { familyTokenizer, writeTokenizerFiles } from '../../../src/model/hf/bpe.ts';
import { openCheckpoint } from '../../../src/model/hf/checkpoint.ts';
import { type CheckpointModel, describeConfig, type Family } from '../../../src/model/hf/families.ts';
import { loadCheckpointModel } from '../../../src/model/hf/load.ts';
import {
  bf16ToFloat32,
  f16ToFloat32,
  readHeader,
  readTensor,
  type StoredDtype,
} from '../../../src/model/hf/safetensors.ts';
import { loadTokenizer } from '../../../src/model/hf/tokenizer.ts';
import {
  asFamilyModel,
  CheckpointWriteError,
  checkWritable,
  float32ToBf16,
  float32ToF16,
  hfConfigJson,
  inexpressible,
  smallShape,
  writeCheckpoint,
} from '../../../src/model/hf/write.ts';
import { presets } from '../../../src/model/presets.ts';
import { floatsOf, randomWeights, type Tensor } from '../../../src/model/weights.ts';
import { runCli } from '../../support/cli.ts';
import { expectThrown } from '../../support/errors.ts';
import { published } from './published.ts';
import { scratch } from './scratch.ts';
import { familyTensors } from './write.ts';

const tmp = scratch('kvplan-make-');
const families: Family[] = ['llada', 'dream', 'sdar', 'fast-dllm-v2'];

/** Runs make-model --format hf into a new directory; returns it and the run. */
async function make(args: string[], dir = tmp.path('m')) {
  const run = await runCli(['make-model', '--format', 'hf', '-o', dir, ...args]);
  return { dir, ...run };
}

// -------------------------------------------------------------------------------------------------
// Rounding: an independent definition (the nearest representable value, ties to the even pattern)
// checked with the exact decoders of safetensors.ts, which are tested on all 65,536 patterns.
// -------------------------------------------------------------------------------------------------

const all16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
const decoded: Record<'BF16' | 'F16', Float32Array> = {
  BF16: bf16ToFloat32(all16),
  F16: f16ToFloat32(all16),
};
/** The magnitude pattern of infinity, and the value it stands for when rounding (the next power of two). */
const infinity = { BF16: [0x7f80, 2 ** 128], F16: [0x7c00, 2 ** 16] } as const;

/** Why `r` is not `x` rounded to nearest even in `fmt`, or undefined when it is. */
function misrounded(x: number, r: number, fmt: 'BF16' | 'F16'): string | undefined {
  const [infBits, infValue] = infinity[fmt];
  if (Number.isNaN(x)) return (r & 0x7fff) > infBits ? undefined : `NaN gave ${r.toString(16)}`;
  const negative = x < 0 || Object.is(x, -0);
  if (((r & 0x8000) !== 0) !== negative) return `${x} gave the sign bit of ${r.toString(16)}`;
  const mag = r & 0x7fff;
  if (mag > infBits) return `${x} gave NaN`;
  const value = (m: number): number => (m === infBits ? infValue : (decoded[fmt][m] as number));
  const ax = Math.abs(x);
  const d = Math.abs(ax - value(mag));
  for (const n of [mag - 1, mag + 1]) {
    if (n < 0 || n > infBits) continue;
    const dn = Math.abs(ax - value(n));
    if (dn < d || (dn === d && (mag & 1) === 1))
      return `${x} gave ${value(mag)} (${r.toString(16)}), but ${value(n)} is nearer or even`;
  }
  return undefined;
}

function expectRounded(xs: Float32Array, bits: Uint16Array, fmt: 'BF16' | 'F16'): void {
  const bad: string[] = [];
  for (let i = 0; i < xs.length && bad.length < 5; i++) {
    const why = misrounded(xs[i] as number, bits[i] as number, fmt);
    if (why !== undefined) bad.push(`[${i}] ${why}`);
  }
  expect(bad).toEqual([]);
}

describe('float32 → bf16 / f16, round to nearest even', () => {
  test('exact values, midpoints and their neighbours of every 16-bit pattern, and random float32s', () => {
    const xs: number[] = [];
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    const push = (bits: number) => {
      u[0] = bits >>> 0;
      xs.push(f[0] as number);
    };
    for (let b = 0; b < 65536; b++) {
      // bf16: the pattern itself, the midpoint to the next, and one float32 ulp either side of it.
      for (const low of [0, 0x7fff, 0x8000, 0x8001]) push((b << 16) | low);
      // f16: the value, and the midpoint to the next magnitude (exact in float32).
      const v = decoded.F16[b] as number;
      xs.push(v);
      const next = decoded.F16[(b & 0x8000) | ((b & 0x7fff) + 1)];
      if (Number.isFinite(v) && next !== undefined && Number.isFinite(next)) {
        const mid = (v + next) / 2;
        expect(Math.fround(mid)).toBe(mid);
        xs.push(mid, Math.fround(mid * (1 + 2 ** -20)), Math.fround(mid * (1 - 2 ** -20)));
      }
    }
    let s = 7;
    for (let i = 0; i < 200_000; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      push(s);
    }
    // Overflow: halfway to the next power of two rounds up (ties to even) to infinity.
    xs.push(65504, 65519.99, 65520, 1e6, -65520, 3.3895313892515355e38, 3.4e38, Number.MAX_VALUE);
    const floats = Float32Array.from(xs);
    expectRounded(floats, float32ToBf16(floats), 'BF16');
    expectRounded(floats, float32ToF16(floats), 'F16');
    expect(float32ToF16(Float32Array.of(65520, 65519.99, 2 ** -25, 2 ** -25 * 1.01))).toEqual(
      Uint16Array.of(0x7c00, 0x7bff, 0, 1),
    );
    expect(float32ToBf16(Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, Number.NaN))).toEqual(
      Uint16Array.of(0x3f80, 0x3f82, 0x7fc0),
    );
  });

  test('the checker catches a rounding that is not to nearest even', () => {
    expect(misrounded(1 + 2 ** -8, 0x3f81, 'BF16')).toBeDefined(); // the tie went to the odd pattern
    expect(misrounded(1.3, 0x3fa7, 'BF16')).toBeDefined(); // truncated, not rounded (1.3 → 0x3fa6)
    expect(misrounded(1.3, 0x3fa6, 'BF16')).toBeUndefined();
    expect(misrounded(65520, 0x7bff, 'F16')).toBeDefined();
  });
});

// -------------------------------------------------------------------------------------------------
// config.json is the inverse of describeConfig
// -------------------------------------------------------------------------------------------------

const even = fc.integer({ min: 1, max: 128 }).map((n) => 2 * n);
const positive = fc.double({ min: 1e-9, max: 1e9, noNaN: true, noDefaultInfinity: true });

/** A shape each family can express, as describeConfig describes it. */
function shapeArb(family: Family): fc.Arbitrary<CheckpointModel> {
  return fc
    .record({
      layers: fc.integer({ min: 1, max: 200 }),
      kvHeads: fc.integer({ min: 1, max: 8 }),
      group: fc.integer({ min: 1, max: 8 }),
      headDim: even,
      dModel: fc.integer({ min: 1, max: 8192 }),
      dFF: fc.integer({ min: 1, max: 50000 }),
      vocab: fc.integer({ min: 1, max: 300000 }),
      mask: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      ropeTheta: positive,
      normEps: positive,
      tie: fc.boolean(),
      qkvBias: fc.boolean(),
      blockSize: fc.integer({ min: 1, max: 512 }),
      derived: fc.boolean(),
    })
    .map((r) => {
      const heads = r.kvHeads * r.group;
      const derivedDim = family === 'llada' || family === 'dream' || (family === 'fast-dllm-v2' && r.derived);
      const common = {
        name: 'm',
        layers: r.layers,
        dModel: derivedDim ? heads * r.headDim : r.dModel,
        heads,
        kvHeads: r.kvHeads,
        headDim: r.headDim,
        dFF: r.dFF,
        vocab: r.vocab,
        ropeTheta: r.ropeTheta,
        normEps: r.normEps,
        maskTokenId: Math.floor(r.mask * r.vocab),
        tieEmbeddings: r.tie,
      };
      const byFamily: Record<Family, CheckpointModel> = {
        llada: { ...common, qkvBias: r.qkvBias, arShift: false, attention: 'full', qkNorm: false },
        dream: { ...common, qkvBias: true, arShift: true, attention: 'full', qkNorm: false },
        sdar: {
          ...common,
          qkvBias: false,
          arShift: false,
          attention: 'block_causal',
          qkNorm: true,
          alignedBlocks: true,
          blockSize: r.blockSize,
        },
        'fast-dllm-v2': {
          ...common,
          qkvBias: true,
          arShift: true,
          attention: 'block_causal',
          qkNorm: false,
          alignedBlocks: true,
          blockSize: r.blockSize,
        },
      };
      return byFamily[family];
    });
}

describe('config.json', () => {
  for (const family of families)
    propTest.prop([shapeArb(family), fc.constantFrom<StoredDtype>('F32', 'BF16', 'F16')], { numRuns: 200 })(
      `${family}: describeConfig(config.json written for a shape) is the shape`,
      (m, dtype) => {
        const json = JSON.parse(JSON.stringify(hfConfigJson(family, m, dtype)));
        const back = describeConfig(json, 'config.json', 'm');
        expect(back.family).toBe(family);
        expect(back.config).toEqual(m);
        expect(inexpressible(family, m)).toEqual([]);
        expect(asFamilyModel(family, m)).toEqual(m);
      },
    );

  test('the keys match the published configs of each family', () => {
    for (const family of families) {
      const m = asFamilyModel(family, smallShape(family));
      const json = hfConfigJson(family, m, 'BF16');
      // Every key also in the family's published config.json has the published value, except the
      // shape, token ids and dtype-independent bookkeeping, which are the model's own.
      const own = new Set([
        ...[
          'd_model',
          'n_heads',
          'n_kv_heads',
          'n_layers',
          'mlp_hidden_size',
          'embedding_size',
          'vocab_size',
        ],
        ...['hidden_size', 'num_attention_heads', 'num_key_value_heads', 'num_hidden_layers'],
        ...['intermediate_size', 'max_window_layers', 'head_dim', 'rope_theta', 'rms_norm_eps'],
        ...['mask_token_id', 'bos_token_id', 'eos_token_id', 'pad_token_id', 'tie_word_embeddings'],
        ...[
          'weight_tying',
          'block_size',
          'bd_size',
          'use_cache',
          'sliding_window',
          'max_position_embeddings',
        ],
      ]);
      const differ = Object.keys(json).filter(
        (k) =>
          Object.hasOwn(published[family], k) &&
          !own.has(k) &&
          JSON.stringify(json[k]) !== JSON.stringify(published[family][k]),
      );
      expect(differ, family).toEqual([]);
      expect(json.torch_dtype).toBe('bfloat16');
      // Sorted, as transformers writes it.
      expect(Object.keys(json)).toEqual(Object.keys(json).sort());
    }
  });

  test('a shape a family cannot express is refused field by field', () => {
    const sdar = presets['sdar-1.7b'] as (typeof presets)[string];
    const err = expectThrown(
      () => asFamilyModel('llada', sdar),
      CheckpointWriteError,
      'cannot be written as a LLaDA checkpoint',
      'qk_norm is true, but a LLaDA checkpoint has false',
      'attention is "block_causal", but a LLaDA checkpoint has "full"',
    );
    expect(err.message).not.toContain('vocab');
    expect(
      inexpressible('dream', { ...asFamilyModel('dream', smallShape('dream')), qkvBias: false }),
    ).toEqual(['qkv_bias is false, but a Dream checkpoint has true']);
    // Dream derives head_dim from hidden_size / heads.
    expect(inexpressible('dream', { ...asFamilyModel('dream', smallShape('dream')), headDim: 32 })).toEqual([
      'head_dim is 32, but a Dream checkpoint has 16',
    ]);
    expect(inexpressible('llada', { ...asFamilyModel('llada', smallShape('llada')), blockSize: 4 })).toEqual([
      'block_size is 4, but a LLaDA checkpoint has none',
    ]);
  });
});

// -------------------------------------------------------------------------------------------------
// Each family, through the CLI
// -------------------------------------------------------------------------------------------------

const made = new Map<Family, string>();

beforeAll(async () => {
  for (const family of families) {
    const run = await make(['--family', family, '--seed', '5']);
    if (run.code !== 0) throw new Error(run.stderr);
    made.set(family, run.dir);
  }
});

const dirOf = (f: Family): string => made.get(f) as string;

describe('make-model --format hf: each family', () => {
  test.each(families)('%s: the layout, config and tensors open and load', (family) => {
    const dir = dirOf(family);
    expect(readdirSync(dir).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const ckpt = openCheckpoint(dir);
    expect(ckpt.family).toBe(family);
    expect(ckpt.config).toEqual(asFamilyModel(family, { ...smallShape(family), name: basename(dir) }));
    expect(ckpt.index).toBeUndefined();
    expect(ckpt.memory.byDtype.BF16?.tensors).toBe(ckpt.tensors.size);
    // The names and shapes are the ones the family's code gives (test/model/hf/write.ts).
    const header = readHeader(join(dir, 'model.safetensors'));
    const expected = familyTensors(family, ckpt.config).map((t) => [t.name, t.shape]);
    expect([...header.tensors.values()].map((t) => [t.name, t.shape]).sort()).toEqual(expected.sort());
    // Data sorted by name, as the safetensors writer lays it out; metadata format pt.
    const names = [...header.tensors.keys()];
    expect(names).toEqual([...names].sort());
    expect(header.metadata).toEqual({ format: 'pt' });

    const { config, weights } = loadCheckpointModel(dir);
    expect(config.layers).toBe(2);
    expect(weights.size).toBe(ckpt.tensors.size);
  });

  test.each(families)('%s: the tokenizer loads and round-trips text', (family) => {
    const dir = dirOf(family);
    const { config } = openCheckpoint(dir);
    const tok = loadTokenizer(dir);
    expect(tok.maskSource).toBe('config.json');
    expect(tok.maskTokenId).toBe(config.maskTokenId);
    const maskName = {
      llada: '<|mdm_mask|>',
      dream: '<|mask|>',
      sdar: '<|MASK|>',
      'fast-dllm-v2': '|<MASK>|',
    };
    expect(tok.maskToken).toBe(maskName[family]);
    expect(tok.vocabSize).toBe(config.vocab);
    const qwen = family !== 'llada';
    for (const text of ['Hello, world! The answer is 42.', 'naïve café — 東京 🦊\n\ttabs', '']) {
      const ids = tok.encode(text);
      expect(tok.decode(ids)).toBe(qwen ? text.normalize('NFC') : text);
      for (const id of ids) expect(id).toBeLessThan(config.vocab);
    }
    // Merges were learned: a frequent word is one token.
    expect(tok.encode(' the')).toHaveLength(1);
    const chat = tok.applyChatTemplate([{ role: 'user', content: 'hi' }]);
    expect(chat).toBe(
      qwen
        ? '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n'
        : '<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    const eos = {
      llada: '<|eot_id|>',
      dream: '<|endoftext|>',
      sdar: '<|im_end|>',
      'fast-dllm-v2': '<|im_end|>',
    };
    expect(tok.decode([tok.eosTokenId as number])).toBe(eos[family]);
    // config.json's token ids are tokens of the tokenizer.
    const json = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(tok.decode([json.eos_token_id])).toMatch(/^<\|(endoftext|im_end)\|>$/);
  });

  test.each(families)('%s: generate --prompt runs on the reference backend', async (family) => {
    const mask = family === 'sdar' || family === 'fast-dllm-v2' ? ' mask block_causal' : '';
    const shift = family === 'dream' || family === 'fast-dllm-v2' ? ' ar_shift' : '';
    const plan = `${tmp.path('plan')}.kvp`;
    writeFileSync(
      plan,
      `plan exact() {\n  blocks 4\n  compute all\n  attend all${mask}\n  decode steps(4) by confidence in current_block${shift}\n}\n`,
    );
    const run = await runCli([
      'generate',
      '--model',
      dirOf(family),
      '--plan',
      plan,
      '--prompt',
      'Hello world',
      '--gen-length',
      '4',
      '--backend',
      'reference',
    ]);
    expect(run.stderr).toMatch(/4 tokens in 4 steps, [\d.]+ tokens\/s \(reference\)/);
    expect(run.code).toBe(0);
    expect(run.stdout.endsWith('\n')).toBe(true);
  });

  test('stderr lists the files, their sizes, the parameters and the tokenizer', async () => {
    const run = await make(['--family', 'sdar']);
    expect(run.code).toBe(0);
    const m = asFamilyModel('sdar', smallShape('sdar'));
    expect(run.stderr).toContain(
      `wrote ${run.dir}: SDAR checkpoint, BF16, 2 layers, d_model 64, vocab 512, seed 1`,
    );
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
      expect(run.stderr).toMatch(new RegExp(`\\n  ${f.replace('.', '\\.')} +[\\d,]+ bytes\\n`));
    const params = loadCheckpointModel(run.dir).checkpoint.memory.parameters;
    expect(run.stderr).toContain(`${params.toLocaleString('en-US')} parameters in 25 tensors`);
    expect(run.stderr).toMatch(/special tokens \(mask 496\)/);
    expect(m.maskTokenId).toBe(496);
  });
});

// -------------------------------------------------------------------------------------------------
// Values
// -------------------------------------------------------------------------------------------------

/** Every tensor of a checkpoint in its stored form, by checkpoint name. */
function rawTensors(dir: string) {
  const ckpt = openCheckpoint(dir);
  return new Map([...ckpt.tensors.values()].map((t) => [t.name, readTensor(t)]));
}

describe('values', () => {
  test.each(families)('%s: bf16 and f16 tensors are the f32 ones rounded to nearest even', async (family) => {
    const f32 = await make(['--family', family, '--seed', '5', '--dtype', 'f32']);
    const f16 = await make(['--family', family, '--seed', '5', '--dtype', 'f16']);
    expect(f32.code).toBe(0);
    expect(f16.code).toBe(0);
    const wide = rawTensors(f32.dir);
    const bf = rawTensors(dirOf(family)); // --dtype bf16 is the default
    const half = rawTensors(f16.dir);
    expect([...bf.keys()].sort()).toEqual([...wide.keys()].sort());
    for (const [name, t] of wide) {
      expect(t.dtype).toBe('F32');
      expect(bf.get(name)?.dtype).toBe('BF16');
      expectRounded(t.data as Float32Array, bf.get(name)?.data as Uint16Array, 'BF16');
      expectRounded(t.data as Float32Array, half.get(name)?.data as Uint16Array, 'F16');
    }
  });

  test('the distribution of randomWeights: embeddings N(0,1), linear N(0,1/fan_in), norms 1+N(0,0.1²), biases N(0,0.1²)', () => {
    const { weights } = loadCheckpointModel(dirOf('dream'));
    const stats = (name: string) => {
      const d = Array.from(floatsOf(weights.get(name) as Tensor));
      const mean = d.reduce((a, b) => a + b, 0) / d.length;
      const sd = Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / d.length);
      return { mean, sd };
    };
    const embed = stats('model.embed_tokens.weight'); // 32,768 values
    expect(Math.abs(embed.mean)).toBeLessThan(0.03);
    expect(Math.abs(embed.sd - 1)).toBeLessThan(0.03);
    const q = stats('model.layers.0.self_attn.q_proj.weight'); // [64, 64]: fan_in 64
    expect(Math.abs(q.sd * 8 - 1)).toBeLessThan(0.06);
    const down = stats('model.layers.1.mlp.down_proj.weight'); // [64, 128]: fan_in 128
    expect(Math.abs(down.sd * Math.sqrt(128) - 1)).toBeLessThan(0.06);
    const norm = stats('model.layers.0.input_layernorm.weight'); // [64]
    expect(Math.abs(norm.mean - 1)).toBeLessThan(0.05);
    expect(norm.sd).toBeGreaterThan(0.06);
    expect(norm.sd).toBeLessThan(0.14);
    const bias = stats('model.layers.0.self_attn.q_proj.bias');
    expect(Math.abs(bias.mean)).toBeLessThan(0.05);
    expect(bias.sd).toBeGreaterThan(0.06);
    expect(bias.sd).toBeLessThan(0.14);
  });

  test('deterministic from the seed, per tensor: more layers leave the others unchanged', () => {
    const m = asFamilyModel('sdar', smallShape('sdar'));
    const write = (model: CheckpointModel, seed: number) => {
      const dir = tmp.path('seed');
      writeCheckpoint(dir, 'sdar', model, { seed }, { dtype: 'BF16' });
      return rawTensors(dir);
    };
    const a = write(m, 9);
    const again = write(m, 9);
    const deeper = write({ ...m, layers: 3 }, 9);
    const other = write(m, 10);
    for (const [name, t] of a) {
      expect(again.get(name)?.data, name).toEqual(t.data);
      expect(deeper.get(name)?.data, name).toEqual(t.data);
      expect(other.get(name)?.data, name).not.toEqual(t.data);
    }
    expect(deeper.has('model.layers.2.self_attn.q_norm.weight')).toBe(true);
  });

  test('given weights are written exactly (f32) and rounded (bf16), across several chunks', () => {
    // The embedding has 2100 × 512 = 1,075,200 values: more than one 2^20-value chunk.
    const m = asFamilyModel('llada', {
      ...smallShape('llada'),
      name: 'wide',
      layers: 1,
      dModel: 512,
      heads: 4,
      kvHeads: 4,
      headDim: 128,
      dFF: 64,
      vocab: 2100,
      maskTokenId: 2099,
    });
    const given = randomWeights(m, 3);
    const f32 = tmp.path('given');
    writeCheckpoint(f32, 'llada', m, { weights: given }, { dtype: 'F32' });
    const { weights } = loadCheckpointModel(f32);
    for (const [name, t] of given)
      expect(floatsOf(weights.get(name) as Tensor), name).toEqual(Float32Array.from(floatsOf(t)));
    const bf = tmp.path('given');
    writeCheckpoint(bf, 'llada', m, { weights: given }, { dtype: 'BF16' });
    const embed = openCheckpoint(bf).tensor('model.embed_tokens.weight');
    expect(embed.data.length).toBeGreaterThan(2 ** 20);
    expectRounded(
      Float32Array.from(given.get('model.embed_tokens.weight')?.data ?? []),
      embed.data as Uint16Array,
      'BF16',
    );
  });
});

// -------------------------------------------------------------------------------------------------
// Sharding
// -------------------------------------------------------------------------------------------------

/**
 * Checks the shards of a checkpoint against transformers' rule, stated as properties: each shard
 * holds a run of tensors in module order (test/model/hf/write.ts's order), at most `limit` bytes
 * of data unless it holds a single tensor, and the next shard's first tensor would not have fitted.
 * Returns the shard files in order.
 */
function checkShards(dir: string, family: Family, limit: number): string[] {
  const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
  const n = files.length;
  expect(files).toEqual(
    Array.from(
      { length: n },
      (_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`,
    ),
  );
  const headers = files.map((f) => readHeader(join(dir, f)));
  const where = new Map<string, number>();
  const size = new Map<string, number>();
  headers.forEach((h, i) => {
    for (const t of h.tensors.values()) {
      where.set(t.name, i);
      size.set(t.name, t.byteLength);
    }
  });
  expect(index.weight_map).toEqual(Object.fromEntries([...where].map(([name, i]) => [name, files[i]])));
  expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort());
  expect(index.metadata.total_size).toBe([...size.values()].reduce((a, b) => a + b, 0));
  const order = familyTensors(family, openCheckpoint(dir).config).map((t) => t.name);
  expect(order.map((name) => where.get(name))).toEqual(
    [...order.map((name) => where.get(name) as number)].sort((a, b) => a - b),
  );
  const data = headers.map((h) => [...h.tensors.values()].reduce((a, t) => a + t.byteLength, 0));
  headers.forEach((h, i) => {
    if (h.tensors.size > 1) expect(data[i]).toBeLessThanOrEqual(limit);
    const next = order.find((name) => where.get(name) === i + 1);
    if (next !== undefined) expect((data[i] as number) + (size.get(next) as number)).toBeGreaterThan(limit);
  });
  return files;
}

describe('sharding', () => {
  test('model-0000i-of-0000n files in module order, under the shard size, with a correct index', async () => {
    const run = await make(['--family', 'dream', '--seed', '5', '--shard-size', '100KB']);
    expect(run.code).toBe(0);
    const files = readdirSync(run.dir).filter((f) => f.endsWith('.safetensors'));
    expect(files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
    ]);
    expect(existsSync(join(run.dir, 'model.safetensors'))).toBe(false);
    expect(checkShards(run.dir, 'dream', 100_000)).toEqual(files);
    const index = JSON.parse(readFileSync(join(run.dir, 'model.safetensors.index.json'), 'utf8'));
    // Module order: the embedding opens the first shard, the output head closes the last.
    expect(index.weight_map['model.embed_tokens.weight']).toBe(files[0]);
    expect(index.weight_map['lm_head.weight']).toBe(files[2]);
    expect(index.weight_map['model.layers.0.self_attn.q_proj.weight']).toBe(files[0]);
    expect(index.weight_map['model.layers.1.mlp.down_proj.weight']).toBe(files[2]);
    // The values do not depend on the sharding.
    const sharded = loadCheckpointModel(run.dir);
    expect(sharded.checkpoint.index).toBe(join(run.dir, 'model.safetensors.index.json'));
    const single = loadCheckpointModel(dirOf('dream'));
    for (const [name, t] of single.weights)
      expect(floatsOf(sharded.weights.get(name) as Tensor), name).toEqual(floatsOf(t));
  });

  test('a tensor larger than the shard size gets a shard of its own', async () => {
    // bf16 LLaDA small: the embedding is 65,536 bytes, a projection 8,192 or 16,384, a norm 128.
    const run = await make(['--family', 'llada', '--shard-size', '20000']);
    expect(run.code).toBe(0);
    const files = checkShards(run.dir, 'llada', 20000);
    const index = JSON.parse(readFileSync(join(run.dir, 'model.safetensors.index.json'), 'utf8'));
    const first = Object.keys(index.weight_map).filter((k) => index.weight_map[k] === files[0]);
    expect(first).toEqual(['model.transformer.wte.weight']);
    // attn_norm, q_proj and k_proj fit together (16,512 bytes); v_proj would not.
    expect(index.weight_map['model.transformer.blocks.0.attn_norm.weight']).toBe(files[1]);
    expect(index.weight_map['model.transformer.blocks.0.k_proj.weight']).toBe(files[1]);
    expect(index.weight_map['model.transformer.blocks.0.v_proj.weight']).toBe(files[2]);
    expect(loadCheckpointModel(run.dir).weights.size).toBe(21);
  });

  test('--shard-size sizes', () => {
    expect(parseByteSize('2GB')).toBe(2e9);
    expect(parseByteSize('500MiB')).toBe(500 * 2 ** 20);
    expect(parseByteSize('1.5 gb')).toBe(1.5e9);
    expect(parseByteSize('100')).toBe(100);
    expect(parseByteSize('100KB')).toBe(100_000);
    for (const bad of ['0', '-5MB', '2XB', 'GB', '', '1e9']) expect(parseByteSize(bad), bad).toBeUndefined();
  });
});

// -------------------------------------------------------------------------------------------------
// Tokenizers at real sizes and too small ones
// -------------------------------------------------------------------------------------------------

describe('tokenizer vocabularies', () => {
  test('a real-sized vocabulary is covered: placeholders, then the specials with the mask, then reserved tokens', () => {
    const files = familyTokenizer('sdar', { vocab: 151936, maskTokenId: 151669 });
    if ('reason' in files) throw new Error(files.reason);
    const model = (files.json.model as { vocab: Record<string, number> }).vocab;
    const ids = Object.values(model).sort((a, b) => a - b);
    // The model vocabulary is 0..first-1 without a gap, and the added tokens follow it without a gap
    // (the Rust library gives an added token that is not in the model vocabulary the next free id).
    expect(ids).toEqual(Array.from({ length: files.firstSpecial }, (_, i) => i));
    const added = (files.json.added_tokens as { id: number; content: string; special: boolean }[]).map(
      (t) => t.id,
    );
    expect(added).toEqual(
      Array.from({ length: 151936 - files.firstSpecial }, (_, i) => files.firstSpecial + i),
    );
    const dir = tmp.dir('real');
    writeTokenizerFiles(dir, files);
    const tok = loadTokenizer(dir, { maskTokenId: 151669 });
    expect(tok.vocabSize).toBe(151936);
    expect(tok.maskToken).toBe('<|MASK|>');
    expect(tok.decode([151935])).toBe('<|reserved_special_token_265|>');
    expect(tok.decode([151935], { skipSpecialTokens: true })).toBe('');
    expect(tok.decode(tok.encode('The answer is 42.'))).toBe('The answer is 42.');
    expect(Array.from(tok.encode('<|im_start|>'))).toEqual([151667]);
  });

  test('a vocabulary too small for a byte-level BPE: the checkpoint without a tokenizer, and a note', async () => {
    expect(familyTokenizer('llada', { vocab: 64, maskTokenId: 63 })).toEqual({
      reason: expect.stringContaining('mask_token_id must be at least 261'),
    });
    const run = await make(['--family', 'llada', '--config', 'small']);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('no tokenizer: a byte-level BPE tokenizer needs ids 0–255');
    expect(readdirSync(run.dir).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(openCheckpoint(run.dir).config.vocab).toBe(64);
  });
});

// -------------------------------------------------------------------------------------------------
// Configs and refusals
// -------------------------------------------------------------------------------------------------

describe('--config and refusals', () => {
  test('--config takes a Hugging Face checkpoint directory of the family, and refuses another family', async () => {
    const run = await make(['--family', 'sdar', '--config', 'test/fixtures/hf/sdar-f32', '--dtype', 'f32']);
    expect(run.code).toBe(0);
    const { name: _, ...want } = openCheckpoint('test/fixtures/hf/sdar-f32').config;
    const { name: __, ...got } = openCheckpoint(run.dir).config;
    expect(got).toEqual(want);
    const other = await make(['--family', 'dream', '--config', 'test/fixtures/hf/sdar-f32']);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('is a SDAR config; it cannot be written with --family dream');
    expect(existsSync(other.dir)).toBe(false);
  });

  test('a config the family cannot express (qk_norm on LLaDA) is a usage error, and nothing is written', async () => {
    const run = await make(['--family', 'llada', '--config', 'sdar-1.7b']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      '--config sdar-1.7b: model "sdar-1.7b" cannot be written as a LLaDA checkpoint',
    );
    expect(run.stderr).toContain('qk_norm is true, but a LLaDA checkpoint has false');
    expect(existsSync(run.dir)).toBe(false);
  });

  test('absurd sizes are refused from the declared shape in milliseconds, before anything is written', async () => {
    const shape = {
      name: 'x',
      layers: 2,
      d_model: 64,
      heads: 4,
      head_dim: 16,
      d_ff: 128,
      vocab: 512,
      rope_theta: 500000,
      norm_eps: 1e-5,
      mask_token_id: 496,
    };
    const file = (over: Record<string, unknown>) => {
      const path = `${tmp.path('cfg')}.json`;
      writeFileSync(path, JSON.stringify({ ...shape, ...over }));
      return path;
    };
    for (const [over, code, words] of [
      // Over the size limits of a config (docs/model.md): a usage error before any shape is derived.
      [{ layers: 1e8 }, 2, [`field "layers" is 100,000,000, above kvplan's limit of 512`]],
      [{ d_model: 1e9, heads: 1, kv_heads: 1, head_dim: 1e9 }, 2, [`field "d_model" is 1,000,000,000`]],
      // Within them, but more than a checkpoint kvplan writes.
      [
        { layers: 64, d_model: 65536, heads: 256, kv_heads: 256, head_dim: 256, d_ff: 262144 },
        1,
        ['at most 64.00 GB'],
      ],
    ] as const) {
      const start = performance.now();
      const run = await make(['--family', 'llada', '--config', file(over)]);
      expect(performance.now() - start).toBeLessThan(1000);
      expect(run.code, run.stderr).toBe(code);
      for (const w of words) expect(run.stderr).toContain(w);
      expect(existsSync(run.dir)).toBe(false);
    }
    const m = asFamilyModel('llada', smallShape('llada'));
    expectThrown(
      () => checkWritable(m, 'BF16', 1000),
      CheckpointWriteError,
      'only 0.00 GB are free on the disk',
    );
    expect(checkWritable(m, 'F32', 1e9).bytes).toBe(4 * checkWritable(m, 'F32').parameters);
  });

  test('command-line mistakes are usage errors (exit 2) and write nothing', async () => {
    const full = tmp.dir('full');
    writeFileSync(join(full, 'x'), '');
    const file = `${tmp.path('file')}.txt`;
    writeFileSync(file, '');
    const cases: [string[], string][] = [
      [['make-model', '--format', 'hf', '-o', tmp.path('o')], '--format hf needs --family'],
      [['make-model', '--format', 'hf', '--family', 'lada', '-o', tmp.path('o')], "did you mean 'llada'"],
      [['make-model', '--family', 'llada', '-o', tmp.path('o')], '--family applies to --format hf only'],
      [
        ['make-model', '--dtype', 'bf16', '--shard-size', '1GB', '-o', tmp.path('o')],
        '--dtype, --shard-size apply to --format hf only',
      ],
      [['make-model', '--format', 'gguf', '-o', tmp.path('o')], '--format must be onnx or hf'],
      [
        ['make-model', '--format', 'hf', '--family', 'sdar', '--dtype', 'fp8', '-o', tmp.path('o')],
        '--dtype must be',
      ],
      [
        ['make-model', '--format', 'hf', '--family', 'sdar', '--shard-size', 'big', '-o', tmp.path('o')],
        '--shard-size must be',
      ],
      [
        ['make-model', '--format', 'hf', '--family', 'sdar', '--max-positions', '64', '-o', tmp.path('o')],
        '--max-positions applies to --format onnx only',
      ],
      [['make-model', '--format', 'hf', '--family', 'sdar', '--seed', '1.5', '-o', tmp.path('o')], '--seed'],
      [['make-model', '--format', 'hf', '--family', 'sdar', '-o', full], 'is not empty'],
      [['make-model', '--format', 'hf', '--family', 'sdar', '-o', file], 'exists and is not a directory'],
      [
        ['make-model', '--format', 'hf', '--family', 'sdar', '--config', 'nope', '-o', tmp.path('o')],
        'unknown model',
      ],
    ];
    for (const [args, message] of cases) {
      const run = await runCli(args);
      expect(run.stderr, args.join(' ')).toContain(message);
      expect(run.code, args.join(' ')).toBe(2);
    }
    expect(readdirSync(full)).toEqual(['x']);
    expect(readdirSync(tmp.root).filter((f) => f.startsWith('o'))).toEqual([]);
  });

  test('an empty existing directory is written into', async () => {
    const dir = tmp.dir('empty');
    const run = await make(['--family', 'fast-dllm-v2'], dir);
    expect(run.code).toBe(0);
    expect(openCheckpoint(dir).config.tieEmbeddings).toBe(true);
    expect(openCheckpoint(dir).ignored).toEqual([]);
  });
});
