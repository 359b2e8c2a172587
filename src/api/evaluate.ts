import type { CheckedPlan } from '../dsl/check.ts';
import { canvasBound, type EvalResult, evaluateOnModel } from '../eval/evaluate.ts';
import { defaultTask, heldOutCount, heldOutProblems, tasks } from '../eval/tasks.ts';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';
import { blockLength } from '../runtime/simulate.ts';
import { type Backend, backends, prepareFor, threadsArg } from './backends.ts';
import { choiceArg, integerArg, KvplanError, seedArg, translated } from './errors.ts';
import { fitPlan } from './fit.ts';
import type { Model } from './model.ts';

export type { EvalResult, ProblemResult } from '../eval/evaluate.ts';
export type { Problem } from '../eval/tasks.ts';

/** The tasks with held-out problems (see docs/eval.md): count, sort, add (tiny-dllm), fib, lcg, bub, acc, rem. */
export type TaskName = 'count' | 'sort' | 'add' | 'fib' | 'lcg' | 'bub' | 'acc' | 'rem';

export interface EvaluateOptions {
  /** The task (default `count`, the task of the bundled tiny-dllm; step-* models know bub and fib). */
  readonly task?: TaskName;
  /** Held-out problems, the same ones for every plan at one seed (default 50). */
  readonly n?: number;
  /** Where the step programs run (default `reference`). */
  readonly backend?: Backend;
  /** Generated positions per problem (default 64). */
  readonly genLength?: number;
  /** Problems generated together in one canvas (default 1). */
  readonly batchSize?: number;
  /** Seed of the held-out problems and of random decode orders (default 1). */
  readonly seed?: number;
  /** Threads of the cpu backend (default 0: every core). */
  readonly threads?: number;
}

/**
 * Accuracy and throughput of a plan on held-out problems of a task (`kvplan eval`): exact match of
 * the answer (the text before the first end-of-sequence token), tokens per second of generated
 * tokens, steps per problem and per token. Throws a KvplanError: `invalid-argument` (unknown task,
 * more problems than the task has, a bad option), `plan-model-mismatch`, `backend-unavailable`,
 * `tokenizer` (a model without a tokenizer), `generation-failed`.
 */
export async function evaluate(
  plan: CheckedPlan,
  model: Model,
  options: EvaluateOptions = {},
): Promise<EvalResult> {
  const { plan: checked } = fitPlan(plan, model);
  const task = choiceArg('task', options.task ?? defaultTask, [...tasks.keys()]);
  const n = integerArg('n', options.n ?? 50, 1, Math.min(1_000_000, heldOutCount(task)));
  const backend = choiceArg('backend', options.backend ?? 'reference', backends);
  const genLength = integerArg('genLength', options.genLength ?? 64, 1, maxCanvasPositions);
  const batchSize = integerArg('batchSize', options.batchSize ?? 1, 1, 1024);
  const seed = seedArg(options.seed);
  const threads = threadsArg(options.threads);
  const problems = heldOutProblems(task, n, seed);
  const rowsPerPrompt = Math.max(genLength, blockLength(checked, genLength));
  const longest = await translated(() => canvasBound(problems, model.tokenizer, rowsPerPrompt, 1));
  if (longest > maxCanvasPositions)
    throw new KvplanError(
      'invalid-argument',
      `a problem's canvas would hold ${longest} positions; kvplan runs at most ${maxCanvasPositions} (a shorter genLength)`,
    );
  const path = model.path ?? model.name;
  return translated(() =>
    evaluateOnModel(checked, {
      model: { path, config: model.config, weights: model.weights, tokenizer: model.tokenizer },
      prepare: (p, config, weights, maxCanvas) => prepareFor(backend, p, config, weights, maxCanvas, threads),
      task,
      problems,
      genLength,
      batchSize,
      seed,
    }),
  );
}
