import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { defaultTask, heldOutProblems } from '../../src/eval/tasks.ts';
import { runCli } from '../support/cli.ts';
import { expectOnlyProgress } from './progressLines.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-eval-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kvplan eval', () => {
  test('the bundled model answers held-out problems with the no-cache plan, and the JSON adds up', async () => {
    const r = await runCli([
      'eval',
      '--plan',
      'examples/baseline.kvp',
      '--task',
      defaultTask,
      '--n',
      '4',
      '--json',
    ]);
    expectOnlyProgress(r.stderr, 'eval', 4, 'problems');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as {
      accuracy: number;
      n: number;
      tokens_per_s: number;
      mean_steps: number;
      steps_per_token: number;
      problems: {
        prompt: string;
        answer: string;
        output: string;
        correct: boolean;
        steps: number;
        tokens: number;
      }[];
    };
    expect(j.n).toBe(4);
    expect(j.problems.map((p) => p.prompt)).toEqual(heldOutProblems(defaultTask, 4).map((p) => p.prompt));
    for (const p of j.problems) expect(p.correct).toBe(p.output === p.answer);
    expect(j.accuracy).toBe(j.problems.filter((p) => p.correct).length / 4);
    // The model card reports >= 90% on this task; four problems may lose one.
    expect(j.accuracy).toBeGreaterThanOrEqual(0.75);
    expect(j.mean_steps).toBe(j.problems.reduce((a, p) => a + p.steps, 0) / 4);
    expect(j.tokens_per_s).toBeGreaterThan(0);
    // Counted tokens run up to and including the first EOS: one per character in this model.
    for (const p of j.problems) expect(p.tokens).toBe(p.output.length + 1);
    const sum = (f: (p: (typeof j.problems)[number]) => number) => j.problems.reduce((a, p) => a + f(p), 0);
    expect(j.steps_per_token).toBeCloseTo(sum((p) => p.steps) / sum((p) => p.tokens), 12);
  });

  test('a plan that needs an AR-shifted model is refused, naming both', async () => {
    const r = await runCli(['eval', '--plan', 'examples/fast-dllm-v2.kvp', '--n', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /plan fast_dllm_v2 decodes with an AR shift, but model \S+ was trained without one/,
    );
  });

  test('usage errors: an unknown task and backend, a bad count', async () => {
    const task = await runCli(['eval', '--plan', 'examples/baseline.kvp', '--task', 'chess']);
    expect(task.code).toBe(2);
    expect(task.stderr).toMatch(/unknown task 'chess'; tasks: .*count/);
    const backend = await runCli(['eval', '--plan', 'examples/baseline.kvp', '--backend', 'tpu']);
    expect(backend.code).toBe(2);
    expect(backend.stderr).toMatch(
      /--backend tpu is not available for eval; backends: reference, cpu, webgpu/,
    );
    const n = await runCli(['eval', '--plan', 'examples/baseline.kvp', '--n', '0']);
    expect(n.code).toBe(2);
  });

  test('a model file that is not ONNX is an error naming the file, without a stack trace', async () => {
    const bad = join(dir, 'bad.onnx');
    copyFileSync('examples/baseline.kvp', bad);
    const r = await runCli(['eval', '--plan', 'examples/baseline.kvp', '--model', bad, '--n', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(bad);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('kvplan demo', () => {
  test('--model: every plan of a directory on that model; the table compares each with the baseline', async () => {
    const plans = join(dir, 'plans');
    mkdirSync(plans);
    for (const f of ['baseline.kvp', 'fast-dllm-dual.kvp', 'fast-dllm-v2.kvp'])
      copyFileSync(join('examples', f), join(plans, f));
    const r = await runCli([
      'demo',
      '--model',
      'models/tiny-dllm/model.onnx',
      '--plans',
      plans,
      '--n',
      '2',
      '--show',
      '1',
    ]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    const row = (plan: string) =>
      lines
        .find((l) => l.startsWith(`${plan} `))
        ?.trim()
        .split(/\s+/);
    expect(lines.find((l) => l.startsWith('plan '))).toMatch(
      /^plan +accuracy +Δ acc \(pts\) +tokens\/s +speedup +steps +steps\/token +cache Δ acc +cache speedup$/,
    );
    expect(row('baseline')?.[4]).toBe('1.00x');
    // The baseline is its own no-cache twin: the cache alone changes nothing, exactly.
    expect(row('baseline')?.slice(7)).toEqual(['+0.0', '1.00x']);
    const dual = row('fast_dllm_dual');
    expect(dual).toHaveLength(9);
    expect(dual?.[7]).toMatch(/^[+-]\d+\.\d$/);
    expect(dual?.[8]).toMatch(/^\d\S*x$/);
    // Not runnable on this model: shown, not silently dropped.
    expect(row('fast_dllm_v2')?.slice(1)).toEqual(['n/a', '-', '-', '-', '-', '-', '-', '-']);
    expect(r.stdout).toMatch(/fast_dllm_v2: not run: plan fast_dllm_v2 decodes with an AR shift/);
    // One shown answer per plan that ran.
    expect(lines.filter((l) => /^ {2}(ok|FAIL) +\S+=/.test(l))).toHaveLength(2);
  });

  test('without --model every plan runs on the bundled model made for it, with the three effects', async () => {
    const plans = join(dir, 'bundled-plans');
    mkdirSync(plans);
    for (const f of ['baseline.kvp', 'fast-dllm-dual.kvp', 'flashblock.kvp', 'fast-dllm-v2.kvp'])
      copyFileSync(join('examples', f), join(plans, f));
    // Each model on its first task: step-dllm on acc, the block-diffusion models on bub.
    const r = await runCli(['demo', '--plans', plans, '--n', '2', '--show', '1']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    const header = lines.find((l) => l.startsWith('plan '));
    expect(header).toMatch(
      /^plan +model +accuracy +tokens\/s +steps\/token +cache Δ acc \[95% CI\] +cache speedup +decode Δ acc +decode speedup +both Δ acc +both speedup$/,
    );
    const tableRows = lines.slice(lines.indexOf(header ?? ''));
    const row = (plan: string) => tableRows.find((l) => l.startsWith(`${plan} `))?.split(/ {2,}/);
    expect(row('baseline')?.[1]).toBe('step-dllm');
    expect(row('fast_dllm_dual')?.[1]).toBe('step-dllm');
    expect(row('flashblock')?.[1]).toBe('step-bd');
    // Fast-dLLM v2's blocks of 32 run at the blocks of 4 its model was trained with, and it says so.
    expect(row('fast_dllm_v2')?.[1]).toBe('step-v2 (block=4)');
    // The baseline is its own twin and its own baseline: every effect is exactly zero (one shared run).
    const effects = row('baseline')?.slice(5) ?? [];
    expect(effects).toHaveLength(6);
    for (const [i, cell] of effects.entries()) expect(cell).toMatch(i % 2 === 0 ? /^\+0\.0 \[/ : /^1\.00x$/);
    expect(r.stdout).not.toContain('n/a');
    expect(lines.filter((l) => /^ {2}(ok|FAIL) +\S+=/.test(l))).toHaveLength(4);
  });

  test('without --model, a task no bundled model was trained on is a usage error', async () => {
    const r = await runCli(['demo', '--task', 'count', '--n', '2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no bundled model was trained on task 'count'; tasks: acc, rem, bub, fib");
  });

  test('without --model, --task runs the plans whose model knows the task and says why the others did not run', async () => {
    const plans = join(dir, 'bundled-plans-task');
    mkdirSync(plans);
    for (const f of ['fast-dllm-dual.kvp', 'fast-dllm-v2.kvp'])
      copyFileSync(join('examples', f), join(plans, f));
    const r = await runCli(['demo', '--plans', plans, '--n', '1', '--show', '0', '--task', 'bub']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^fast_dllm_v2 +step-v2 \(block=4\) +\d/m);
    expect(r.stdout).toContain(
      'fast_dllm_dual: not run: its model step-dllm was not trained on task bub (only on acc, rem)',
    );
  });
});
