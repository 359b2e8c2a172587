/**
 * `npm run bench -- quality`: every example plan on the bundled trained model, the same held-out
 * problems, the CPU backend, in one process: accuracy and tokens/s together (the papers'
 * protocol). Writes bench/results/quality.json and the table in docs/results.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { prepareBackend, type RunBackend } from '../src/backends/registry.ts';
import { suiteTable } from '../src/cli/demo.ts';
import { processIo } from '../src/cli/io.ts';
import { loadPlans } from '../src/cli/plans.ts';
import { bundledModelPath, bundledPlansDir } from '../src/eval/bundled.ts';
import { evaluateSuite, examplePlanFiles } from '../src/eval/suite.ts';
import { heldOutProblems, tasks } from '../src/eval/tasks.ts';
import { openModel } from '../src/runtime/openModel.ts';
import { machineInfo } from './timing.ts';

export interface QualityOptions {
  readonly task: string;
  readonly n: number;
  readonly genLength: number;
  readonly batch: number;
  readonly backend: RunBackend;
  readonly out: string | null;
  readonly doc: string | null;
}

const finite = (x: number) => (Number.isFinite(x) ? x : null);

export async function qualitySuite(o: QualityOptions): Promise<void> {
  const started = performance.now();
  const model = openModel(bundledModelPath());
  const { plans } = loadPlans(examplePlanFiles(bundledPlansDir()), new Map(), processIo);
  const problems = heldOutProblems(o.task, o.n);
  const rows = await evaluateSuite({
    model,
    plans,
    prepare: (plan, config, weights, maxCanvas) =>
      prepareBackend(o.backend, plan, config, weights, maxCanvas),
    task: o.task,
    problems,
    genLength: o.genLength,
    batchSize: o.batch,
    onPlan: ({ plan, row }) => {
      if (row)
        console.error(
          `${plan}: ${row.skipped ? `skipped (${row.skipped})` : `accuracy ${row.accuracy.toFixed(3)}, ${row.tokensPerSecond.toFixed(1)} tokens/s`}`,
        );
    },
  });
  const printed = suiteTable(rows);
  console.log(printed);
  const seconds = (performance.now() - started) / 1000;
  const machine = machineInfo();
  const result = {
    suite: 'quality',
    date: new Date().toISOString(),
    seconds,
    machine,
    model: { path: 'models/tiny-dllm/model.onnx', config: model.config },
    task: o.task,
    n: problems.length,
    gen_length: o.genLength,
    batch: o.batch,
    backend: o.backend,
    rows: rows.map((r) => ({
      plan: r.plan,
      accuracy: finite(r.accuracy),
      accuracy_delta: finite(r.accuracyDelta),
      tokens_per_s: finite(r.tokensPerSecond),
      speedup: finite(r.speedup),
      steps: finite(r.meanSteps),
      steps_per_token: finite(r.stepsPerToken),
      ...(r.twin
        ? {
            twin: {
              plan: r.twin.plan,
              accuracy: r.twin.accuracy,
              tokens_per_s: r.twin.tokensPerSecond,
              steps_per_token: r.twin.stepsPerToken,
            },
            cache_accuracy_delta: r.twin.cache.accuracyDelta,
            cache_accuracy_delta_ci95: [r.twin.cache.ci.lo, r.twin.cache.ci.hi],
            cache_speedup: finite(r.twin.cache.speedup),
          }
        : {}),
      ...(r.skipped ? { skipped: r.skipped } : {}),
      ...(r.warning ? { warning: r.warning } : {}),
    })),
  };
  if (o.out) {
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
    console.error(`wrote ${o.out}`);
  }
  if (o.doc) {
    const md = [
      '# Results: accuracy and speed of every example plan on the bundled model',
      '',
      `Written by \`npm run bench -- quality --task ${o.task} --n ${o.n}\` on ${result.date.slice(0, 10)}`,
      `(${machine.cpu}, ${machine.cores} cores, ${o.backend} backend, ${seconds.toFixed(0)} s). The model is`,
      `\`models/tiny-dllm\` (see its model card); ${problems.length} held-out \`${o.task}\` problems (${tasks.get(o.task)?.description}),`,
      `${o.genLength} generated positions each, batch ${o.batch}. Accuracy is exact match of the text before the first EOS;`,
      'tokens/s counts generated tokens only; speedup and Δ accuracy are against the no-cache baseline of the same run;',
      'steps/token is denoising steps per generated token. The cache columns compare each plan with its decode-matched',
      'no-cache twin (same blocks, decode rule and mask; every row computed, no cache): the effect of the cache alone',
      '(docs/eval.md, "Ablation"; `kvplan eval --ablate` adds the 95% interval and the decode rule alone).',
      '',
      '```',
      printed,
      '```',
      '',
      ...rows.filter((r) => r.skipped || r.warning).map((r) => `- ${r.plan}: ${r.skipped ?? r.warning}`),
      '',
    ].join('\n');
    writeFileSync(o.doc, md);
    console.error(`wrote ${o.doc}`);
  }
}
