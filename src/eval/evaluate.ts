/**
 * Task accuracy of a plan, in the papers' protocol: the same held-out problems for every plan,
 * exact-match accuracy of the answer (the text before the first EOS), and throughput in generated
 * tokens per second, reported together.
 */
import type { CheckedPlan } from '../dsl/check.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import { countedTokens, generate } from '../runtime/generate.ts';
import { modelFor } from '../runtime/modelFor.ts';
import type { OpenedModel } from '../runtime/openModel.ts';
import type { PrepareBackend } from '../runtime/prepare.ts';
import type { StepRunner } from '../runtime/runner.ts';
import { blockLength } from '../runtime/simulate.ts';
import { answerText, type Tokenizer } from '../runtime/tokenizer.ts';
import { type Problem, tasks } from './tasks.ts';

export interface EvalOptions {
  readonly config: ModelConfig;
  readonly weights: Weights;
  readonly tokenizer: Tokenizer;
  readonly plan: CheckedPlan;
  readonly lowered: LoweredPlan;
  readonly runner?: (L: number) => StepRunner;
  readonly task: string;
  readonly problems: readonly Problem[];
  /** Seed of random decode orders. */
  readonly seed?: number;
  readonly genLength: number;
  /** Problems generated at once (one batch); default all of them. */
  readonly batchSize?: number;
  /** Called as batches finish: problems done of all of them. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface ProblemResult {
  readonly problem: Problem;
  /** The generated text up to the first EOS. */
  readonly output: string;
  readonly correct: boolean;
  readonly steps: number;
  /** Generated tokens counted for tokens/s: up to the first EOS (see countedTokens). */
  readonly tokens: number;
}

export interface EvalResult {
  readonly plan: string;
  readonly task: string;
  readonly n: number;
  readonly accuracy: number;
  readonly tokensPerSecond: number;
  /** Mean denoising steps per problem. */
  readonly meanSteps: number;
  /** Denoising steps over generated tokens, both summed over the problems (1 for one token per step). */
  readonly stepsPerToken: number;
  readonly problems: readonly ProblemResult[];
}

/** The canvas rows a batch of problems needs at most: what a backend is compiled for. */
export function canvasBound(
  problems: readonly Problem[],
  tokenizer: Tokenizer,
  rowsPerPrompt: number,
  batch: number,
) {
  const longest = Math.max(0, ...problems.map((p) => tokenizer.encode(p.prompt).length));
  return Math.min(batch, problems.length) * (longest + rowsPerPrompt);
}

export async function evaluatePlan(o: EvalOptions): Promise<EvalResult> {
  const task = tasks.get(o.task);
  if (!task) throw new Error(`unknown task ${o.task}`);
  const { problems } = o;
  const eos = o.tokenizer.eosTokenId;
  const batchSize = Math.max(1, o.batchSize ?? problems.length);
  const { onProgress } = o;
  // Batches run one after another: a batch's first step means every earlier batch is done.
  let started = 0;
  const batchStarts = (sequence: number) => {
    const done = sequence - (sequence % batchSize);
    if (done <= started) return;
    started = done;
    onProgress?.(done, problems.length);
  };
  // generate() runs the problems in batches of batchSize and times only the denoising steps.
  const r = await generate({
    model: { config: o.config, weights: o.weights },
    plan: o.plan,
    lowered: o.lowered,
    prompts: problems.map((p) => o.tokenizer.encode(p.prompt)),
    genLength: o.genLength,
    batchSize,
    ...(o.runner ? { runner: o.runner } : {}),
    ...(onProgress ? { onStep: batchStarts } : {}),
    ...(eos === undefined ? {} : { eosTokenId: eos }),
    ...(o.seed === undefined ? {} : { seed: o.seed }),
  });
  const results: ProblemResult[] = r.sequences.map((s, i) => {
    const problem = problems[i] as Problem;
    const output = answerText(o.tokenizer, s.generated);
    return {
      problem,
      output,
      correct: task.check(output, problem),
      steps: s.steps,
      tokens: countedTokens(s),
    };
  });
  const n = results.length;
  onProgress?.(n, n);
  const sum = (f: (r: ProblemResult) => number) => results.reduce((a, r) => a + f(r), 0);
  return {
    plan: o.plan.plan.name,
    task: o.task,
    n,
    accuracy: n ? results.filter((r) => r.correct).length / n : 0,
    tokensPerSecond: r.tokensPerSecond,
    meanSteps: n ? sum((r) => r.steps) / n : 0,
    stepsPerToken: sum((r) => r.tokens) ? sum((r) => r.steps) / sum((r) => r.tokens) : 0,
    problems: results,
  };
}

export interface ModelRun {
  readonly model: OpenedModel;
  readonly prepare: PrepareBackend;
  readonly task: string;
  readonly problems: readonly Problem[];
  readonly genLength: number;
  readonly batchSize: number;
  readonly seed?: number;
  /** Called as the problems' batches finish (see EvalOptions). */
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Compiles a plan for the canvases its batches need and evaluates it on the problems, on the model
 * with the attention structure and AR shift the plan states (planOnModel decides whether it may).
 */
export async function evaluateOnModel(plan: CheckedPlan, o: ModelRun): Promise<EvalResult> {
  const rowsPerPrompt = Math.max(o.genLength, blockLength(plan, o.genLength));
  const maxCanvas = canvasBound(o.problems, o.model.tokenizer, rowsPerPrompt, o.batchSize);
  const prepared = await o.prepare(plan, modelFor(plan, o.model.config), o.model.weights, maxCanvas);
  return evaluatePlan({
    config: prepared.config,
    weights: o.model.weights,
    tokenizer: o.model.tokenizer,
    plan,
    lowered: prepared.lowered,
    ...(prepared.runner ? { runner: prepared.runner } : {}),
    task: o.task,
    problems: o.problems,
    ...(o.seed === undefined ? {} : { seed: o.seed }),
    genLength: o.genLength,
    batchSize: o.batchSize,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
}
