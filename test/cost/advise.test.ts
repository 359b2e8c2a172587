// The advisor on example plans: a plan without a cache predicts exactly its twin's time, a caching
// plan pays off at long generations and not at the shortest ones on a high-bandwidth GPU, more
// bandwidth and larger batches never predict worse, and the `cpu` hardware comes from an injected
// measurement (no timing here).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { advise, predict, searchCrossover } from '../../src/cost/advise.ts';
import { findHardware, type Hardware, publishedHardware } from '../../src/cost/hardware.ts';
import { type CpuMeasurement, cpuHardware } from '../../src/cost/probe.ts';
import { stepSchedule } from '../../src/cost/schedule.ts';
import { type CheckedPlan, checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { compilePlan } from '../../src/passes/compile.ts';

function example(name: string, overrides?: Map<string, string>): CheckedPlan {
  const path = `examples/${name}.kvp`;
  const plan = checkSource({ path, text: readFileSync(path, 'utf8') }, overrides ? { overrides } : {})
    .plans[0];
  if (!plan) throw new Error(`${path} does not check`);
  return plan;
}

const small = presets.small as ModelConfig;
const gpu = (name: string): Hardware => publishedHardware.find((h) => h.name === name) as Hardware;
const noCpu = async (): Promise<Hardware> => {
  throw new Error('no cpu measurement in this test');
};

describe('advise', () => {
  test('the baseline caches nothing: its speedup over its own twin is exactly 1, at every length', () => {
    const a = advise(example('baseline'), small, gpu('h100'), { batch: 1, promptLength: 16, genLength: 64 });
    expect(a.twin.plan).toBe('baseline_twin');
    expect(a.cache.seconds).toBeGreaterThan(0);
    expect(a.speedup).toBe(1);
    expect(a.crossover).toEqual({ kind: 'never' });
  });

  test('fast-dllm-dual pays off at long generations, and not below its crossover on an H200', () => {
    const plan = example('fast-dllm-dual');
    const at = (genLength: number) =>
      advise(plan, small, gpu('h200'), { batch: 1, promptLength: 0, genLength, crossoverLimit: 256 });
    const long = at(1024);
    expect(long.speedup).toBeGreaterThan(2);
    expect(long.cache.phases.map((p) => [p.phase, p.steps])).toEqual([
      ['refresh', 32],
      ['cached', 992],
    ]);
    // With no prompt, one block is the whole canvas: a cached step recomputes every row, and the
    // refresh also writes the caches, so the first block costs more than the twin's.
    const c = long.crossover;
    if (c.kind !== 'at') throw new Error(`expected a crossover length, got ${JSON.stringify(c)}`);
    expect(c.genLength).toBeGreaterThan(32);
    expect(at(c.genLength - 1).speedup).toBeLessThanOrEqual(1);
    expect(at(c.genLength).speedup).toBeGreaterThan(1);
    expect(at(32).speedup).toBeLessThan(1);
  });

  test('more bandwidth never predicts a slower generation', () => {
    const plan = example('fast-dllm-dual');
    const sizes = { batch: 1, promptLength: 16, genLength: 64, weights: 'bf16' as const };
    const times = [0.5, 1, 2, 4].map(
      (x) => predict(plan, small, { ...gpu('a100'), bandwidth: x * 2.039e12 }, sizes).seconds,
    );
    for (let i = 1; i < times.length; i++)
      expect(times[i] as number).toBeLessThanOrEqual(times[i - 1] as number);
  });

  test('a larger batch spreads the weights of memory-bound cached steps: time per token falls', () => {
    const plan = example('fast-dllm-dual');
    const runs = [1, 2, 8].map((batch) =>
      predict(plan, presets['llada-8b'] as ModelConfig, gpu('h100'), {
        batch,
        promptLength: 32,
        genLength: 64,
        weights: 'bf16',
      }),
    );
    expect(runs[0]?.phases.find((p) => p.phase === 'cached')?.bound).toBe('memory');
    const perToken = runs.map((r) => 1 / r.tokensPerSecond);
    expect(perToken[1] as number).toBeLessThan(perToken[0] as number);
    expect(perToken[2] as number).toBeLessThan(perToken[1] as number);
  });

  test('refuses sizes that are not counts', () => {
    const plan = example('baseline');
    expect(() => advise(plan, small, gpu('h100'), { batch: 0, promptLength: 4, genLength: 8 })).toThrow(
      /batch must be a whole number of at least 1, got 0/,
    );
    expect(() => advise(plan, small, gpu('h100'), { batch: 1, promptLength: 1.5, genLength: 8 })).toThrow(
      /prompt length/,
    );
  });
});

describe('hidden states read back for model-internal scores', () => {
  const readbacks = (plan: CheckedPlan, hw: Hardware) =>
    predict(plan, small, hw, { batch: 2, promptLength: 16, genLength: 32, weights: 'f32' }).phases.map((p) =>
      p.kernels.find((k) => k.name === 'readbacks/hidden'),
    );
  const probed: Hardware = { ...gpu('a100'), readbackBandwidth: 1e9 };

  test('a plan whose rules read attention mass pays one copy of the canvas a layer, every step', () => {
    const plan = example('mage');
    const L = 16 + 32;
    for (const r of readbacks(plan, probed)) {
      expect(r?.calls).toBe(small.layers);
      // Both sequences of the batch, every row of the canvas, float32.
      expect(r?.bytes).toBe(small.layers * 2 * L * small.dModel * 4);
      expect(r?.seconds).toBeCloseTo((r?.bytes ?? 0) / 1e9, 15);
    }
  });

  test('none for a plan that reads only its predictions, nor on hardware that states no readback rate', () => {
    expect(readbacks(example('fast-dllm-dual'), probed).every((r) => r === undefined)).toBe(true);
    expect(readbacks(example('mage'), gpu('a100')).every((r) => r === undefined)).toBe(true);
  });

  test('the copies make the plan slower, never faster', () => {
    const plan = example('mage');
    const sizes = { batch: 1, promptLength: 16, genLength: 32, weights: 'f32' as const };
    expect(predict(plan, small, probed, sizes).seconds).toBeGreaterThan(
      predict(plan, small, gpu('a100'), sizes).seconds,
    );
  });
});

describe('stepSchedule', () => {
  test('fast-dllm-dual refreshes at each block start and commits one token a step under its threshold', () => {
    const plan = example('fast-dllm-dual', new Map([['block', '8']]));
    const { lowered } = compilePlan(plan, small, { target: 'reference' });
    const s = stepSchedule(plan, lowered, 4, 24);
    expect(s.steps).toBe(24);
    const count = (phase: string) =>
      s.shapes.filter((x) => x.shape.phase === phase).reduce((a, x) => a + x.count, 0);
    expect([count('refresh'), count('cached')]).toEqual([3, 21]);
    // A cached step recomputes the current block of 8 on every layer.
    const cached = s.shapes.find((x) => x.shape.phase === 'cached')?.shape;
    expect(cached?.sizes.get('rows.0')).toBe(8);
  });

  test('a plan that measures rollout for its compute set asks for one probe a cached step', () => {
    const plan = example('d2cache');
    const { lowered } = compilePlan(plan, small, { target: 'reference' });
    const s = stepSchedule(plan, lowered, 8, 32);
    for (const { shape } of s.shapes)
      expect(shape.probes).toEqual(
        // The refresh of every row builds no compute set; rollout attends from all 40 rows.
        shape.phase === 'refresh' ? [] : [{ output: 'mass', layer: 0, queries: 40 }],
      );
  });

  test("Elastic-Cache measures its probe layer's attention row once a cached step, and remembers only that layer", () => {
    const plan = example('elastic-cache', new Map([['probe', '1']]));
    const { lowered } = compilePlan(plan, small, { target: 'reference' });
    const s = stepSchedule(plan, lowered, 8, 32);
    // The row of the most-attended key over all 40 rows: at layer 1 only, although layers 2 and 3
    // both read attn_similarity(1).
    const row = [{ output: 'row', layer: 1, queries: 40 }];
    const refresh = s.shapes.filter((x) => x.shape.phase === 'refresh');
    expect(refresh.map((x) => x.shape.probes)).toEqual([row]);
    const cached = s.shapes.filter((x) => x.shape.phase === 'cached');
    expect(cached.length).toBeGreaterThan(0);
    for (const { shape } of cached) expect(shape.probes).toEqual(row);
  });
});

describe('searchCrossover', () => {
  test('finds the first length above 1 by doubling then bisecting', () => {
    expect(searchCrossover((g) => (g >= 37 ? 1.5 : 0.9), 4096)).toEqual({ kind: 'at', genLength: 37 });
    expect(searchCrossover(() => 1.2, 4096)).toEqual({ kind: 'always' });
    expect(searchCrossover(() => 1, 100)).toEqual({ kind: 'never', upTo: 100 });
  });
});

describe('hardware', () => {
  test('an unknown name is refused with the closest one', async () => {
    await expect(findHardware('h10', noCpu)).rejects.toThrow(
      /no hardware named 'h10' \(did you mean 'h100'\?\)/,
    );
    expect((await findHardware('a100', noCpu)).description).toBe('NVIDIA A100 SXM4 80GB');
  });

  const dir = mkdtempSync(join(tmpdir(), 'kvplan-cost-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const fake: CpuMeasurement = {
    cpu: 'test cpu',
    cores: 2,
    threads: 2,
    peakFlops: 100e9,
    bandwidth: 20e9,
    weightBandwidth: 10e9,
    attentionFlops: 50e9,
    massFlops: 20e9,
    overlap: 0.25,
    ridgeRows: 20,
    readbackBandwidth: 2e9,
    measuredAt: '2026-01-01T00:00:00.000Z',
  };

  test('`cpu` is measured once, kept in the cache directory, and measured again when asked', async () => {
    let calls = 0;
    const measure = async () => {
      calls++;
      return fake;
    };
    const cacheDir = join(dir, 'kept');
    const first = await findHardware('cpu', () => cpuHardware({ cacheDir, measure }));
    expect(first).toMatchObject({ name: 'cpu', peakFlops: 100e9, bandwidth: 20e9, weights: 'f32' });
    await cpuHardware({ cacheDir, measure });
    expect(calls).toBe(1);
    await cpuHardware({ cacheDir, measure, remeasure: true });
    expect(calls).toBe(2);
  });

  test('a measurement of other kernels (an older build of the primitives) is measured again', async () => {
    let calls = 0;
    const measure = async () => {
      calls++;
      return fake;
    };
    const cacheDir = join(dir, 'kernels');
    await cpuHardware({ cacheDir, measure, kernels: 'a' });
    await cpuHardware({ cacheDir, measure, kernels: 'a' });
    expect(calls).toBe(1);
    await cpuHardware({ cacheDir, measure, kernels: 'b' });
    expect(calls).toBe(2);
  });

  test('a damaged measurement file is measured again', async () => {
    const cacheDir = join(dir, 'damaged');
    await cpuHardware({ cacheDir, measure: async () => fake });
    writeFileSync(join(cacheDir, 'cpu-roofline.json'), '{"truncated');
    let calls = 0;
    const hw = await cpuHardware({
      cacheDir,
      measure: async () => {
        calls++;
        return { ...fake, bandwidth: 40e9 };
      },
    });
    expect(calls).toBe(1);
    expect(hw.bandwidth).toBe(40e9);
  });

  test('the advisor runs on the injected `cpu` hardware', async () => {
    const hw = await cpuHardware({ cacheDir: join(dir, 'advise'), measure: async () => fake });
    const a = advise(example('fast-dllm-dual'), small, hw, { batch: 1, promptLength: 16, genLength: 64 });
    expect(a.hardware.name).toBe('cpu');
    expect(a.weights).toBe('f32');
    expect(a.speedup).toBeGreaterThan(1);
  });
});
