/**
 * `npx tsx bench/advisor-calibration.ts [--remeasure]`: the cost advisor's predicted CPU speedups
 * (hardware `cpu`, this machine's measured roofline) against the speedups the policies benchmark
 * measured (bench/results/policies.json), for every example plan, at the benchmark's sizes. Prints
 * a Markdown table for docs/perf.md ("Cost advisor: predictions against measurements").
 * `--remeasure` measures the CPU again instead of using the measurement kept in the cache.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { predict } from '../src/cost/advise.ts';
import { cpuHardware } from '../src/cost/probe.ts';
import { type CheckedPlan, checkSource } from '../src/dsl/check.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { fmt, table } from '../src/report/table.ts';
import { machineInfo, otherProcessesMeter } from './timing.ts';

interface PolicyRow {
  readonly plan: string;
  /** Milliseconds of all the steps of the generation. */
  readonly steps_ms: number;
  readonly tokens_per_s: number;
  readonly speedup: number;
  readonly ideal_speedup: number;
  readonly gflop: number;
}

const recorded = JSON.parse(readFileSync('bench/results/policies.json', 'utf8')) as {
  readonly date: string;
  readonly model: ModelConfig;
  readonly prompt_length: number;
  readonly gen_length: number;
  readonly block: number;
  readonly rows: readonly PolicyRow[];
};

const { values } = parseArgs({ options: { remeasure: { type: 'boolean', default: false } } });

/**
 * The example plans as the benchmark ran them: blocks of its block length. Elastic-Cache ran with
 * its former probe layer 16, which the 8-layer model lacks, so its similarity rule never ran.
 */
const overrides = new Map([
  ['block', String(recorded.block)],
  ['probe', '16'],
]);
const plans = new Map<string, CheckedPlan>();
for (const f of readdirSync('examples').filter((f) => f.endsWith('.kvp'))) {
  const path = `examples/${f}`;
  for (const p of checkSource({ path, text: readFileSync(path, 'utf8') }, { overrides }).plans)
    plans.set(p.plan.name, p);
}

const others = otherProcessesMeter();
const hw = await cpuHardware({ remeasure: values.remeasure });
const busy = others();
const sizes = {
  batch: 1,
  promptLength: recorded.prompt_length,
  genLength: recorded.gen_length,
  weights: 'f32' as const,
};
const predicted = new Map<string, ReturnType<typeof predict>>();
for (const row of recorded.rows) {
  const plan = plans.get(row.plan);
  if (!plan) throw new Error(`no example plan named ${row.plan}`);
  predicted.set(row.plan, predict(plan, recorded.model, hw, sizes));
}
const baseline = predicted.get('baseline');
if (!baseline) throw new Error('the recorded results have no baseline row');

const rows = recorded.rows.map((r) => {
  const p = predicted.get(r.plan) as ReturnType<typeof predict>;
  const speedup = baseline.seconds / p.seconds;
  const cached = p.phases.filter((x) => x.phase !== 'refresh');
  // The benchmark ran as many steps as the schedule simulates (checked: the FLOPs agree), so its
  // mean step is its time over the predicted step count.
  const measuredStep = r.steps_ms / 1000 / p.steps;
  const predictedStep = p.seconds / p.steps;
  return {
    plan: r.plan,
    steps: p.steps,
    bound: cached.length ? cached.map((x) => `${x.phase} ${x.bound}`).join(', ') : `${p.phases[0]?.bound}`,
    predictedStep,
    measuredStep,
    stepError: predictedStep / measuredStep - 1,
    predicted: speedup,
    measured: r.speedup,
    ideal: r.ideal_speedup,
    gflop: p.flops / 1e9,
    measuredGflop: r.gflop,
    error: speedup / r.speedup - 1,
  };
});

/** Median and largest |error|, and the plan of the largest, over the plans but the baseline (or all). */
function spread(errorOf: (r: (typeof rows)[number]) => number, withBaseline: boolean) {
  const of = rows.filter((r) => withBaseline || r.plan !== 'baseline');
  const sorted = of.map((r) => Math.abs(errorOf(r))).sort((a, b) => a - b);
  const median = ((sorted[(sorted.length - 1) >> 1] as number) + (sorted[sorted.length >> 1] as number)) / 2;
  const worst = of.reduce((a, r) => (Math.abs(errorOf(r)) > Math.abs(errorOf(a)) ? r : a));
  const over = of.filter((r) => errorOf(r) > 0).length;
  return { count: of.length, median, max: Math.abs(errorOf(worst)), worst: worst.plan, over };
}
const speedupSpread = spread((r) => r.error, false);
const stepSpread = spread((r) => r.stepError, true);
const percent = (x: number) => `${x >= 0 ? '+' : ''}${Math.round(100 * x)}%`;
const gb = (x: number | undefined) => (x === undefined ? '-' : fmt(x / 1e9));

console.log(
  `hardware cpu: ${hw.description}: peak ${gb(hw.peakFlops)} GFLOP/s (attention ${gb(hw.attentionFlops)}, attention mass ${gb(hw.massFlops)}), ` +
    `bandwidth ${gb(hw.bandwidth)} GB/s (GEMM weights ${gb(hw.weightBandwidth)}, into fresh host buffers ` +
    `${gb(hw.readbackBandwidth)}), overlap ` +
    `${fmt(hw.overlap ?? 1)} (${values.remeasure ? 'measured now' : 'as kept'}; other processes kept ` +
    `${busy ?? '?'} cores busy meanwhile); ${machineInfo().cpu}, node ${process.version}`,
);
console.log(
  `recorded: bench/results/policies.json of ${recorded.date}, ${recorded.model.name}, prompt ` +
    `${recorded.prompt_length}, generation ${recorded.gen_length}, block ${recorded.block}\n`,
);
const ms = (s: number) => fmt(s * 1e3);
console.log(
  table(
    [
      'plan',
      'steps',
      'bound (cached phases)',
      'ms/step predicted',
      'measured',
      'error',
      'speedup predicted',
      'measured',
      'FLOP ideal',
      'error',
      'GFLOP predicted',
      'counted',
    ],
    rows.map((r) => [
      r.plan,
      String(r.steps),
      r.bound,
      ms(r.predictedStep),
      ms(r.measuredStep),
      percent(r.stepError),
      fmt(r.predicted),
      fmt(r.measured),
      fmt(r.ideal),
      r.plan === 'baseline' ? '-' : percent(r.error),
      fmt(r.gflop),
      fmt(r.measuredGflop),
    ]),
  ),
);
const summary = (what: string, s: ReturnType<typeof spread>) =>
  `${what} over ${s.count} plans: median ${Math.round(100 * s.median)}%, max ${Math.round(100 * s.max)}% ` +
  `(${s.worst}); ${s.over} of ${s.count} over-predicted`;
console.log(
  `\nerror |predicted / measured - 1|\n  ${summary('speedup', speedupSpread)}\n  ${summary('time per step', stepSpread)}`,
);
