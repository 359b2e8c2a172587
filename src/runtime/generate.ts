import type { CheckedPlan } from '../dsl/check.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import type { StepRunner } from './runner.ts';
import { type StepInfo, simulateGeneration } from './simulate.ts';

export interface GenerateOptions {
  readonly model: { readonly config: ModelConfig; readonly weights: Weights };
  readonly plan: CheckedPlan;
  /** The plan lowered and compiled for this model (by the backend that runs it). */
  readonly lowered: LoweredPlan;
  readonly prompts: readonly Int32Array[];
  readonly genLength: number;
  /** The backend's runner for a canvas of L rows (default: the float64 reference). */
  readonly runner?: (L: number) => StepRunner;
  readonly seed?: number;
  readonly onStep?: (sequence: number, info: StepInfo) => void;
}

export interface Generated {
  readonly tokens: Int32Array;
  /** The generated positions only. */
  readonly generated: Int32Array;
  readonly steps: number;
  readonly ms: number;
}

export interface GenerateResult {
  readonly sequences: readonly Generated[];
  /** Generated tokens only (prompt tokens are not counted), over the time spent in steps. */
  readonly tokensPerSecond: number;
}

/**
 * Generates a completion for each prompt with a compiled plan. Sequences run one after another
 * (batching several canvases into one step is not built yet).
 */
export async function generate(o: GenerateOptions): Promise<GenerateResult> {
  const sequences: Generated[] = [];
  let ms = 0;
  for (const [n, prompt] of o.prompts.entries()) {
    let steps = 0;
    let time = 0;
    const r = await simulateGeneration(o.plan, o.lowered, {
      config: o.model.config,
      weights: o.model.weights,
      prompt,
      genLen: o.genLength,
      seed: (o.seed ?? 1) + n,
      compare: false,
      ...(o.runner ? { runner: o.runner } : {}),
      onStep: (info) => {
        steps++;
        time += info.ms;
        o.onStep?.(n, info);
      },
    });
    ms += time;
    sequences.push({ tokens: r.tokens, generated: r.tokens.slice(prompt.length), steps, ms: time });
  }
  const count = sequences.reduce((a, s) => a + s.generated.length, 0);
  return { sequences, tokensPerSecond: ms > 0 ? (1000 * count) / ms : 0 };
}
