/**
 * Every plan on one model, the same held-out problems and one backend: accuracy and tokens/s
 * together, each plan against the no-cache baseline measured in the same run.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckedPlan } from '../dsl/check.ts';
import { decodeMatchedTwin } from '../dsl/twin.ts';
import type { OpenedModel } from '../runtime/openModel.ts';
import { type PrepareBackend, planOnModel } from '../runtime/prepare.ts';
import { type Contrast, contrast, runOnce } from './ablate.ts';
import type { EvalResult, ProblemResult } from './evaluate.ts';
import type { Problem } from './tasks.ts';

export interface SuitePlan {
  readonly path: string;
  readonly checked: CheckedPlan;
}

/** A plan's no-cache twin on the same problems, and the cache's effect alone (plan vs twin). */
export interface TwinColumns {
  readonly plan: string;
  readonly accuracy: number;
  readonly tokensPerSecond: number;
  readonly stepsPerToken: number;
  readonly cache: Contrast;
}

export interface SuiteRow {
  readonly plan: string;
  readonly path: string;
  readonly accuracy: number;
  /** Accuracy minus the baseline's. */
  readonly accuracyDelta: number;
  readonly tokensPerSecond: number;
  /** Tokens/s over the baseline's. */
  readonly speedup: number;
  readonly meanSteps: number;
  readonly stepsPerToken: number;
  /** Absent when the plan did not run, or its twin could not be derived (then `warning` says why). */
  readonly twin?: TwinColumns;
  /** Why the plan was not run on this model (then the numbers are NaN). */
  readonly skipped?: string;
  readonly warning?: string;
  readonly problems: readonly ProblemResult[];
}

export interface SuiteOptions {
  readonly model: OpenedModel;
  readonly plans: readonly SuitePlan[];
  /** Compiles each plan for the backend the run uses (src/backends/registry.ts composes one). */
  readonly prepare: PrepareBackend;
  readonly task: string;
  readonly problems: readonly Problem[];
  readonly genLength: number;
  readonly batchSize: number;
  /** Called before a plan compiles and after it has run. */
  readonly onPlan?: (event: { plan: string; row?: SuiteRow }) => void;
  /**
   * Called as runs finish: runs done of all, two a plan (it and its twin). A run shared with an
   * earlier plan, and the runs of a plan that is not run, count as done when they are reached.
   */
  readonly onProgress?: (done: number, total: number) => void;
}

/** The example plans shipped in a directory, sorted by file name. */
export function examplePlanFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.kvp'))
    .sort()
    .map((f) => join(dir, f));
}

const baselineName = 'baseline';

/** The plan and its twin. */
export const suiteRunsPerPlan = 2;

export async function evaluateSuite(o: SuiteOptions): Promise<SuiteRow[]> {
  const order = [...o.plans].sort(
    (a, b) => Number(b.checked.plan.name === baselineName) - Number(a.checked.plan.name === baselineName),
  );
  const rows: SuiteRow[] = [];
  let baseline: EvalResult | undefined;
  // The suite counts runs; each run's own progress, in problems, is not passed on.
  const { onProgress, ...run } = o;
  // A twin that equals a plan already run (the baseline is its own twin) reuses that run.
  const evaluate = runOnce(run);
  let done = 0;
  const ran = (runs: number) => {
    done += runs;
    onProgress?.(done, suiteRunsPerPlan * order.length);
  };
  for (const { path, checked } of order) {
    const name = checked.plan.name;
    o.onPlan?.({ plan: name });
    const fit = planOnModel(checked, o.model.config);
    if (!fit.ok) {
      const row = {
        plan: name,
        path,
        accuracy: Number.NaN,
        accuracyDelta: Number.NaN,
        tokensPerSecond: Number.NaN,
        speedup: Number.NaN,
        meanSteps: Number.NaN,
        stepsPerToken: Number.NaN,
        skipped: fit.error,
        problems: [],
      };
      rows.push(row);
      o.onPlan?.({ plan: name, row });
      ran(suiteRunsPerPlan);
      continue;
    }
    const r = await evaluate(checked);
    ran(1);
    if (name === baselineName) baseline = r;
    const twin = decodeMatchedTwin(checked);
    const twinRun = twin.ok ? await evaluate(twin.checked) : undefined;
    ran(1);
    const warnings = [
      ...(fit.warning ? [fit.warning] : []),
      ...(twin.ok ? [] : [`no twin: ${twin.diagnostics.map((d) => d.message).join('; ')}`]),
    ];
    const row: SuiteRow = {
      plan: name,
      path,
      accuracy: r.accuracy,
      accuracyDelta: baseline ? r.accuracy - baseline.accuracy : Number.NaN,
      tokensPerSecond: r.tokensPerSecond,
      speedup: baseline ? r.tokensPerSecond / baseline.tokensPerSecond : Number.NaN,
      meanSteps: r.meanSteps,
      stepsPerToken: r.stepsPerToken,
      ...(twin.ok && twinRun
        ? {
            twin: {
              plan: twin.checked.plan.name,
              accuracy: twinRun.accuracy,
              tokensPerSecond: twinRun.tokensPerSecond,
              stepsPerToken: twinRun.stepsPerToken,
              cache: contrast(r, twinRun),
            },
          }
        : {}),
      ...(warnings.length > 0 ? { warning: warnings.join('; ') } : {}),
      problems: r.problems,
    };
    rows.push(row);
    o.onPlan?.({ plan: name, row });
  }
  return rows;
}
