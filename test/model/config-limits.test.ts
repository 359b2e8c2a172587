// The size limits of a model config (docs/model.md, "Size limits"): refused with the field, the
// value and the limit, wherever the config comes from, before anything is sized from it.
import { readFileSync, writeFileSync } from 'node:fs';
import pkg from 'onnx-proto';
import { afterAll, describe, expect, test } from 'vitest';
import {
  ConfigError,
  configLimits,
  configOverLimit,
  type ModelConfig,
  validateConfig,
} from '../../src/model/config.ts';
import { exportOnnx } from '../../src/model/onnx/export.ts';
import { loadOnnx, OnnxError } from '../../src/model/onnx/load.ts';
import { presetNames, presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { runCli, tempFiles } from '../support/cli.ts';

const { onnx } = pkg;

/** The config of the issue: a hundred million layers of a tiny model. */
const deep = {
  layers: 100_000_000,
  d_model: 64,
  heads: 4,
  d_ff: 128,
  vocab: 100,
  rope_theta: 10000,
  norm_eps: 1e-5,
  mask_token_id: 99,
};

/** Within every limit but the vocabulary's. */
const wide = { ...deep, layers: 2, vocab: 3_000_000 };

const tmp = tempFiles({ 'deep.json': JSON.stringify(deep), 'wide.json': JSON.stringify(wide) });
afterAll(() => tmp.cleanup());

const message = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
};

/** A valid config with one field set, in snake_case. */
const withField = (key: string, value: number): Record<string, unknown> => ({
  ...deep,
  layers: 2,
  head_dim: 16,
  kv_heads: 1,
  [key]: value,
  ...(key === 'vocab' ? { mask_token_id: 0 } : {}),
});

describe('validateConfig', () => {
  test.each([
    ['layers', 'layers'],
    ['d_model', 'dModel'],
    ['heads', 'heads'],
    ['head_dim', 'headDim'],
    ['d_ff', 'dFF'],
    ['vocab', 'vocab'],
  ] as const)(
    '%s: the limit is accepted, one more is refused with the field, the value and the limit',
    (key, field) => {
      const limit = configLimits[field];
      const over = limit + (key === 'head_dim' ? 2 : 1);
      expect(validateConfig(withField(key, limit), 'm.json')[field]).toBe(limit);
      expect(message(() => validateConfig(withField(key, over), 'm.json'))).toBe(
        `m.json: field "${key}" is ${over.toLocaleString('en-US')}, above kvplan's limit of ${limit.toLocaleString('en-US')} (docs/model.md, "Size limits")`,
      );
    },
  );

  test('the issue’s config is refused at once, by the spelling it was given', () => {
    expect(message(() => validateConfig(deep, 'cfg.json'))).toMatch(
      /^cfg\.json: field "layers" is 100,000,000, above kvplan's limit of 512/,
    );
    const { d_model: _, ...rest } = deep;
    const camel = { ...rest, layers: 2, dModel: 70_000 };
    expect(message(() => validateConfig(camel, 'cfg.json'))).toMatch(
      /field "dModel" is 70,000, above .* 65,536/,
    );
  });

  test('every preset, the real ones included, is within the limits', () => {
    for (const name of presetNames) {
      const p = presets[name] as ModelConfig;
      expect(configOverLimit(p)).toBeUndefined();
    }
  });

  test('configOverLimit names the field of a config built elsewhere (a checkpoint family)', () => {
    const p = { ...(presets.tiny as ModelConfig), vocab: 2 ** 22 };
    expect(configOverLimit(p)).toMatch(/^field "vocab" is 4,194,304, above kvplan's limit of 2,097,152/);
  });
});

describe('every path that takes a config', () => {
  /** A kvplan ONNX file of the tiny preset whose kvplan.config metadata claims `layers`. */
  const onnxClaiming = (layers: number): string => {
    const tiny = presets.tiny as ModelConfig;
    const m = onnx.ModelProto.decode(exportOnnx(tiny, randomWeights(tiny, 1), { maxPositions: 64 }));
    const meta = m.metadataProps.find((p) => p.key === 'kvplan.config');
    if (!meta) throw new Error('exportOnnx wrote no kvplan.config');
    meta.value = JSON.stringify({ ...JSON.parse(meta.value as string), layers });
    const path = tmp.path(`claims-${layers}.onnx`);
    writeFileSync(path, onnx.ModelProto.encode(m).finish());
    return path;
  };

  test('ONNX metadata: loadOnnx, generate and inspect-model refuse it (exit 1), naming the field', async () => {
    const path = onnxClaiming(1000);
    expect(() => loadOnnx(path)).toThrow(OnnxError);
    expect(() => loadOnnx(path)).toThrow(
      /metadata kvplan\.config\): field "layers" is 1,000, above kvplan's limit of 512/,
    );
    const run = await runCli([
      'generate',
      '--model',
      path,
      '--plan',
      'examples/baseline.kvp',
      '--prompt',
      'a',
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/field "layers" is 1,000, above kvplan's limit of 512/);
    const inspect = await runCli(['inspect-model', path]);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr).toMatch(/field "layers" is 1,000/);
  }, 10_000);

  // The issue's hundred million layers where today's code got that far quickly; the vocabulary
  // where it compiled or verified such a model for minutes.
  test.each([
    [
      'make-model',
      ['make-model', '--config', tmp.path('deep.json'), '-o', tmp.path('never.onnx')],
      'layers',
      '100,000,000',
    ],
    ['check', ['check', 'examples/baseline.kvp', '--config', tmp.path('deep.json')], 'layers', '100,000,000'],
    [
      'compile',
      ['compile', 'examples/baseline.kvp', '--config', tmp.path('wide.json')],
      'vocab',
      '3,000,000',
    ],
    [
      'verify',
      ['verify', 'examples/baseline.kvp', '--config', tmp.path('wide.json'), '--cases', '1'],
      'vocab',
      '3,000,000',
    ],
  ])(
    '%s --config: a usage error naming the field, the value and the limit, at once',
    async (_, argv, field, value) => {
      const t0 = performance.now();
      const r = await runCli(argv);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`\\.json: field "${field}" is ${value}, above kvplan's limit of`));
      expect(performance.now() - t0).toBeLessThan(5_000);
    },
    10_000,
  );

  test('make-model --format hf: a Hugging Face config.json is held to the same limits', async () => {
    const hf = JSON.parse(readFileSync('test/fixtures/hf/llada-f32/config.json', 'utf8')) as Record<
      string,
      unknown
    >;
    const path = tmp.path('config.json');
    writeFileSync(path, JSON.stringify({ ...hf, n_layers: 100_000_000 }));
    const r = await runCli([
      'make-model',
      '--format',
      'hf',
      '--family',
      'llada',
      '--config',
      path,
      '-o',
      tmp.path('ckpt'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /config\.json \(LLaDA\): field "layers" is 100,000,000, above kvplan's limit of 512/,
    );
  }, 10_000);
});
