/**
 * Every plan on one model, the same held-out problems and one backend: accuracy and tokens/s
 * together, each plan against the no-cache baseline measured in the same run.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckedPlan } from '../dsl/check.ts';
import type { OpenedModel } from '../runtime/openModel.ts';
import { type PrepareBackend, planOnModel } from '../runtime/prepare.ts';
import { blockLength } from '../runtime/simulate.ts';
import { canvasBound, type EvalResult, evaluatePlan, type ProblemResult } from './evaluate.ts';
import type { Problem } from './tasks.ts';

export interface SuitePlan {
  readonly path: string;
  readonly checked: CheckedPlan;
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
}

/** The example plans shipped in a directory, sorted by file name. */
export function examplePlanFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.kvp'))
    .sort()
    .map((f) => join(dir, f));
}

const baselineName = 'baseline';

export async function evaluateSuite(o: SuiteOptions): Promise<SuiteRow[]> {
  const order = [...o.plans].sort(
    (a, b) => Number(b.checked.plan.name === baselineName) - Number(a.checked.plan.name === baselineName),
  );
  const rows: SuiteRow[] = [];
  let baseline: EvalResult | undefined;
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
        skipped: fit.error,
        problems: [],
      };
      rows.push(row);
      o.onPlan?.({ plan: name, row });
      continue;
    }
    const rowsPerPrompt = Math.max(o.genLength, blockLength(checked, o.genLength));
    const maxCanvas = canvasBound(o.problems, o.model.tokenizer, rowsPerPrompt, o.batchSize);
    const prepared = await o.prepare(checked, fit.config, o.model.weights, maxCanvas);
    const r = await evaluatePlan({
      config: prepared.config,
      weights: o.model.weights,
      tokenizer: o.model.tokenizer,
      plan: checked,
      lowered: prepared.lowered,
      ...(prepared.runner ? { runner: prepared.runner } : {}),
      task: o.task,
      problems: o.problems,
      genLength: o.genLength,
      batchSize: o.batchSize,
    });
    if (name === baselineName) baseline = r;
    const row: SuiteRow = {
      plan: name,
      path,
      accuracy: r.accuracy,
      accuracyDelta: baseline ? r.accuracy - baseline.accuracy : Number.NaN,
      tokensPerSecond: r.tokensPerSecond,
      speedup: baseline ? r.tokensPerSecond / baseline.tokensPerSecond : Number.NaN,
      meanSteps: r.meanSteps,
      ...(fit.warning ? { warning: fit.warning } : {}),
      problems: r.problems,
    };
    rows.push(row);
    o.onPlan?.({ plan: name, row });
  }
  return rows;
}
