import { CompilerError } from '../backends/cpu/compilerError.ts';
import { BackendUnavailable, isRunBackend, prepareBackend, runBackends } from '../backends/registry.ts';
import { bundledPlansDir, bundledTasks } from '../eval/bundledModels.ts';
import { evaluateSuite, examplePlanFiles, type SuiteRow, suiteRunsPerPlan } from '../eval/suite.ts';
import { defaultTask, heldOutProblems, tasks } from '../eval/tasks.ts';
import { describeFsError } from '../model/fsError.ts';
import { fmt, table } from '../report/table.ts';
import { GenerationError } from '../runtime/generationError.ts';
import { blockLength } from '../runtime/simulate.ts';
import { runBundledDemo } from './demoBundled.ts';
import { canvasFits, checkRunCost, generationsCost, modelsWord } from './estimate.ts';
import { answeredJson, ciMethod, contrastJson, heldOutFits, percent, points } from './eval.ts';
import { Exit, type Io } from './io.ts';
import { openModelFor } from './openModel.ts';
import { fitsModelDepth, loadPlans } from './plans.ts';
import { withProgress } from './progress.ts';

export interface DemoCommandOptions {
  readonly model?: string;
  readonly task?: string;
  readonly n: number;
  readonly show: number;
  readonly backend: string;
  readonly genLength: number;
  readonly batch: number;
  readonly plans?: string;
  readonly threads: number;
  readonly json?: boolean;
}

/**
 * The accuracy / speedup table, in the papers' protocol (both numbers side by side): against the
 * no-cache baseline (the cache and the decode rule together), and against the plan's own no-cache
 * twin (the cache alone, docs/eval.md).
 */
export function suiteTable(rows: readonly SuiteRow[]): string {
  return table(
    [
      'plan',
      'accuracy',
      'Δ acc (pts)',
      'tokens/s',
      'speedup',
      'steps',
      'steps/token',
      'cache Δ acc',
      'cache speedup',
    ],
    rows.map((r) =>
      r.skipped
        ? [r.plan, 'n/a', '-', '-', '-', '-', '-', '-', '-']
        : [
            r.plan,
            percent(r.accuracy),
            points(r.accuracyDelta),
            fmt(r.tokensPerSecond),
            `${fmt(r.speedup)}x`,
            fmt(r.meanSteps),
            fmt(r.stepsPerToken),
            r.twin ? points(r.twin.cache.accuracyDelta) : '-',
            r.twin ? `${fmt(r.twin.cache.speedup)}x` : '-',
          ],
    ),
  );
}

/** A plan's lines as it finishes: its accuracy and speed, and its first `show` answers. */
function reportRow(row: SuiteRow | undefined, show: number, io: Io): void {
  if (!row) return;
  if (row.skipped) {
    io.out(`${row.plan}: not run: ${row.skipped}\n\n`);
    return;
  }
  const right = row.problems.filter((p) => p.correct).length;
  io.out(
    `${row.plan}: ${right}/${row.problems.length} correct, ${fmt(row.tokensPerSecond)} tokens/s${row.warning ? ` (${row.warning})` : ''}\n`,
  );
  for (const p of row.problems.slice(0, show)) {
    io.out(`  ${p.correct ? 'ok  ' : 'FAIL'}  ${p.problem.prompt}${p.output}\n`);
  }
  io.out('\n');
}

/** `--json`: a table row (a plan not run: why), and the plan's answers. */
const rowJson = (r: SuiteRow) =>
  r.skipped
    ? { plan: r.plan, path: r.path, skipped: r.skipped }
    : {
        plan: r.plan,
        path: r.path,
        accuracy: r.accuracy,
        accuracy_delta: r.accuracyDelta,
        tokens_per_s: r.tokensPerSecond,
        speedup: r.speedup,
        mean_steps: r.meanSteps,
        steps_per_token: r.stepsPerToken,
        twin: r.twin
          ? {
              plan: r.twin.plan,
              accuracy: r.twin.accuracy,
              tokens_per_s: r.twin.tokensPerSecond,
              steps_per_token: r.twin.stepsPerToken,
              cache: contrastJson(r.twin.cache),
            }
          : null,
        ...(r.warning ? { warning: r.warning } : {}),
        problems: r.problems.map(answeredJson),
      };

export async function runDemo(o: DemoCommandOptions, io: Io): Promise<number> {
  const bundled = o.model === undefined;
  const task = o.task ?? (bundled ? undefined : defaultTask);
  const known = bundled ? bundledTasks() : [...tasks.keys()];
  if (task !== undefined && !known.includes(task)) {
    io.err(
      `kvplan: ${tasks.has(task) ? `no bundled model was trained on task '${task}'` : `unknown task '${task}'`}; tasks: ${known.join(', ')}${bundled ? ' (or name a model with --model)' : ''}\n`,
    );
    return Exit.usage;
  }
  if (!isRunBackend(o.backend)) {
    io.err(`kvplan: --backend ${o.backend} is not available for demo; backends: ${runBackends.join(', ')}\n`);
    return Exit.usage;
  }
  const backend = o.backend;
  const { n, show, genLength, batch } = o;
  for (const t of task === undefined ? bundledTasks() : [task]) if (!heldOutFits(t, n, io)) return Exit.usage;
  let files: string[];
  try {
    files = examplePlanFiles(o.plans ?? bundledPlansDir());
  } catch (e) {
    if (typeof (e as { code?: unknown } | null)?.code !== 'string') throw e;
    io.err(`kvplan: --plans ${o.plans}: ${describeFsError(e)} (a directory of .kvp files)\n`);
    return Exit.usage;
  }
  if (bundled) {
    const loaded = loadPlans(files, new Map(), io);
    if (loaded.plans.length === 0) {
      io.err(`kvplan: no plans in ${o.plans ?? bundledPlansDir()}\n`);
      return Math.max(Exit.failed, ...loaded.codes);
    }
    const code = await runBundledDemo({ ...o, backend, plans: loaded.plans, ...(task ? { task } : {}) }, io);
    return Math.max(code, ...loaded.codes);
  }
  const named = task ?? defaultTask;
  const model = await openModelFor(o.model, io);
  if (typeof model === 'number') return model;
  const loaded = loadPlans(files, new Map(), io);
  const codes = [...loaded.codes];
  // A plan whose layer rules miss the model's layers is reported and left out of the table.
  const plans = loaded.plans.filter((p) => fitsModelDepth(p, model.config, io));
  if (plans.length < loaded.plans.length) codes.push(Exit.failed);
  if (plans.length === 0) {
    io.err(`kvplan: no plans in ${o.plans ?? bundledPlansDir()}\n`);
    return Math.max(Exit.failed, ...codes);
  }
  const problems = heldOutProblems(named, n);
  const c = model.config;
  const rowsPerPrompt = Math.max(genLength, ...plans.map((p) => blockLength(p.checked, genLength)));
  const cost = generationsCost(model, problems, rowsPerPrompt, suiteRunsPerPlan * plans.length, o);
  if (!canvasFits(cost.rows - rowsPerPrompt, rowsPerPrompt, 'a shorter --gen-length', io)) return Exit.usage;
  const refused = checkRunCost(
    {
      command: 'demo',
      what: `${plans.length} plans × ${suiteRunsPerPlan} runs of ${problems.length} problems, at most ${rowsPerPrompt.toLocaleString('en-US')} steps each on ${modelsWord([c])}`,
      backend,
      flops: cost.flops,
      memory: cost.memory,
      fix: 'use a smaller --batch or --gen-length',
    },
    io,
  );
  if (refused !== undefined) return refused;
  if (!o.json)
    io.out(
      `kvplan demo: model ${c.name} (${c.layers} layers, d_model ${c.dModel}, ${c.heads} heads / ${c.kvHeads} kv) from ${model.path}\n` +
        `task ${named}: ${tasks.get(named)?.description}; ${problems.length} held-out problems, ${genLength} generated positions, ${o.backend} backend\n\n`,
    );
  const work = { command: 'demo', total: suiteRunsPerPlan * plans.length, unit: 'runs' };
  try {
    const rows = await withProgress(io, work, (progress) =>
      evaluateSuite({
        model,
        plans,
        prepare: (plan, config, weights, maxCanvas) =>
          prepareBackend(backend, plan, config, weights, maxCanvas, o.threads),
        task: named,
        problems,
        genLength,
        batchSize: batch,
        onProgress: (done) => progress.update(done),
        ...(o.json ? {} : { onPlan: ({ row }) => reportRow(row, show, progress.io) }),
      }),
    );
    const info = {
      model: model.path,
      config: c.name,
      task: named,
      n: problems.length,
      gen_length: genLength,
      backend,
    };
    io.out(
      o.json
        ? `${JSON.stringify({ ...info, ci_method: ciMethod, plans: rows.map(rowJson) }, null, 2)}\n`
        : `${suiteTable(rows)}\n`,
    );
    return Math.max(Exit.ok, ...codes);
  } catch (e) {
    if (!(e instanceof BackendUnavailable || e instanceof CompilerError || e instanceof GenerationError))
      throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.failed;
  }
}
