/**
 * The long fuzz campaign: `npm run fuzz -- --n 5000 [--seed S] [--out DIR] [--backend cpu]`.
 * Generates plans nobody wrote (test/support/planGen.ts), checks them, verifies every accepted one
 * against full attention, checks that near misses are rejected, and counts how often the
 * data-dependent refresh rules fire. Each failure is minimised by fast-check's shrinking and
 * written to DIR as a .kvp file whose header says what failed. See docs/fuzz.md.
 */
import '../src/dsl/polyfill.ts';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { buildCpu, CpuRunner } from '../src/backends/cpu/runner.ts';
import type { RunnerFactory } from '../src/runtime/verify.ts';
import {
  allFeatures,
  checkText,
  ciFeatures,
  describeVerdict,
  hasDataRefresh,
  nearMisses,
  observeFirings,
  planText,
  type Spec,
  specArb,
  verdictHolds,
  verifyGenerated,
} from '../test/support/planGen.ts';
import { endOnSignals } from './signals.ts';

const usage = `usage: npm run fuzz -- [--n 5000] [--seed S] [--out DIR] [--backend reference|cpu] [--ci]
                     [--exclude FEATURE,...] [--enable FEATURE,...]
  --ci        the CI properties' feature set (open findings excluded)
  features:   ${Object.keys(allFeatures).join(', ')}`;

endOnSignals();
const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '5000' },
    seed: { type: 'string' },
    out: { type: 'string', default: 'scratch/fuzz-failures' },
    backend: { type: 'string', default: 'reference' },
    enable: { type: 'string', default: '' },
    exclude: { type: 'string', default: '' },
    ci: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const n = Number(values.n);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
const backend = values.backend;
if (!Number.isInteger(n) || n < 1 || !Number.isInteger(seed) || !['reference', 'cpu'].includes(backend)) {
  console.error(usage);
  process.exit(2);
}
const options: Record<string, boolean | undefined> = { ...(values.ci ? ciFeatures : allFeatures) };
for (const f of values.enable.split(',').filter(Boolean)) options[f] = true;
for (const f of values.exclude.split(',').filter(Boolean)) options[f] = false;

const cpuRunner: RunnerFactory = (plan, cfg, weights, L) => {
  const build = buildCpu(plan, cfg, L);
  return (m) => new CpuRunner(build, weights, m);
};

const stats = {
  generated: 0,
  accepted: 0,
  exact: 0,
  rejected: 0,
  familyRejected: 0,
  nearMisses: 0,
  nearMissesRejected: 0,
  withDataRefresh: 0,
  dataRefreshFired: 0,
  dataRefreshSteps: 0,
  withReuse: 0,
  partialRecomputes: 0,
  partialReuses: 0,
  failures: 0,
};
const familyRejections = new Map<string, string>();

/** What went wrong with one generated plan, or undefined; the kind is what shrinking preserves. */
interface Failure {
  readonly kind: string;
  readonly text: string;
  readonly detail: string;
}

async function examine(spec: Spec, verifySeed: number, count: boolean): Promise<Failure | undefined> {
  const text = planText(spec);
  const outcome = checkText(text);
  if (count) stats.generated++;
  if (outcome.kind === 'crashed')
    return { kind: 'checker crash', text, detail: String((outcome.error as Error)?.stack ?? outcome.error) };
  if (outcome.kind === 'rejected') {
    if (count) {
      stats.rejected++;
      if (spec.edits.length === 0) {
        stats.familyRejected++;
        if (!familyRejections.has(spec.family))
          familyRejections.set(spec.family, `${text}# ${outcome.errors[0]?.message}`);
      }
    }
  } else {
    if (count) {
      stats.accepted++;
      if (outcome.plan.classification.exact) stats.exact++;
    }
    try {
      const v = await verifyGenerated(
        spec,
        outcome.plan,
        verifySeed,
        backend === 'cpu' ? { name: 'cpu', runnerFor: cpuRunner } : undefined,
      );
      if (!verdictHolds(v, outcome.warnings))
        return {
          kind: `verify ${v.checks
            .filter((c) => !c.ok)
            .map((c) => c.name)
            .join('+')}`,
          text,
          detail: `${v.exact ? 'exact' : 'approximate'}: ${describeVerdict(v)}`,
        };
      const reuse = Array.isArray(spec.attend?.keys) && spec.attend.keys.some((g) => g.until);
      if (count && (hasDataRefresh(spec) || reuse)) {
        const f = await observeFirings(spec, outcome.plan, verifySeed);
        if (hasDataRefresh(spec)) {
          stats.withDataRefresh++;
          if (f.dataRefreshes > 0) stats.dataRefreshFired++;
          stats.dataRefreshSteps += f.dataRefreshes;
        }
        if (reuse) {
          stats.withReuse++;
          stats.partialRecomputes += f.partialRecomputes;
          stats.partialReuses += f.partialReuses;
        }
      }
    } catch (e) {
      return { kind: 'verify crash', text, detail: String((e as Error)?.stack ?? e) };
    }
  }
  if (spec.edits.length === 0) {
    for (const m of nearMisses(spec)) {
      if (count) stats.nearMisses++;
      const t = planText(m.spec);
      const o = checkText(t);
      if (o.kind === 'crashed')
        return {
          kind: 'near-miss checker crash',
          text: t,
          detail: String((o.error as Error)?.stack ?? o.error),
        };
      if (o.kind === 'accepted')
        return {
          kind: `near miss accepted: ${m.mutation}`,
          text: t,
          detail: `mutation '${m.mutation}' should break ${m.rule}; the unmutated plan was:\n${text}`,
        };
      if (count) stats.nearMissesRejected++;
    }
  }
  return undefined;
}

const caseArb = fc.record({ spec: specArb(options), verifySeed: fc.integer({ min: 1, max: 1_000_000 }) });

mkdirSync(values.out, { recursive: true });
const started = performance.now();
const written: string[] = [];
for (let i = 0; i < n; i++) {
  // One fast-check run per plan, so that a failure is found without shrinking first, and the
  // campaign goes on after it; shrinking then replays the same seed.
  let failure: Failure | undefined;
  await fc.check(
    fc.asyncProperty(caseArb, async ({ spec, verifySeed }) => {
      failure = await examine(spec, verifySeed, true);
      return failure === undefined;
    }),
    { seed: seed + i, numRuns: 1, endOnFailure: true },
  );
  if (failure) {
    stats.failures++;
    const kind = failure.kind;
    let smallest: Failure = failure;
    await fc.check(
      fc.asyncProperty(caseArb, async ({ spec, verifySeed }) => {
        const f = await examine(spec, verifySeed, false);
        if (f?.kind !== kind) return true;
        if (f.text.length <= smallest.text.length) smallest = f;
        return false;
      }),
      { seed: seed + i, numRuns: 1 },
    );
    const file = join(values.out, `fuzz-${seed + i}.kvp`);
    const header = [
      `# kvplan fuzz failure: ${smallest.kind}`,
      `# replay: npm run fuzz -- --n 1 --seed ${seed + i}${backend === 'cpu' ? ' --backend cpu' : ''}`,
      ...smallest.detail.split('\n').map((l) => `# ${l}`),
      '',
    ].join('\n');
    writeFileSync(file, `${header}${smallest.text}`);
    written.push(file);
    console.log(`FAIL ${smallest.kind}  -> ${file}`);
  }
  if ((i + 1) % 100 === 0)
    console.log(
      `  ${i + 1}/${n} plans, ${stats.failures} failures, ${((performance.now() - started) / 1000).toFixed(0)} s`,
    );
}

const pct = (a: number, b: number) => (b === 0 ? 'n/a' : `${((100 * a) / b).toFixed(1)}%`);
console.log(`
kvplan fuzz campaign: seed ${seed}, backend ${backend}, ${((performance.now() - started) / 1000).toFixed(0)} s
  plans generated              ${stats.generated}
  accepted                     ${stats.accepted} (${stats.exact} exact, ${stats.accepted - stats.exact} approximate)
  rejected                     ${stats.rejected} (${stats.familyRejected} of them unedited family plans)
  near misses                  ${stats.nearMisses}, correctly rejected ${stats.nearMissesRejected}
  data-dependent refresh rules ${stats.withDataRefresh} accepted plans, fired in ${stats.dataRefreshFired} (${pct(stats.dataRefreshFired, stats.withDataRefresh)}), ${stats.dataRefreshSteps} firing steps
  reused split partials        ${stats.withReuse} accepted plans: ${stats.partialRecomputes} recomputes, ${stats.partialReuses} reuses at non-refresh steps
  failures                     ${stats.failures}${written.length ? ` (written to ${values.out})` : ''}`);
for (const [family, example] of familyRejections)
  console.log(`\nfamily '${family}' plan rejected, e.g.:\n${example}`);
process.exit(stats.failures > 0 ? 1 : 0);
