// The advisor's report, pinned for one plan on one machine at fixed sizes: a change to the cost
// model or to the report shows up here as a diff to review.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { advise } from '../../src/cost/advise.ts';
import { adviceJson, cpuCalibration, formatAdvice } from '../../src/cost/format.ts';
import { type Hardware, publishedHardware } from '../../src/cost/hardware.ts';
import { checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';

const path = 'examples/fast-dllm-dual.kvp';
const plan = checkSource({ path, text: readFileSync(path, 'utf8') }).plans[0];
if (!plan) throw new Error(`${path} does not check`);
const h100 = publishedHardware.find((h) => h.name === 'h100') as Hardware;
const advice = advise(plan, presets['llada-8b'] as ModelConfig, h100, {
  batch: 1,
  promptLength: 64,
  genLength: 128,
  crossoverLimit: 256,
});

describe('the cost report', () => {
  test('fast-dllm-dual on LLaDA-8B, H100, batch 1, prompt 64, generation 128', () => {
    expect(formatAdvice(advice)).toMatchSnapshot();
  });

  test('a plan without a cache is told so', () => {
    const base = 'examples/baseline.kvp';
    const baseline = checkSource({ path: base, text: readFileSync(base, 'utf8') }).plans[0];
    if (!baseline) throw new Error(`${base} does not check`);
    const text = formatAdvice(
      advise(baseline, presets.small as ModelConfig, h100, { batch: 1, promptLength: 8, genLength: 32 }),
    );
    expect(text).toContain('speedup 1.00x');
    expect(text).toContain('crossover: never: baseline runs as its own no-cache twin');
    expect(text).toContain("why: nothing is cached: every step recomputes every row, as the twin's steps do");
  });

  test('the JSON is the advice itself, whole, with its assumptions', () => {
    const { assumptions, ...rest } = JSON.parse(adviceJson(advice));
    expect(rest).toEqual(JSON.parse(JSON.stringify(advice)));
    expect(formatAdvice(advice)).toContain(`assumptions: ${assumptions}\n`);
    expect(JSON.parse(adviceJson(advice))).toMatchObject({
      plan: 'fast_dllm_dual',
      hardware: { name: 'h100' },
      crossover: { kind: 'always' },
    });
  });
});

/** A `cpu` as its probe states it (fixed figures: no timing in a test). */
const cpu: Hardware = {
  name: 'cpu',
  description: 'test cpu, 2 cores, 2 threads (measured 2026-01-01)',
  peakFlops: 300e9,
  peakDtype: 'f32, kv_gemm 1024x1024x1024',
  bandwidth: 50e9,
  weightBandwidth: 20e9,
  attentionFlops: 200e9,
  massFlops: 60e9,
  overlap: 0.25,
  readbackBandwidth: 2e9,
  weights: 'f32',
  backend: 'cpu',
  source: 'measured on this machine',
};

describe('the cost report on the probed cpu', () => {
  const mage = checkSource({ path: 'examples/mage.kvp', text: readFileSync('examples/mage.kvp', 'utf8') })
    .plans[0];
  if (!mage) throw new Error('examples/mage.kvp does not check');
  const a = advise(mage, presets.small as ModelConfig, cpu, {
    batch: 1,
    promptLength: 16,
    genLength: 64,
    crossoverLimit: 128,
  });

  test('mage on the small model, batch 1, prompt 16, generation 64', () => {
    expect(formatAdvice(a)).toMatchSnapshot();
  });

  test('states the measured figures, the readbacks and the calibrated error bound', () => {
    const text = formatAdvice(a);
    expect(text).toContain(
      'GEMM weights stream at 20.0 GB/s, attention peaks at 200 GFLOP/s, attention mass (probes) at 60.0 GFLOP/s, 25% of',
    );
    expect(text).toMatch(/readbacks\/hidden/);
    expect(text).toContain(
      `calibration: predictions within ±${Math.round(100 * cpuCalibration.speedup.max)}% on this machine's calibration: speedups`,
    );
    expect(JSON.parse(adviceJson(a)).calibration).toMatch(
      /^predictions within ±\d+% on this machine's calibration/,
    );
    // A datasheet machine claims no calibration.
    expect(formatAdvice(advice)).not.toContain('calibration:');
    expect(JSON.parse(adviceJson(advice))).not.toHaveProperty('calibration');
  });
});

describe('the calibration the cpu report claims', () => {
  // The table of docs/perf.md, "Cost advisor": its error columns are what the claim must match.
  const doc = readFileSync('docs/perf.md', 'utf8');
  const section = doc.slice(
    doc.indexOf('## Cost advisor'),
    doc.indexOf('\n## ', doc.indexOf('## Cost advisor') + 1),
  );
  const lines = section.split('\n').filter((l) => l.startsWith('|'));
  const header = (lines[0] ?? '').split('|').map((c) => c.trim());
  const rows = lines.slice(2).map((l) => l.split('|').map((c) => c.trim()));
  const errorColumns = header.flatMap((h, i) => (h === 'error' ? [i] : []));
  const errors = (column: number) =>
    rows
      .map((r) => r[column] ?? '')
      .filter((c) => c !== '-')
      .map((c) => Math.abs(Number(c.replace('%', ''))) / 100);
  const median = (xs: number[]) => {
    const s = [...xs].sort((x, y) => x - y);
    return ((s[(s.length - 1) >> 1] as number) + (s[s.length >> 1] as number)) / 2;
  };

  test('has a row per example plan, and the two error columns (time per step, then speedup)', () => {
    expect(rows.map((r) => r[1])).toContain('baseline');
    expect(rows).toHaveLength(cpuCalibration.plans + 1);
    expect(errorColumns).toHaveLength(2);
  });

  test('the bound and median stated for the speedup and the time per step are those of the table', () => {
    const [step, speedup] = errorColumns.map(errors) as [number[], number[]];
    expect(speedup).toHaveLength(cpuCalibration.plans);
    expect(Math.round(100 * Math.max(...speedup))).toBe(Math.round(100 * cpuCalibration.speedup.max));
    // The table rounds each error to a percent: its median is within a point of the unrounded one.
    expect(Math.abs(median(speedup) - cpuCalibration.speedup.median)).toBeLessThanOrEqual(0.01);
    expect(Math.round(100 * Math.max(...step))).toBe(Math.round(100 * cpuCalibration.step.max));
    expect(Math.abs(median(step) - cpuCalibration.step.median)).toBeLessThanOrEqual(0.01);
  });
});
