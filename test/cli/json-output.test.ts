// `--json` of check, verify and demo: stdout is JSON and nothing else (progress stays on stderr),
// and it holds what the text output of the same run shows.
import { copyFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { percent, points } from '../../src/cli/eval.ts';
import { fmt } from '../../src/report/table.ts';
import { brokenPlan, runCli, tempFiles } from '../support/cli.ts';
import { expectOnlyProgress } from './progressLines.ts';

const tmp = tempFiles({ 'broken.kvp': brokenPlan });
// Two plans for the demos: the baseline and an approximate plan with a cache.
const plans = tempFiles({});
afterAll(() => {
  tmp.cleanup();
  plans.cleanup();
});
for (const f of ['baseline.kvp', 'fast-dllm-dual.kvp']) copyFileSync(`examples/${f}`, plans.path(f));
const plansDir = ['--plans', plans.dir];

/** One JSON value per line (check and verify print one object per file or plan). */
const jsonLines = (stdout: string): Record<string, unknown>[] =>
  stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** The rows of a table of src/report/table.ts under the header starting `first`, split into cells. */
function tableRows(text: string, first: string): string[][] {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => l.startsWith(first));
  expect(header).toBeGreaterThanOrEqual(0);
  const body = lines.slice(header + 2);
  return body
    .slice(
      0,
      body.findIndex((l) => l.trim() === ''),
    )
    .map((l) => l.trim().split(/ {2,}/));
}

interface CheckJson {
  path: string;
  ok: boolean;
  errors: number;
  plans: { plan: string; classification: 'exact' | 'approximate'; premise?: string }[];
  diagnostics: { severity: string; message: string; file: string; line: number; col: number }[];
}

describe('kvplan check --json', () => {
  test('one object per file: its plans and classifications, its diagnostics with file:line:col', async () => {
    const files = ['examples/baseline.kvp', 'examples/fast-dllm-dual.kvp', tmp.path('broken.kvp')];
    const text = await runCli(['check', ...files]);
    const json = await runCli(['check', '--json', ...files]);
    expect([json.code, text.code]).toEqual([1, 1]);
    // The diagnostics are data in stdout, not text on stderr.
    expect(json.stderr).toBe('');
    const checked = jsonLines(json.stdout) as unknown as CheckJson[];
    expect(checked.map((f) => [f.path, f.ok])).toEqual([
      [files[0], true],
      [files[1], true],
      [files[2], false],
    ]);
    const lines = checked.flatMap((f) =>
      f.ok
        ? f.plans.map(
            (p) =>
              `ok  ${f.path}  ${p.plan}  ${p.classification === 'exact' ? 'exact' : `approximate: ${p.premise}`}\n`,
          )
        : [`error  ${f.path}  ${f.errors} errors\n`],
    );
    expect(lines.join('')).toBe(text.stdout);
    const located = checked.flatMap((f) =>
      f.diagnostics.map((d) => `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`),
    );
    expect(located).toHaveLength(2);
    expect(located).toEqual(text.stderr.split('\n').filter((l) => l.startsWith(tmp.path('broken.kvp'))));
  });
});

interface VerifyJson {
  path: string;
  plan: string;
  ok: boolean;
  exact: boolean;
  cases: number;
  checks: { name: string; ok: boolean; detail: string }[];
  max_deviation: number;
  refresh_firings: { rule: string; line: number; steps: number; of: number }[];
}

describe('kvplan verify --json', () => {
  test("one object per plan with its checks and verdict, the same as the text's lines", async () => {
    const args = ['verify', 'examples/baseline.kvp', 'examples/fast-dllm-dual.kvp', '--set', 'block=4'];
    const text = await runCli([...args, '--cases', '1']);
    const json = await runCli([...args, '--cases', '1', '--json']);
    expect([json.code, text.code]).toEqual([0, 0]);
    expectOnlyProgress(json.stderr, 'verify', 2, 'cases');
    const verified = jsonLines(json.stdout) as unknown as VerifyJson[];
    expect(verified.map((p) => [p.path, p.plan, p.ok, p.exact, p.cases])).toEqual([
      ['examples/baseline.kvp', 'baseline', true, true, 1],
      ['examples/fast-dllm-dual.kvp', 'fast_dllm_dual', true, false, 1],
    ]);
    expect(verified[1]?.refresh_firings.map((f) => f.rule)).toEqual(['refresh all when block_start']);
    // Verification is seeded: the text's line of each plan shows the same checks and deviation.
    const lines = text.stdout.trimEnd().split('\n');
    for (const [i, p] of verified.entries()) {
      const line = lines[i] ?? '';
      expect(line.startsWith(`ok  ${p.path}  ${p.plan}  ${p.exact ? 'exact' : 'approximate'}  `)).toBe(true);
      for (const c of p.checks) expect(line).toContain(`${c.name} ${c.ok ? 'ok' : 'FAILED'} (${c.detail})`);
      expect(line).toContain(`max dev ${p.max_deviation.toExponential(2)}`);
    }
  });
});

interface Effect {
  effect: string;
  accuracy_delta: number;
  ci95: [number, number];
  speedup: number;
}

interface BundledJson {
  plans: {
    plan: string;
    model: string;
    accuracy: number;
    steps_per_token: number;
    runs: { role: string; plan: string }[];
    effects: Effect[];
    problems: { prompt: string; correct: boolean }[];
  }[];
  skipped: unknown[];
}

interface SuiteJson {
  model: string;
  plans: {
    plan: string;
    accuracy: number;
    accuracy_delta: number;
    steps_per_token: number;
    twin: { plan: string; cache: Effect } | null;
  }[];
}

const withCi = (e: Effect | undefined) =>
  e ? `${points(e.accuracy_delta)} [${points(e.ci95[0])}, ${points(e.ci95[1])}]` : '-';

describe('kvplan demo --json', () => {
  test('bundled models: every plan with its model, accuracy, runs and the three effects with CIs', async () => {
    const args = ['demo', ...plansDir, '--n', '1', '--task', 'acc', '--show', '0'];
    const text = await runCli(args);
    const json = await runCli([...args, '--json']);
    expect([json.code, text.code]).toEqual([0, 0]);
    expectOnlyProgress(json.stderr, 'demo', 6, 'runs');
    // stdout is one JSON document: no header, no per-plan lines.
    const j = JSON.parse(json.stdout) as BundledJson;
    expect(j.skipped).toEqual([]);
    const rows = tableRows(text.stdout, 'plan ');
    // Tokens/s differ between the runs; accuracy, steps and the paired effects do not.
    expect(
      j.plans.map((p) => {
        const e = (name: string) => p.effects.find((x) => x.effect === name);
        return [
          p.plan,
          p.model,
          percent(p.accuracy),
          fmt(p.steps_per_token),
          withCi(e('cache alone')),
          withCi(e('decode rule alone')),
          withCi(e('both')),
        ];
      }),
    ).toEqual(rows.map((r) => [r[0], r[1], r[2], r[4], r[5], r[7], r[9]]));
    expect(j.plans.map((p) => p.runs.map((r) => r.role))).toEqual([
      ['plan', 'twin', 'baseline'],
      ['plan', 'twin', 'baseline'],
    ]);
    expect(j.plans.every((p) => p.problems.length === 1)).toBe(true);
  });

  test('--model: the suite table as JSON, each plan against the baseline and its twin', async () => {
    const args = ['demo', '--model', 'models/tiny-dllm/model.onnx', ...plansDir, '--n', '2', '--show', '0'];
    const text = await runCli(args);
    const json = await runCli([...args, '--json']);
    expect([json.code, text.code]).toEqual([0, 0]);
    expectOnlyProgress(json.stderr, 'demo', 4, 'runs');
    const j = JSON.parse(json.stdout) as SuiteJson;
    expect(j.model).toBe('models/tiny-dllm/model.onnx');
    expect(
      j.plans.map((p) => [
        p.plan,
        percent(p.accuracy),
        points(p.accuracy_delta),
        fmt(p.steps_per_token),
        p.twin ? points(p.twin.cache.accuracy_delta) : '-',
      ]),
    ).toEqual(tableRows(text.stdout, 'plan ').map((r) => [r[0], r[1], r[2], r[6], r[7]]));
  });
});
