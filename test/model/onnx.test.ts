import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkg from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../src/backends/cpu/runner.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { goldenForward } from '../../src/model/golden.ts';
import { exportOnnx } from '../../src/model/onnx/export.ts';
import { loadOnnx, OnnxError } from '../../src/model/onnx/load.ts';
import { presets } from '../../src/model/presets.ts';
import { floatsOf, randomWeights, type Tensor } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { ReferenceRunner } from '../../src/runtime/referenceRunner.ts';
import { simulateGeneration } from '../../src/runtime/simulate.ts';
import { float32Budget } from '../../src/runtime/verify.ts';
import { examplePlan } from '../runtime/support.ts';

const { onnx } = pkg;
const dir = mkdtempSync(join(tmpdir(), 'kvplan-onnx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = presets.tiny as ModelConfig;
const variants: [string, ModelConfig][] = [
  ['GQA with QKV bias', tiny],
  ['multi-head', presets.small as ModelConfig],
  ['block-causal', { ...tiny, attention: 'block_causal' }],
  ['tied embeddings', { ...tiny, tieEmbeddings: true, qkvBias: false }],
];

async function ortLogits(
  bytes: Uint8Array,
  config: ModelConfig,
  tokens: Int32Array,
  promptLen: number,
  blockLen: number,
) {
  const session = await ort.InferenceSession.create(bytes);
  const L = tokens.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, L]),
  };
  if (config.attention === 'block_causal') {
    const blocks = BigInt64Array.from({ length: L }, (_, i) =>
      BigInt(i < promptLen ? -1 : Math.floor((i - promptLen) / blockLen)),
    );
    feeds.block_ids = new ort.Tensor('int64', blocks, [L]);
  }
  return (await session.run(feeds)).logits?.data as Float32Array;
}

describe('ONNX models', () => {
  test.each(variants)('%s: export, load back, and the same config and weights (float32)', (_, config) => {
    const weights = randomWeights(config, 9);
    const path = join(dir, `${config.name}-${config.attention}-${config.tieEmbeddings}.onnx`);
    writeFileSync(path, exportOnnx(config, weights, { maxPositions: 64 }));
    const loaded = loadOnnx(path);
    expect(loaded.config).toEqual(config);
    expect([...loaded.weights.keys()].sort()).toEqual([...weights.keys()].sort());
    for (const [name, t] of weights)
      expect(floatsOf(loaded.weights.get(name) as Tensor)).toEqual(Float32Array.from(t.data));
  });

  test.each(variants)(
    '%s: onnxruntime running the file (eager or fused attention) equals the golden and our backends within the float32 budget',
    async (_, config) => {
      const weights = randomWeights(config, 11);
      const bytes = exportOnnx(config, weights, { maxPositions: 64 });
      const plan = examplePlan('baseline');
      const prompt = Int32Array.from([2, 7, 1, 8, 2]);
      const genLen = 8;
      const tokens = new Int32Array(prompt.length + genLen).fill(config.maskTokenId);
      tokens.set(prompt);
      const layout = { promptLen: prompt.length, blockLen: genLen };
      const golden = goldenForward(config, weights, tokens, layout).logits;
      const V = config.vocab;
      const rows = (logits: ArrayLike<number>) => {
        let dev = 0;
        let scale = 0;
        for (let i = prompt.length * V; i < tokens.length * V; i++) {
          dev = Math.max(dev, Math.abs((logits[i] ?? 0) - (golden[i] ?? 0)));
          scale = Math.max(scale, Math.abs(golden[i] ?? 0));
        }
        return { dev, scale };
      };
      // The budget: a multiple of the eager float32 evaluation's error on the same first step.
      const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
      const gen = { config, weights, prompt, genLen, seed: 1 };
      const eager = await simulateGeneration(plan, lowered, {
        ...gen,
        runner: (n) => new ReferenceRunner(lowered, weights, n, true),
      });
      const first = eager.steps[0];
      if (!first) throw new Error('no step');
      const { dev, scale } = rows(await ortLogits(bytes, config, tokens, prompt.length, genLen));
      expect(dev).toBeLessThanOrEqual(float32Budget(first.deviation, scale));
      // The graph with onnxruntime's fused attention op computes the same model.
      const fusedBytes = exportOnnx(config, weights, { maxPositions: 64, fusedAttention: true });
      const fused = rows(await ortLogits(fusedBytes, config, tokens, prompt.length, genLen));
      expect(fused.dev).toBeLessThanOrEqual(float32Budget(first.deviation, scale));
      const reference = (await simulateGeneration(plan, lowered, gen)).steps[0];
      expect(reference?.deviation).toBeLessThanOrEqual(float32Budget(first.deviation, scale));
      const build = buildCpu(plan, config, tokens.length);
      const cpu = (
        await simulateGeneration(plan, build.lowered, {
          ...gen,
          runner: (n) => new CpuRunner(build, weights, n),
        })
      ).steps[0];
      expect(cpu?.deviation).toBeLessThanOrEqual(float32Budget(first.deviation, scale));
    },
  );

  describe('bad files get a clear error naming what is wrong', () => {
    const good = exportOnnx(tiny, randomWeights(tiny, 1), { maxPositions: 16 });
    const write = (name: string, bytes: Uint8Array) => {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      return p;
    };
    test('truncated and garbage files', () => {
      expect(() => loadOnnx(write('truncated.onnx', good.subarray(0, good.length / 2)))).toThrow(OnnxError);
      expect(() => loadOnnx(write('truncated.onnx', good.subarray(0, good.length / 2)))).toThrow(
        /truncated\.onnx: not a valid ONNX model/,
      );
      expect(() =>
        loadOnnx(
          write(
            'garbage.onnx',
            Uint8Array.from({ length: 64 }, (_, i) => (i * 37) % 256),
          ),
        ),
      ).toThrow(OnnxError);
      expect(() => loadOnnx(join(dir, 'missing.onnx'))).toThrow(/missing\.onnx: cannot read/);
    });
    const edit = (f: (m: ReturnType<typeof onnx.ModelProto.decode>) => void) => {
      const m = onnx.ModelProto.decode(good);
      f(m);
      return onnx.ModelProto.encode(m).finish();
    };
    test('no architecture metadata: read as a foreign file, whose tabulated RoPE is not the pattern', () => {
      const p = write(
        'nometa.onnx',
        edit((m) => m.metadataProps.splice(0)),
      );
      expect(() => loadOnnx(p)).toThrow(/expected Add \(RoPE of the queries\), found Concat/);
      expect(() => loadOnnx(p)).toThrow(/no mask token id/);
    });
    test('a missing weight is named', () => {
      const p = write(
        'noweight.onnx',
        edit((m) => {
          const g = m.graph as { initializer: { name: string }[] };
          g.initializer = g.initializer.filter((t) => t.name !== 'model.layers.1.mlp.down_proj.weight');
        }),
      );
      expect(() => loadOnnx(p)).toThrow(/model\.layers\.1\.mlp\.down_proj\.weight/);
    });
    test('an unsupported weight type is named', () => {
      const p = write(
        'f16.onnx',
        edit((m) => {
          const t = (m.graph as { initializer: { name: string; dataType: number }[] }).initializer.find(
            (x) => x.name === 'model.norm.weight',
          );
          if (t) t.dataType = 10;
        }),
      );
      expect(() => loadOnnx(p)).toThrow(/model\.norm\.weight has data type 10/);
    });
  });
});
