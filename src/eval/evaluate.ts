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
import type { Tokenizer } from '../runtime/tokenizer.ts';
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
  readonly onProblem?: (r: ProblemResult, index: number) => void;
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

/** The text of a generated answer: everything before the first EOS. */
export function answerOf(tokenizer: Tokenizer, generated: Int32Array): string {
  const eos = tokenizer.eosTokenId;
  const end = eos === undefined ? -1 : generated.indexOf(eos);
  return tokenizer.decode(end < 0 ? generated : generated.subarray(0, end));
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
  const batch = Math.max(1, o.batchSize ?? problems.length);
  const results: ProblemResult[] = [];
  let generatedTokens = 0;
  let seconds = 0;
  for (let start = 0; start < problems.length; start += batch) {
    const chunk = problems.slice(start, start + batch);
    const eos = o.tokenizer.eosTokenId;
    const r = await generate({
      model: { config: o.config, weights: o.weights },
      plan: o.plan,
      lowered: o.lowered,
      prompts: chunk.map((p) => o.tokenizer.encode(p.prompt)),
      genLength: o.genLength,
      ...(o.runner ? { runner: o.runner } : {}),
      ...(eos === undefined ? {} : { eosTokenId: eos }),
      ...(o.seed === undefined ? {} : { seed: o.seed }),
    });
    const count = r.sequences.reduce((a, s) => a + s.generated.length, 0);
    if (r.tokensPerSecond > 0) {
      generatedTokens += count;
      seconds += count / r.tokensPerSecond;
    }
    for (const [i, s] of r.sequences.entries()) {
      const problem = chunk[i] as Problem;
      const output = answerOf(o.tokenizer, s.generated);
      const result = { problem, output, correct: task.check(output, problem), steps: s.steps };
      results.push(result);
      o.onProblem?.(result, start + i);
    }
  }
  const n = results.length;
  return {
    plan: o.plan.plan.name,
    task: o.task,
    n,
    accuracy: n ? results.filter((r) => r.correct).length / n : 0,
    tokensPerSecond: seconds > 0 ? generatedTokens / seconds : 0,
    meanSteps: n ? results.reduce((a, r) => a + r.steps, 0) / n : 0,
    problems: results,
  };
}
