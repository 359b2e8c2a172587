import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { heldOutProblems } from '../../src/eval/tasks.ts';
import { runCli } from '../support/cli.ts';
import { expectOnlyProgress } from './progressLines.ts';

/**
 * The text report with what the clock decides masked: tokens/s and speedups change from run to
 * run, while runs, accuracies, intervals and steps per token are fixed by the seed.
 */
const timeless = (report: string) =>
  report
    .split('\n')
    .map((line) => {
      const cells = line.split(/ {2,}/);
      if (/^(plan|twin|baseline) /.test(line)) cells[3] = '<tokens/s>';
      if (/^(cache alone|decode rule alone|both) /.test(line)) cells[cells.length - 1] = '<speedup>';
      return cells.join('  ');
    })
    .join('\n');

interface Json {
  runs: {
    role: string;
    plan: string;
    text?: string;
    same_as?: string;
    accuracy: number;
    correct: number;
    tokens_per_s: number;
    steps_per_token: number;
  }[];
  effects: {
    effect: string;
    of: string;
    against: string;
    accuracy_delta: number;
    ci95: [number, number];
    speedup: number;
  }[];
  problems: {
    prompt: string;
    plan: { correct: boolean };
    twin: { correct: boolean };
    baseline: { correct: boolean; steps: number; tokens: number };
  }[];
}

describe('kvplan eval --ablate', () => {
  test('the report: three runs, then the cache alone, the decode rule alone and both', async () => {
    const r = await runCli([
      'eval',
      '--plan',
      'examples/fast-dllm-dual.kvp',
      '--n',
      '3',
      '--ablate',
      '--threads',
      '1',
    ]);
    expectOnlyProgress(r.stderr, 'eval', 9, 'problems');
    expect(r.code).toBe(0);
    expect(timeless(r.stdout)).toMatchSnapshot();
  });

  test('the JSON: effects are the paired differences and ratios of the runs it lists', async () => {
    const r = await runCli(['eval', '--plan', 'examples/sparse-dllm.kvp', '--n', '3', '--ablate', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as Json;
    expect(j.problems.map((p) => p.prompt)).toEqual(heldOutProblems('count', 3).map((p) => p.prompt));
    const run = (role: string) => j.runs.find((x) => x.role === role);
    for (const x of j.runs) {
      const key = x.role as 'plan' | 'twin' | 'baseline';
      expect(x.correct).toBe(j.problems.filter((p) => p[key].correct).length);
      expect(x.accuracy).toBe(x.correct / 3);
    }
    for (const e of j.effects) {
      const [of, against] = [run(e.of), run(e.against)];
      expect(e.accuracy_delta).toBeCloseTo(
        (of?.accuracy ?? Number.NaN) - (against?.accuracy ?? Number.NaN),
        12,
      );
      expect(e.speedup).toBeCloseTo(
        (of?.tokens_per_s ?? Number.NaN) / (against?.tokens_per_s ?? Number.NaN),
        9,
      );
      expect(e.ci95[0]).toBeLessThanOrEqual(e.accuracy_delta);
      expect(e.ci95[1]).toBeGreaterThanOrEqual(e.accuracy_delta);
    }
    expect(j.effects.map((e) => e.effect)).toEqual(['cache alone', 'decode rule alone', 'both']);
    // Sparse-dLLM decodes like the baseline: its twin is the baseline, run once.
    expect(run('baseline')?.same_as).toBe('twin');
    expect(j.effects[1]).toMatchObject({ accuracy_delta: 0, speedup: 1 });
    // The twin and the baseline are printed as plans that check on their own.
    for (const role of ['twin', 'baseline']) {
      const text = run(role)?.text ?? '';
      expect(checkSource({ path: role, text }).plans.map((p) => p.plan.name)).toEqual([run(role)?.plan]);
    }
    // One token per step, and the baseline pays steps for the EOS fill it commits before the answer.
    const base = j.problems.map((p) => p.baseline);
    expect(run('baseline')?.steps_per_token).toBeCloseTo(
      base.reduce((a, p) => a + p.steps, 0) / base.reduce((a, p) => a + p.tokens, 0),
      12,
    );
  });

  test('exit codes as eval: a plan the model cannot run is 1, a bad count is 2', async () => {
    const v2 = await runCli(['eval', '--plan', 'examples/fast-dllm-v2.kvp', '--n', '1', '--ablate']);
    expect(v2.code).toBe(1);
    expect(v2.stderr).toMatch(/decodes with an AR shift/);
    const gen = await runCli([
      'eval',
      '--plan',
      'examples/dkv-prefill.kvp',
      '--n',
      '1',
      '--ablate',
      '--gen-length',
      '5000',
    ]);
    expect(gen.code).toBe(1);
    expect(gen.stderr).toMatch(/cannot derive the baseline \(block 5000\)/);
    const n = await runCli(['eval', '--plan', 'examples/baseline.kvp', '--n', 'x', '--ablate']);
    expect(n.code).toBe(2);
  });
});
