/**
 * `npm run bench -- quality`: every example plan on the bundled model made for its attention
 * structure (src/eval/bundled.ts), beside its decode-matched no-cache twin and the
 * one-token-per-step baseline, on the same held-out problems of each task, the CPU backend, in one
 * process: the three effects of the papers' ablations with paired 95% intervals. With --write,
 * records bench/results/quality.json and the tables of docs/results.md (whatever follows the
 * marker line there is the hand-written comparison with the papers, and is kept).
 */
import { existsSync, readFileSync } from 'node:fs';
import { prepareBackend, type RunBackend } from '../src/backends/registry.ts';
import { bundledTable } from '../src/cli/demoBundled.ts';
import { processIo } from '../src/cli/io.ts';
import { loadPlans } from '../src/cli/plans.ts';
import { bundledModels, bundledPlansDir } from '../src/eval/bundled.ts';
import { type BundledRow, type BundledSkip, evaluateBundled } from '../src/eval/bundledSuite.ts';
import { examplePlanFiles } from '../src/eval/suite.ts';
import { tasks } from '../src/eval/tasks.ts';
import { type Destination, saveResults } from './save.ts';
import { machineInfo } from './timing.ts';

export interface QualityOptions {
  readonly tasks: readonly string[];
  readonly n: number;
  readonly genLength: number;
  readonly batch: number;
  readonly backend: RunBackend;
  readonly to: Destination;
}

/** The line of docs/results.md after which the hand-written text starts; the bench keeps it. */
export const handWritten =
  '<!-- Everything below is written by hand; `npm run bench -- quality --write` keeps it. -->';

const runJson = (r: BundledRow['runs'][keyof BundledRow['runs']]) => ({
  accuracy: r.accuracy,
  tokens_per_s: r.tokensPerSecond,
  steps_per_token: r.stepsPerToken,
  tokens_per_step: 1 / r.stepsPerToken,
});

export async function qualitySuite(o: QualityOptions): Promise<void> {
  const started = performance.now();
  const { plans } = loadPlans(examplePlanFiles(bundledPlansDir()), new Map(), processIo);
  const byTask: { task: string; rows: BundledRow[]; skipped: BundledSkip[] }[] = [];
  for (const task of o.tasks) {
    const { rows, skipped } = await evaluateBundled({
      plans,
      prepare: (plan, config, weights, maxCanvas) =>
        prepareBackend(o.backend, plan, config, weights, maxCanvas),
      task,
      n: o.n,
      genLength: o.genLength,
      batchSize: o.batch,
      onPlan: ({ plan, row, skip }) => {
        if (skip && skip.otherTask === undefined) console.error(`${task} ${plan}: not run (${skip.reason})`);
        if (row)
          console.error(
            `${task} ${plan} on ${row.model}: accuracy ${row.runs.plan.accuracy.toFixed(3)}, ${row.runs.plan.tokensPerSecond.toFixed(1)} tokens/s`,
          );
      },
    });
    // A plan whose model does not know this task has its rows under that model's tasks.
    byTask.push({ task, rows, skipped: skipped.filter((s) => s.otherTask === undefined) });
  }
  const printed = byTask.map((t) => `task ${t.task}\n${bundledTable(t.rows, t.skipped)}`);
  console.log(printed.join('\n\n'));
  const seconds = (performance.now() - started) / 1000;
  const machine = machineInfo();
  const result = {
    suite: 'quality',
    date: new Date().toISOString(),
    seconds,
    machine,
    models: bundledModels.map((m) => ({ ...m, path: `models/${m.name}` })),
    n: o.n,
    gen_length: o.genLength,
    batch: o.batch,
    backend: o.backend,
    tasks: byTask.map((t) => ({
      task: t.task,
      rows: t.rows.map((r) => ({
        plan: r.plan,
        model: r.model,
        overrides: r.overrides,
        plan_run: runJson(r.runs.plan),
        twin: { plan: r.runs.twin.plan, ...runJson(r.runs.twin) },
        baseline: { plan: r.runs.baseline.plan, ...runJson(r.runs.baseline) },
        effects: r.effects.map((e) => ({
          name: e.name,
          accuracy_delta: e.accuracyDelta,
          ci95: [e.ci.lo, e.ci.hi],
          speedup: e.speedup,
        })),
      })),
      skipped: t.skipped.map((s) => ({ plan: s.plan, reason: s.reason })),
    })),
  };
  saveResults(o.to, result, () => {
    // The document being replaced, wherever the bench runs from: its hand-written part is kept.
    const doc = o.to.doc;
    const old = doc !== null && existsSync(doc) ? readFileSync(doc, 'utf8') : '';
    const kept = old.includes(handWritten) ? old.slice(old.indexOf(handWritten)) : `${handWritten}\n`;
    return [
      '# Results: accuracy and speed of every example plan on a model made for it',
      '',
      `Written by \`npm run bench -- quality --n ${o.n} --batch ${o.batch} --write\` on ${result.date.slice(0, 10)}`,
      `(${machine.cpu}, ${machine.cores} cores, ${o.backend} backend, ${seconds.toFixed(0)} s). Each plan runs on the bundled`,
      'model made for its attention structure (`src/eval/bundled.ts`; model cards in `models/<name>/README.md`), at',
      "that model's trained block length, beside its decode-matched no-cache twin (same blocks, decode rule and mask,",
      'every row computed, no cache) and the one-token-per-step baseline with its mask and AR shift, all on the same',
      `${o.n} held-out problems per task, ${o.genLength} generated positions each, batch ${o.batch}. Accuracy is exact match`,
      'of the text before the first EOS; tokens/s counts generated tokens only. The three effects (docs/eval.md,',
      '"Ablation"): cache = plan vs twin, decode = twin vs baseline, both = plan vs baseline; Δ acc in points, paired on',
      "the same problems, with a 95% interval (Newcombe's hybrid score).",
      '',
      ...byTask.flatMap((t) => [
        `## Task \`${t.task}\``,
        '',
        `${tasks.get(t.task)?.description}`,
        '',
        '```',
        bundledTable(t.rows, t.skipped),
        '```',
        '',
        ...t.skipped.map((s) => `- ${s.plan}: ${s.reason}`),
        ...(t.skipped.length > 0 ? [''] : []),
      ]),
      kept,
    ].join('\n');
  });
}
