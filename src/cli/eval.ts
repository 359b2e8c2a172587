import { CompilerError } from '../backends/cpu/compilerError.ts';
import { BackendUnavailable, isRunBackend, prepareBackend, runBackends } from '../backends/registry.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import { printPlan } from '../dsl/printer.ts';
import { type Ablation, ablate, type Contrast, contrastsOf, type Effect, type Role } from '../eval/ablate.ts';
import { type EvalResult, evaluateOnModel, type ModelRun, type ProblemResult } from '../eval/evaluate.ts';
import { defaultTask, heldOutCount, heldOutProblems, type Problem, tasks } from '../eval/tasks.ts';
import { fmt, table } from '../report/table.ts';
import { GenerationError } from '../runtime/generationError.ts';
import type { OpenedModel } from '../runtime/openModel.ts';
import { planOnModel } from '../runtime/prepare.ts';
import { blockLength } from '../runtime/simulate.ts';
import { TokenizerError } from '../runtime/tokenizer.ts';
import { canvasFits, checkRunCost, generationsCost, modelsWord } from './estimate.ts';
import { Exit, type Io } from './io.ts';
import { openModelFor } from './openModel.ts';
import { fitsModelDepth, loadPlans } from './plans.ts';
import { withProgress } from './progress.ts';

export interface EvalCommandOptions {
  readonly model?: string;
  readonly plan: string;
  readonly task?: string;
  readonly n: number;
  readonly backend: string;
  readonly genLength: number;
  readonly batch: number;
  readonly seed: number;
  readonly threads: number;
  readonly set?: Map<string, string>;
  readonly json?: boolean;
  readonly show?: boolean;
  readonly ablate?: boolean;
}

export const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

const right = (r: EvalResult) => r.problems.filter((p) => p.correct).length;

function report(r: EvalResult, backend: string, modelName: string): string {
  return [
    `plan ${r.plan}  task ${r.task}  model ${modelName}  backend ${backend}`,
    `accuracy ${percent(r.accuracy)} (${right(r)}/${r.n})  ${r.tokensPerSecond.toFixed(1)} tokens/s  ${r.meanSteps.toFixed(1)} steps per problem  ${r.stepsPerToken.toFixed(3)} steps per generated token`,
    '',
  ].join('\n');
}

const problemJson = (p: ProblemResult) => ({
  output: p.output,
  correct: p.correct,
  steps: p.steps,
  tokens: p.tokens,
});

/** A problem with its answer, as `--json` lists it. */
export const answeredJson = (p: ProblemResult) => ({
  prompt: p.problem.prompt,
  answer: p.problem.answer,
  ...problemJson(p),
});

export const runJson = (r: EvalResult) => ({
  accuracy: r.accuracy,
  correct: right(r),
  tokens_per_s: r.tokensPerSecond,
  mean_steps: r.meanSteps,
  steps_per_token: r.stepsPerToken,
});

/** Accuracy points with a sign: `+2.5`, `-10.0`. */
export const points = (x: number) =>
  Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}` : '-';

export const roles: readonly Role[] = ['plan', 'twin', 'baseline'];

/** The three runs, then the three effects: the `--ablate` report (docs/eval.md, "Ablation"). */
export function ablationReport(a: Ablation, head: string): string {
  // One left-aligned column for the run and its plan, so that the names line up.
  const width = Math.max(...roles.map((role) => role.length));
  const runs = table(
    ['run', 'accuracy', 'tokens/s', 'steps/token'],
    roles.map((role) => {
      const r = a.runs[role];
      const shared = a.shared.get(role);
      return [
        `${role.padEnd(width)}  ${a.plans[role].plan.name}${shared ? ` (= ${shared})` : ''}`,
        `${percent(r.accuracy)} (${right(r)}/${r.n})`,
        fmt(r.tokensPerSecond),
        fmt(r.stepsPerToken),
      ];
    }),
  );
  const effects = table(
    ['effect', 'compares', 'Δ acc (pts)', '95% CI (pts)', 'speedup'],
    a.effects.map((e) => [
      e.name,
      `${e.of} vs ${e.against}`,
      points(e.accuracyDelta),
      `[${points(e.ci.lo)}, ${points(e.ci.hi)}]`,
      `${fmt(e.speedup)}x`,
    ]),
  );
  return [
    head,
    '',
    runs,
    '',
    effects,
    '',
    `Δ acc is paired on the same ${a.runs.plan.n} problems, with a 95% interval by Newcombe's hybrid score`,
    "method for paired proportions (1998); tokens/s counts generated tokens only. A run marked '= x'",
    'is the same plan as run x and shares its result. --json prints the twin and the baseline.',
    '',
  ].join('\n');
}

export const ciMethod = 'Newcombe (1998) hybrid score interval for paired proportions (method 10), 95%';

/** A paired contrast between two runs, as `--json` gives it. */
export const contrastJson = (c: Contrast) => ({
  accuracy_delta: c.accuracyDelta,
  ci95: [c.ci.lo, c.ci.hi],
  speedup: c.speedup,
});

export const effectJson = (e: Effect) => ({
  effect: e.name,
  of: e.of,
  against: e.against,
  ...contrastJson(e),
});

function ablationJson(a: Ablation, info: Readonly<Record<string, unknown>>) {
  return {
    ...info,
    ci_method: ciMethod,
    runs: roles.map((role) => ({
      role,
      plan: a.plans[role].plan.name,
      ...(role === 'plan' ? {} : { text: `${printPlan(a.plans[role].plan)}\n` }),
      ...(a.shared.has(role) ? { same_as: a.shared.get(role) } : {}),
      ...runJson(a.runs[role]),
    })),
    effects: a.effects.map(effectJson),
    problems: a.runs.plan.problems.map((p, i) => ({
      prompt: p.problem.prompt,
      answer: p.problem.answer,
      ...Object.fromEntries(
        roles.map((role) => [role, problemJson(a.runs[role].problems[i] as ProblemResult)]),
      ),
    })),
  };
}

interface Reporting {
  readonly io: Io;
  readonly json: boolean;
  readonly show: boolean;
  /** What the run was, for the JSON. */
  readonly info: Readonly<Record<string, unknown>>;
  /** The first line of the text report. */
  readonly head: string;
}

/** `--ablate`: the plan, its decode-matched twin and the one-token-per-step baseline. */
async function runAblation(plan: CheckedPlan, run: ModelRun, r: Reporting): Promise<number> {
  const c = contrastsOf(plan, run.genLength);
  if (!c.ok) {
    r.io.err(`kvplan: cannot derive ${c.what}: ${c.diagnostics.map((d) => d.message).join('; ')}\n`);
    return Exit.failed;
  }
  const n = run.problems.length;
  const work = { command: 'eval', total: roles.length * n, unit: 'problems' };
  const a = await withProgress(r.io, work, async (progress) => {
    // Each run's problems count after the earlier roles' (a run a role shares with an earlier
    // one is not run again, and is done at once).
    let before = 0;
    const counted = { ...run, onProgress: (done: number) => progress.update(before + done) };
    const done = await ablate({ plan, twin: c.twin, baseline: c.baseline }, counted, (role) => {
      before = roles.indexOf(role) * n;
    });
    progress.update(work.total);
    return done;
  });
  for (const [i, p] of (r.show ? a.runs.plan.problems : []).entries()) {
    const marks = roles.map((role) => (a.runs[role].problems[i]?.correct ? 'ok  ' : 'FAIL')).join(' ');
    r.io.err(`${marks}  ${p.problem.prompt}${p.output}  (expected ${p.problem.answer})\n`);
  }
  r.io.out(r.json ? `${JSON.stringify(ablationJson(a, r.info), null, 2)}\n` : ablationReport(a, r.head));
  return Exit.ok;
}

/** Refuses (exit 2) more held-out problems than the task has, before any work. */
export function heldOutFits(task: string, n: number, io: Io): boolean {
  const have = heldOutCount(task);
  if (n <= have) return true;
  io.err(`kvplan: --n ${n}: task ${task} has ${have.toLocaleString('en-US')} held-out problems\n`);
  return false;
}

/**
 * The canvas, memory and work of an evaluation, checked before the backend is prepared: the exit
 * code of a refusal, or undefined (with the estimate printed when the run is long).
 */
function checkEvalCost(
  model: OpenedModel,
  plan: CheckedPlan,
  problems: readonly Problem[],
  o: EvalCommandOptions,
  io: Io,
): number | undefined {
  const { genLength } = o;
  const rowsPerPrompt = Math.max(genLength, blockLength(plan, genLength));
  const runs = o.ablate ? 3 : 1;
  const cost = generationsCost(model, problems, rowsPerPrompt, runs, o);
  if (!canvasFits(cost.rows - rowsPerPrompt, rowsPerPrompt, 'a shorter --gen-length', io)) return Exit.usage;
  // Every step commits at least one position of each sequence: at most rowsPerPrompt steps.
  return checkRunCost(
    {
      command: 'eval',
      what: `${problems.length.toLocaleString('en-US')} problems${o.ablate ? ' × 3 runs' : ''}, at most ${rowsPerPrompt.toLocaleString('en-US')} steps each on ${modelsWord([model.config])}`,
      backend: o.backend,
      flops: cost.flops,
      memory: cost.memory,
      fix: 'use a smaller --batch or --gen-length',
    },
    io,
  );
}

export async function runEval(o: EvalCommandOptions, io: Io): Promise<number> {
  const task = o.task ?? defaultTask;
  if (!tasks.has(task)) {
    io.err(`kvplan: unknown task '${task}'; tasks: ${[...tasks.keys()].join(', ')}\n`);
    return Exit.usage;
  }
  const backend = o.backend;
  if (!isRunBackend(backend)) {
    io.err(`kvplan: --backend ${backend} is not available for eval; backends: ${runBackends.join(', ')}\n`);
    return Exit.usage;
  }
  const { n, genLength, batch, seed } = o;
  if (!heldOutFits(task, n, io)) return Exit.usage;
  const model = await openModelFor(o.model, io);
  if (typeof model === 'number') return model;
  const { plans, codes } = loadPlans([o.plan], o.set ?? new Map(), io);
  const loaded = plans[0];
  if (!loaded) return Math.max(Exit.failed, ...codes);
  if (!fitsModelDepth(loaded, model.config, io)) return Exit.failed;
  const plan = loaded.checked;
  const fit = planOnModel(plan, model.config);
  if (!fit.ok) {
    io.err(`kvplan: ${fit.error}\n`);
    return Exit.failed;
  }
  if (fit.warning) io.err(`kvplan: warning: ${fit.warning}\n`);
  try {
    const problems = heldOutProblems(task, n, seed);
    const refused = checkEvalCost(model, plan, problems, o, io);
    if (refused !== undefined) return refused;
    const run: ModelRun = {
      model,
      prepare: (p, config, weights, maxCanvas) =>
        prepareBackend(backend, p, config, weights, maxCanvas, o.threads),
      task,
      problems,
      seed,
      genLength,
      batchSize: batch,
    };
    const info = { plan: plan.plan.name, task, model: model.path, backend, seed, gen_length: genLength };
    if (o.ablate) {
      const head = `ablation of plan ${plan.plan.name}  task ${task}  model ${model.config.name}  backend ${backend}  ${n} problems (seed ${seed})`;
      return await runAblation(plan, run, { io, json: o.json === true, show: o.show === true, info, head });
    }
    const result = await withProgress(io, { command: 'eval', total: n, unit: 'problems' }, (progress) =>
      evaluateOnModel(plan, { ...run, onProgress: (done) => progress.update(done) }),
    );
    for (const r of o.show ? result.problems : [])
      io.err(
        `${r.correct ? 'ok  ' : 'FAIL'}  ${r.problem.prompt}${r.output}  (expected ${r.problem.answer})\n`,
      );
    if (o.json) {
      const problems = result.problems.map(answeredJson);
      io.out(`${JSON.stringify({ ...info, n: result.n, ...runJson(result), problems }, null, 2)}\n`);
    } else io.out(report(result, backend, model.config.name));
    return Exit.ok;
  } catch (e) {
    if (
      !(
        e instanceof BackendUnavailable ||
        e instanceof CompilerError ||
        e instanceof TokenizerError ||
        e instanceof GenerationError
      )
    )
      throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.failed;
  }
}
