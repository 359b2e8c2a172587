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
  return {
    plan: r.plan,
    steps: p.steps,
    bound: cached.length ? cached.map((x) => `${x.phase} ${x.bound}`).join(', ') : `${p.phases[0]?.bound}`,
    predictedTps: p.tokensPerSecond,
    measuredTps: r.tokens_per_s,
    predicted: speedup,
    measured: r.speedup,
    ideal: r.ideal_speedup,
    gflop: p.flops / 1e9,
    measuredGflop: r.gflop,
    error: speedup / r.speedup - 1,
  };
});
const errors = rows.filter((r) => r.plan !== 'baseline').map((r) => Math.abs(r.error));
const sorted = [...errors].sort((a, b) => a - b);
const median = ((sorted[(sorted.length - 1) >> 1] as number) + (sorted[sorted.length >> 1] as number)) / 2;
const worst = rows.reduce((a, r) => (Math.abs(r.error) > Math.abs(a.error) ? r : a));
const percent = (x: number) => `${x >= 0 ? '+' : ''}${Math.round(100 * x)}%`;

console.log(
  `hardware cpu: ${hw.description}: peak ${fmt(hw.peakFlops / 1e9)} GFLOP/s, bandwidth ` +
    `${fmt(hw.bandwidth / 1e9)} GB/s (${values.remeasure ? 'measured now' : 'as kept'}; other processes ` +
    `kept ${busy ?? '?'} cores busy meanwhile); ${machineInfo().cpu}, node ${process.version}`,
);
console.log(
  `recorded: bench/results/policies.json of ${recorded.date}, ${recorded.model.name}, prompt ` +
    `${recorded.prompt_length}, generation ${recorded.gen_length}, block ${recorded.block}\n`,
);
console.log(
  table(
    [
      'plan',
      'steps',
      'bound (cached phases)',
      'tokens/s predicted',
      'measured',
      'speedup predicted',
      'measured',
      'FLOP ideal',
      'GFLOP predicted',
      'counted',
      'error',
    ],
    rows.map((r) => [
      r.plan,
      String(r.steps),
      r.bound,
      fmt(r.predictedTps),
      fmt(r.measuredTps),
      fmt(r.predicted),
      fmt(r.measured),
      fmt(r.ideal),
      fmt(r.gflop),
      fmt(r.measuredGflop),
      r.plan === 'baseline' ? '-' : percent(r.error),
    ]),
  ),
);
console.log(
  `\nspeedup error |predicted / measured - 1| over ${errors.length} plans: median ${Math.round(100 * median)}%, ` +
    `max ${Math.round(100 * Math.abs(worst.error))}% (${worst.plan})`,
);
