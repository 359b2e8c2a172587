/**
 * `kvplan demo` without `--model`: every plan on the bundled model made for its attention
 * structure, with the three effects of the papers' ablations (cache alone, decode rule alone, both).
 */
import { CompilerError } from '../backends/cpu/compilerError.ts';
import { BackendUnavailable, prepareBackend, type RunBackend } from '../backends/registry.ts';
import { bundledModelFor } from '../eval/bundled.ts';
import { type BundledModel, bundledModelDir, bundledModels } from '../eval/bundledModels.ts';
import {
  type BundledPlan,
  type BundledRow,
  type BundledSkip,
  bundledRunsPerPlan,
  evaluateBundled,
} from '../eval/bundledSuite.ts';
import { heldOutProblems } from '../eval/tasks.ts';
import type { ModelConfig } from '../model/config.ts';
import { fmt, table } from '../report/table.ts';
import { GenerationError } from '../runtime/generationError.ts';
import { type OpenedModel, openModel } from '../runtime/openModel.ts';
import { blockLength } from '../runtime/simulate.ts';
import type { MemoryNeed } from '../runtime/workEstimate.ts';
import { canvasFits, checkRunCost, generationsCost, modelsWord } from './estimate.ts';
import { answeredJson, ciMethod, effectJson, percent, points, roles, runJson } from './eval.ts';
import { Exit, type Io } from './io.ts';
import { withProgress } from './progress.ts';

export interface BundledDemoOptions {
  readonly plans: readonly BundledPlan[];
  readonly task?: string;
  readonly n: number;
  readonly show: number;
  readonly backend: RunBackend;
  readonly genLength: number;
  readonly batch: number;
  readonly threads: number;
  readonly json?: boolean;
}

const effect = (r: BundledRow, name: string) => r.effects.find((e) => e.name === name);

const withCi = (r: BundledRow, name: string): string => {
  const e = effect(r, name);
  return e ? `${points(e.accuracyDelta)} [${points(e.ci.lo)}, ${points(e.ci.hi)}]` : '-';
};

const speed = (r: BundledRow, name: string): string => {
  const e = effect(r, name);
  return e ? `${fmt(e.speedup)}x` : '-';
};

/** A plan's lines as it finishes: its accuracy and speed, and its first `show` answers. */
function reportPlan(
  { plan, row, skip }: { plan: string; row?: BundledRow; skip?: BundledSkip },
  show: number,
  io: Io,
): void {
  if (skip) io.out(`${plan}: not run: ${skip.reason}\n\n`);
  if (!row) return;
  const right = row.runs.plan.problems.filter((p) => p.correct).length;
  io.out(
    `${plan} on ${row.model} (${row.task}${row.overrides.length > 0 ? `, ${row.overrides.join(', ')}` : ''}): ${right}/${row.runs.plan.n} correct, ${fmt(row.runs.plan.tokensPerSecond)} tokens/s\n`,
  );
  for (const p of row.runs.plan.problems.slice(0, show))
    io.out(`  ${p.correct ? 'ok  ' : 'FAIL'}  ${p.problem.prompt}${p.output}\n`);
  io.out('\n');
}

/** One row per plan: its model, accuracy, and each effect's accuracy delta (95% CI) and speedup. */
export function bundledTable(rows: readonly BundledRow[], skipped: readonly BundledSkip[]): string {
  return table(
    [
      'plan',
      'model',
      'accuracy',
      'tokens/s',
      'steps/token',
      'cache Δ acc [95% CI]',
      'cache speedup',
      'decode Δ acc',
      'decode speedup',
      'both Δ acc',
      'both speedup',
    ],
    [
      ...rows.map((r) => [
        r.plan,
        `${r.model}${r.overrides.length > 0 ? ` (${r.overrides.join(', ')})` : ''}`,
        percent(r.runs.plan.accuracy),
        fmt(r.runs.plan.tokensPerSecond),
        fmt(r.runs.plan.stepsPerToken),
        withCi(r, 'cache alone'),
        speed(r, 'cache alone'),
        withCi(r, 'decode rule alone'),
        speed(r, 'decode rule alone'),
        withCi(r, 'both'),
        speed(r, 'both'),
      ]),
      ...skipped.map((s) => [s.plan, 'n/a', '-', '-', '-', '-', '-', '-', '-', '-', '-']),
    ],
  );
}

/** `--json`: what the table shows, each plan's three runs, and the plan's answers. */
function bundledJson(o: BundledDemoOptions, rows: readonly BundledRow[], skipped: readonly BundledSkip[]) {
  return {
    n: o.n,
    gen_length: o.genLength,
    backend: o.backend,
    ci_method: ciMethod,
    plans: rows.map((r) => ({
      plan: r.plan,
      path: r.path,
      model: r.model,
      overrides: r.overrides,
      task: r.task,
      ...runJson(r.runs.plan),
      runs: roles.map((role) => ({ role, plan: r.runs[role].plan, ...runJson(r.runs[role]) })),
      effects: r.effects.map(effectJson),
      problems: r.runs.plan.problems.map(answeredJson),
    })),
    skipped,
  };
}

/**
 * The canvas, memory and work of the whole demo, checked before any plan runs: each plan's three
 * runs on its model, over at most the generated length (or block) steps. The exit code of a
 * refusal, or undefined (with the estimate printed when the demo is long).
 */
function checkBundledCost(
  o: BundledDemoOptions,
  open: (m: BundledModel) => OpenedModel,
  io: Io,
): number | undefined {
  let flops = 0;
  let steps = o.genLength;
  let memory: MemoryNeed | undefined;
  const configs = new Map<string, ModelConfig>();
  for (const p of o.plans) {
    const m = bundledModelFor(p.checked);
    if (m === undefined) continue;
    const model = open(m);
    configs.set(m.name, model.config);
    const problems = heldOutProblems(o.task ?? (m.tasks[0] as string), o.n);
    const rowsPerPrompt = Math.max(o.genLength, m.trainedBlock ?? 0, blockLength(p.checked, o.genLength));
    const cost = generationsCost(model, problems, rowsPerPrompt, bundledRunsPerPlan, o);
    if (!canvasFits(cost.rows - rowsPerPrompt, rowsPerPrompt, 'a shorter --gen-length', io))
      return Exit.usage;
    flops += cost.flops;
    steps = Math.max(steps, rowsPerPrompt);
    const total = (need: MemoryNeed) => need.weights + need.canvas;
    if (memory === undefined || total(cost.memory) > total(memory)) memory = cost.memory;
  }
  if (memory === undefined) return undefined;
  return checkRunCost(
    {
      command: 'demo',
      what: `${o.plans.length} plans × ${bundledRunsPerPlan} runs of ${o.n} problems, at most ${steps.toLocaleString('en-US')} steps each on ${modelsWord([...configs.values()])}`,
      backend: o.backend,
      flops,
      memory,
      fix: 'use a smaller --batch or --gen-length',
    },
    io,
  );
}

export async function runBundledDemo(o: BundledDemoOptions, io: Io): Promise<number> {
  const opened = new Map<string, OpenedModel>();
  const open = (m: BundledModel): OpenedModel => {
    const known = opened.get(m.name) ?? openModel(bundledModelDir(m));
    opened.set(m.name, known);
    return known;
  };
  const refused = checkBundledCost(o, open, io);
  if (refused !== undefined) return refused;
  if (!o.json)
    io.out(
      `kvplan demo: every plan on the bundled model made for its attention structure (${bundledModels.map((m) => m.name).join(', ')}); ` +
        `${o.n} held-out problems of ${o.task ?? "each model's first task"}, ${o.genLength} generated positions, ${o.backend} backend\n` +
        'each plan runs beside its decode-matched no-cache twin and the one-token-per-step baseline (docs/eval.md, "Ablation")\n\n',
    );
  const work = { command: 'demo', total: bundledRunsPerPlan * o.plans.length, unit: 'runs' };
  try {
    const { rows, skipped } = await withProgress(io, work, (progress) =>
      evaluateBundled({
        plans: o.plans,
        prepare: (plan, config, weights, maxCanvas) =>
          prepareBackend(o.backend, plan, config, weights, maxCanvas, o.threads),
        ...(o.task === undefined ? {} : { task: o.task }),
        n: o.n,
        genLength: o.genLength,
        batchSize: o.batch,
        open,
        onProgress: (done) => progress.update(done),
        ...(o.json ? {} : { onPlan: (event) => reportPlan(event, o.show, progress.io) }),
      }),
    );
    if (o.json) {
      io.out(`${JSON.stringify(bundledJson(o, rows, skipped), null, 2)}\n`);
      return Exit.ok;
    }
    io.out(`${bundledTable(rows, skipped)}\n`);
    io.out(
      `\nΔ acc in points, paired on the same problems (95% interval: Newcombe's hybrid score); cache = plan vs its twin, decode = twin vs baseline, both = plan vs baseline\n`,
    );
    return Exit.ok;
  } catch (e) {
    if (!(e instanceof BackendUnavailable || e instanceof CompilerError || e instanceof GenerationError))
      throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.failed;
  }
}
