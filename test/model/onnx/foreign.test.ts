// Foreign ONNX files: plain torch.onnx.export files of LLaMA-family models written by an
// independent PyTorch implementation (test/oracle/export_foreign.py). kvplan finds their weights
// through the graph, derives their config, and its float64 golden computes PyTorch's logits; a
// file off the pattern is refused with every problem in one message.
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkg from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, test } from 'vitest';
import { goldenForward } from '../../../src/model/golden.ts';
import { loadOnnx, OnnxError } from '../../../src/model/onnx/load.ts';
import { openModel } from '../../../src/runtime/openModel.ts';
import { float64Bound } from '../../../src/runtime/verify.ts';

const { onnx } = pkg;
const root = 'test/fixtures/onnx-foreign';
const dir = mkdtempSync(join(tmpdir(), 'kvplan-foreign-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Reference {
  readonly model: {
    readonly [k in 'layers' | 'd_model' | 'heads' | 'kv_heads' | 'head_dim' | 'd_ff' | 'vocab']: number;
  } & { readonly rope_theta: number; readonly norm_eps: number; readonly qkv_bias: boolean };
  readonly float32_vs_float64: number;
  readonly sequences: readonly { readonly tokens: number[]; readonly logits: number[][] }[];
}
const reference = (name: string): Reference => JSON.parse(readFileSync(join(root, `${name}.json`), 'utf8'));

/** The largest difference from PyTorch's logits, and the largest PyTorch logit. */
function against(expected: number[][], logits: ArrayLike<number>, V: number) {
  let error = 0;
  let scale = 0;
  expected.forEach((row, i) => {
    row.forEach((x, v) => {
      error = Math.max(error, Math.abs((logits[i * V + v] as number) - x));
      scale = Math.max(scale, Math.abs(x));
    });
  });
  return { error, scale };
}

type Model = ReturnType<typeof onnx.ModelProto.decode>;
type Node = {
  name: string;
  opType: string;
  input: string[];
  output: string[];
  attribute: { t: { rawData: Uint8Array } }[];
};
type Init = { name: string; dims: number[]; rawData: Uint8Array };
const nodes = (m: Model) => (m.graph as unknown as { node: Node[] }).node;
const inits = (m: Model) => (m.graph as unknown as { initializer: Init[] }).initializer;
const node = (m: Model, name: string): Node => {
  const n = nodes(m).find((x) => x.name === name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
};

/** The qwen2 fixture, edited, written with its sidecar (or another) to the temp dir; returns its path. */
function variant(name: string, edit: (m: Model) => void, sidecar = '{"mask_token_id": 47}'): string {
  const m = onnx.ModelProto.decode(readFileSync(join(root, 'qwen2-tiny.onnx')));
  edit(m);
  const path = join(dir, `${name}.onnx`);
  writeFileSync(path, onnx.ModelProto.encode(m).finish());
  writeFileSync(join(dir, `${name}.kvplan.json`), sidecar);
  return path;
}

/** The OnnxError message of loading `path`, with the temp dir replaced for the snapshot. */
function refusal(path: string): string {
  try {
    loadOnnx(path);
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxError);
    return (e as Error).message.replaceAll(dir, '<tmp>');
  }
  throw new Error(`${path} loaded`);
}

// The edits: each breaks one thing the loader checks.
const removeWeight = (m: Model) => {
  const w = node(m, '/model/layers.1/mlp/down_proj/MatMul').input[1];
  (m.graph as unknown as { initializer: Init[] }).initializer = inits(m).filter((t) => t.name !== w);
};
const reshapeWeight = (m: Model) => {
  const t = inits(m).find((x) => x.name === node(m, '/model/layers.1/mlp/gate_proj/MatMul').input[1]);
  if (!t) throw new Error('no gate weight');
  t.dims = [32, 60];
  t.rawData = t.rawData.slice(0, 32 * 60 * 4);
};
const unsupportedOp = (m: Model) => {
  node(m, '/model/layers.1/mlp/Sigmoid').opType = 'Tanh';
};
const wrongHeads = (m: Model) => {
  // The query view of layer 0: [batch, L, 4, 8] becomes [batch, L, 2, 16].
  const set = (name: string, v: bigint) => {
    (node(m, name).attribute[0] as Node['attribute'][number]).t.rawData = new Uint8Array(
      BigInt64Array.of(v).buffer,
    );
  };
  set('/model/layers.0/self_attn/Constant_2', 2n);
  set('/model/layers.0/self_attn/Constant_3', 16n);
};

describe('foreign ONNX files (plain torch.onnx.export)', () => {
  test.each(['qwen2-tiny', 'llama-tiny'])('%s: the config is derived from the graph', (name) => {
    const { config, weights } = loadOnnx(join(root, `${name}.onnx`));
    const m = reference(name).model;
    expect(config).toEqual({
      name,
      layers: m.layers,
      dModel: m.d_model,
      heads: m.heads,
      kvHeads: m.kv_heads,
      headDim: m.head_dim,
      dFF: m.d_ff,
      vocab: m.vocab,
      ropeTheta: m.rope_theta,
      qkvBias: m.qkv_bias,
      normEps: m.norm_eps,
      maskTokenId: m.vocab - 1,
      arShift: false,
      attention: 'full',
      tieEmbeddings: false,
    });
    // Linear weights back in PyTorch's [out, in] orientation.
    expect(weights.get('model.layers.0.self_attn.q_proj.weight')?.shape).toEqual([
      m.heads * m.head_dim,
      m.d_model,
    ]);
    expect(weights.get('model.layers.1.mlp.down_proj.weight')?.shape).toEqual([m.d_model, m.d_ff]);
  });

  test.each(['qwen2-tiny', 'llama-tiny'])('%s: the float64 golden computes the PyTorch logits', (name) => {
    const { config, weights } = loadOnnx(join(root, `${name}.onnx`));
    for (const s of reference(name).sequences) {
      const tokens = Int32Array.from(s.tokens);
      const { logits } = goldenForward(config, weights, tokens, { promptLen: tokens.length, blockLen: 4 });
      const { error, scale } = against(s.logits, logits, config.vocab);
      expect(scale).toBeGreaterThan(0.5);
      expect(error).toBeLessThanOrEqual(float64Bound(config, tokens.length, scale));
    }
  });

  test.each(['qwen2-tiny', 'llama-tiny'])(
    '%s: onnxruntime running the file is within 4x PyTorch float32 of the float64 logits',
    async (name) => {
      // The fixture itself is faithful: its graph computes the model PyTorch ran.
      const ref = reference(name);
      const session = await ort.InferenceSession.create(join(root, `${name}.onnx`));
      for (const s of ref.sequences) {
        const ids = new ort.Tensor('int64', BigInt64Array.from(s.tokens, BigInt), [1, s.tokens.length]);
        const out = (await session.run({ input_ids: ids })).logits?.data as Float32Array;
        const { error, scale } = against(s.logits, out, ref.model.vocab);
        expect(error).toBeLessThanOrEqual(4 * ref.float32_vs_float64 + 8 * 2 ** -24 * (1 + scale));
      }
    },
  );

  test('openModel opens one, with the character tokenizer of its vocabulary', () => {
    const opened = openModel(join(root, 'qwen2-tiny.onnx'));
    expect(opened.config.maskTokenId).toBe(47);
    expect(opened.tokenizer.encode('ab').length).toBe(2);
  });

  test('a causal model is refused, naming its mask', () => {
    const msg = refusal(join(root, 'llama-causal.onnx'));
    expect(msg).toMatch(/Trilu/);
    expect(msg).toMatch(/masks the attention scores/);
    expect(msg).toMatchSnapshot();
  });

  test('a missing weight is named by its canonical name and the node that reads it', () => {
    const msg = refusal(variant('missing', removeWeight));
    expect(msg).toMatch(
      /missing weight model\.layers\.1\.mlp\.down_proj\.weight: input "onnx::MatMul_\d+" of node "\/model\/layers\.1\/mlp\/down_proj\/MatMul"/,
    );
    expect(msg).toMatchSnapshot();
  });

  test('a wrong shape is named with the shape expected', () => {
    const msg = refusal(variant('shape', reshapeWeight));
    expect(msg).toMatch(
      /weight model\.layers\.1\.mlp\.gate_proj\.weight .* has shape \[60, 32\], expected \[64, 32\]/,
    );
    expect(msg).toMatchSnapshot();
  });

  test('an unsupported op is named', () => {
    const msg = refusal(variant('op', unsupportedOp));
    expect(msg).toMatch(/node "\/model\/layers\.1\/mlp\/Sigmoid" \(Tanh\): op Tanh is not part of/);
    expect(msg).toMatchSnapshot();
  });

  test('a head split that disagrees with the weights and RoPE is named', () => {
    const msg = refusal(variant('heads', wrongHeads));
    expect(msg).toMatch(
      /layer 0 splits the queries into 2 heads of 16, but the weights and RoPE give 4 heads of 8/,
    );
    expect(msg).toMatchSnapshot();
  });

  test('every problem is reported at once, in one error', () => {
    const msg = refusal(
      variant(
        'several',
        (m) => {
          removeWeight(m);
          reshapeWeight(m);
          wrongHeads(m);
          // An op kvplan does not know, reading the embedding (its output unused), and a wrong scale.
          nodes(m).push({
            name: 'extra',
            opType: 'Erf',
            input: ['/model/embed_tokens/Gather_output_0'],
            output: ['erf_out'],
          } as unknown as Node);
          const scale = node(m, '/model/layers.1/self_attn/Mul_8').input[1] as string;
          const c = nodes(m).find((n) => n.output?.[0] === scale);
          if (!c) throw new Error('no scale constant');
          (c.attribute[0] as Node['attribute'][number]).t.rawData = new Uint8Array(
            Float32Array.of(0.5).buffer,
          );
        },
        '{"mask_token_id": 47, "heads": 8, "kv_head": 2}',
      ),
    );
    expect(msg).toMatch(/\(\d+ problems\)/);
    for (const part of [
      /model\.layers\.1\.mlp\.down_proj\.weight/,
      /\[60, 32\], expected \[64, 32\]/,
      /2 heads of 16/,
      /op Erf/,
      /layer 1 scales the attention scores by 0\.5/,
      /says heads = 8, but the graph has 4/,
      /unknown field "kv_head" \(did you mean "kv_heads"\?\)/,
    ])
      expect(msg).toMatch(part);
    expect(msg).toMatchSnapshot();
  });

  describe('the sidecar', () => {
    const same = (m: Model) => m;
    test('without one, the mask token id is asked for', () => {
      const path = variant('nosidecar', same);
      rmSync(join(dir, 'nosidecar.kvplan.json'));
      expect(refusal(path)).toMatchSnapshot();
    });
    test('it may pin derived fields to the same model, and set what no graph records', () => {
      const path = variant(
        'pinned',
        same,
        '{"mask_token_id": 3, "ar_shift": true, "name": "mine", "rope_theta": 1e6, "norm_eps": 0.000001, "kv_heads": 2}',
      );
      const { config } = loadOnnx(path);
      expect(config).toMatchObject({
        name: 'mine',
        maskTokenId: 3,
        arShift: true,
        ropeTheta: 1e6,
        kvHeads: 2,
      });
    });
    test('a sidecar that is a device, or far larger than a few fields, is refused without reading it', () => {
      const path = variant('device', same);
      rmSync(join(dir, 'device.kvplan.json'));
      symlinkSync('/dev/zero', join(dir, 'device.kvplan.json'));
      expect(refusal(path)).toContain('device.kvplan.json: not a regular file');
    });
    test('fields that contradict the graph, or a bad mask id, are refused', () => {
      const path = variant(
        'contradicts',
        same,
        '{"mask_token_id": 48, "rope_theta": 10000, "norm_eps": 1e-5, "attention": "block_causal"}',
      );
      expect(refusal(path)).toMatchSnapshot();
    });
  });
});
