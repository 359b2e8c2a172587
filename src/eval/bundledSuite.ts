/**
 * Every plan on the bundled model made for its attention structure (bundled.ts), in the papers'
 * protocol: the plan, its decode-matched no-cache twin and the one-token-per-step baseline answer
 * the same held-out problems, and the three effects (cache alone, decode rule alone, both) are the
 * paired differences between them (docs/eval.md, "Ablation"; docs/results.md).
 */
import { type CheckedPlan, checkSource } from '../dsl/check.ts';
import type { SourceFile } from '../dsl/source.ts';
import { type OpenedModel, openModel } from '../runtime/openModel.ts';
import type { PrepareBackend } from '../runtime/prepare.ts';
import { ablationEffects, contrast, contrastsOf, type Effect, type Role, runOnce } from './ablate.ts';
import { type BundledModel, bundledModelDir, bundledModelFor, trainedBlockOverride } from './bundled.ts';
import type { EvalResult } from './evaluate.ts';
import { heldOutProblems } from './tasks.ts';

export interface BundledPlan {
  readonly path: string;
  readonly file: SourceFile;
  readonly checked: CheckedPlan;
}

export interface BundledRow {
  readonly plan: string;
  readonly path: string;
  /** The bundled model it ran on, and the `name=value` it ran with to match the model's training. */
  readonly model: string;
  readonly overrides: readonly string[];
  readonly task: string;
  readonly runs: Readonly<Record<Role, EvalResult>>;
  readonly effects: readonly Effect[];
}

/**
 * Why a plan has no row: no bundled model fits it, its model was not trained on the task asked for
 * (`otherTask`), or its twin or baseline cannot be derived.
 */
export interface BundledSkip {
  readonly plan: string;
  readonly path: string;
  readonly reason: string;
  readonly otherTask?: true;
}

export interface BundledSuiteOptions {
  readonly plans: readonly BundledPlan[];
  readonly prepare: PrepareBackend;
  /** The task (plans whose model was not trained on it are not run); undefined: each model's first. */
  readonly task?: string;
  readonly n: number;
  readonly genLength: number;
  readonly batchSize: number;
  /** Called before a plan's runs and after them. */
  readonly onPlan?: (event: { plan: string; model?: string; row?: BundledRow; skip?: BundledSkip }) => void;
  /**
   * Called as runs finish: runs done of all, three a plan (it, its twin and the baseline). A run
   * shared with an earlier one, and the runs of a skipped plan, count as done when reached.
   */
  readonly onProgress?: (done: number, total: number) => void;
  /** Opens a bundled model (tests give a stand-in). */
  readonly open?: (m: BundledModel) => OpenedModel;
}

/** The plan at its model's trained block length: re-checked with that value, as `--set` would. */
function atTrainedBlock(
  p: BundledPlan,
  model: BundledModel,
): { checked?: CheckedPlan; overrides: string[]; error?: string } {
  const o = trainedBlockOverride(p.checked, model);
  if (o === undefined) return { checked: p.checked, overrides: [] };
  const overrides = new Map([...[...p.checked.params].map(([k, v]) => [k, String(v)] as const), o]);
  const again = checkSource(p.file, { overrides }).plans.find((c) => c.plan.name === p.checked.plan.name);
  if (again === undefined)
    return {
      overrides: [`${o[0]}=${o[1]}`],
      error: `it is not well-formed with ${o[0]}=${o[1]} (model ${model.name}'s trained block)`,
    };
  return { checked: again, overrides: [`${o[0]}=${o[1]}`] };
}

/** The plan, its twin and the baseline. */
export const bundledRunsPerPlan = 3;

export async function evaluateBundled(
  o: BundledSuiteOptions,
): Promise<{ rows: BundledRow[]; skipped: BundledSkip[] }> {
  const open = o.open ?? ((m: BundledModel) => openModel(bundledModelDir(m)));
  const models = new Map<
    string,
    { opened: OpenedModel; evaluate: ReturnType<typeof runOnce>; task: string }
  >();
  const rows: BundledRow[] = [];
  const skipped: BundledSkip[] = [];
  let done = 0;
  const ran = (runs: number) => {
    done += runs;
    o.onProgress?.(done, bundledRunsPerPlan * o.plans.length);
  };
  const skip = (p: BundledPlan, reason: string, otherTask?: true) => {
    const s = { plan: p.checked.plan.name, path: p.path, reason, ...(otherTask ? { otherTask } : {}) };
    skipped.push(s);
    o.onPlan?.({ plan: s.plan, skip: s });
    ran(bundledRunsPerPlan);
  };
  for (const p of o.plans) {
    const name = p.checked.plan.name;
    const model = bundledModelFor(p.checked);
    if (model === undefined) {
      skip(p, 'kvplan ships no model with the attention structure and AR shift this plan states');
      continue;
    }
    if (o.task !== undefined && !model.tasks.includes(o.task)) {
      skip(
        p,
        `its model ${model.name} was not trained on task ${o.task} (only on ${model.tasks.join(', ')})`,
        true,
      );
      continue;
    }
    const bound = atTrainedBlock(p, model);
    if (bound.checked === undefined) {
      skip(p, bound.error ?? '');
      continue;
    }
    let m = models.get(model.name);
    if (m === undefined) {
      const opened = open(model);
      const task = o.task ?? (model.tasks[0] as string);
      const problems = heldOutProblems(task, o.n);
      const run = {
        model: opened,
        prepare: o.prepare,
        task,
        problems,
        genLength: o.genLength,
        batchSize: o.batchSize,
      };
      m = { opened, evaluate: runOnce(run), task };
      models.set(model.name, m);
    }
    const c = contrastsOf(bound.checked, o.genLength);
    if (!c.ok) {
      skip(p, `${c.what} cannot be derived: ${c.diagnostics.map((d) => d.message).join('; ')}`);
      continue;
    }
    o.onPlan?.({ plan: name, model: model.name });
    const { evaluate } = m;
    const counted = async (plan: CheckedPlan) => {
      const r = await evaluate(plan);
      ran(1);
      return r;
    };
    const runs = {
      plan: await counted(bound.checked),
      twin: await counted(c.twin),
      baseline: await counted(c.baseline),
    };
    const row: BundledRow = {
      plan: name,
      path: p.path,
      model: model.name,
      overrides: bound.overrides,
      task: m.task,
      runs,
      effects: ablationEffects.map((e) => ({ ...e, ...contrast(runs[e.of], runs[e.against]) })),
    };
    rows.push(row);
    o.onPlan?.({ plan: name, model: model.name, row });
  }
  return { rows, skipped };
}
