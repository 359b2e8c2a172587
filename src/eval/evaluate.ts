/**
 * Task accuracy of a plan, in the papers' protocol: the same held-out problems for every plan,
 * exact-match accuracy of the answer (the text before the first EOS), and throughput in generated
 * tokens per second, reported together.
 */
import type { CheckedPlan } from '../dsl/check.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import { generate } from '../runtime/generate.ts';
import type { StepRunner } from '../runtime/runner.ts';
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
}

export interface ProblemResult {
  readonly problem: Problem;
  /** The generated text up to the first EOS. */
  readonly output: string;
  readonly correct: boolean;
  readonly steps: number;
}

export interface EvalResult {
  readonly plan: string;
  readonly task: string;
  readonly n: number;
  readonly accuracy: number;
  readonly tokensPerSecond: number;
  /** Mean denoising steps per problem. */
  readonly meanSteps: number;
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
  // generate() runs the problems in batches of batchSize and times only the denoising steps.
  const r = await generate({
    model: { config: o.config, weights: o.weights },
    plan: o.plan,
    lowered: o.lowered,
    prompts: problems.map((p) => o.tokenizer.encode(p.prompt)),
    genLength: o.genLength,
    batchSize: Math.max(1, o.batchSize ?? problems.length),
    ...(o.runner ? { runner: o.runner } : {}),
    ...(eos === undefined ? {} : { eosTokenId: eos }),
    ...(o.seed === undefined ? {} : { seed: o.seed }),
  });
  const results: ProblemResult[] = r.sequences.map((s, i) => {
    const problem = problems[i] as Problem;
    const output = answerText(o.tokenizer, s.generated);
    return { problem, output, correct: task.check(output, problem), steps: s.steps };
  });
  const n = results.length;
  return {
    plan: o.plan.plan.name,
    task: o.task,
    n,
    accuracy: n ? results.filter((r) => r.correct).length / n : 0,
    tokensPerSecond: r.tokensPerSecond,
    meanSteps: n ? results.reduce((a, r) => a + r.steps, 0) / n : 0,
    problems: results,
  };
}
