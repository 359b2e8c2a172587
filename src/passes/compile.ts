import type { CheckedPlan } from '../dsl/check.ts';
import { type LoweredPlan, lowerPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import { fusionPass } from './fusion.ts';
import { hoistPass } from './hoist.ts';
import { layoutPass } from './layout.ts';
import { cleanupPasses, initialState, runPipeline, withPhases } from './manager.ts';
import { memoryPass } from './memory.ts';
import type { Pass, PipelineState, Target } from './state.ts';

/** The pipeline, in order: clean up the step IR, hoist, clean up again, fuse, lay out, plan memory. */
export const pipeline: readonly Pass[] = [
  ...cleanupPasses,
  hoistPass,
  ...cleanupPasses.slice(1),
  fusionPass,
  layoutPass,
  memoryPass,
].map((p, i, all) => (all.findIndex((q) => q.name === p.name) === i ? p : { ...p, name: `${p.name}#2` }));

export interface CompileOptions {
  readonly target: Target;
  /** Canvas length the memory plan is sized for (maximum prompt + generation). */
  readonly canvas?: number;
  readonly dumpAfter?: readonly string[];
  readonly dumpAll?: boolean;
  readonly verify?: boolean;
  readonly onDump?: (pass: string, text: string) => void;
}

export interface Compiled {
  /** The plan with its optimized phases (reuse included), ready for the runtime. */
  readonly lowered: LoweredPlan;
  readonly state: PipelineState;
  readonly timings: readonly { readonly pass: string; readonly ms: number }[];
}

export function compilePlan(plan: CheckedPlan, config: ModelConfig, opts: CompileOptions): Compiled {
  const lowered = lowerPlan(plan, config);
  const ctx = { config, target: opts.target, ...(opts.canvas === undefined ? {} : { canvas: opts.canvas }) };
  const { state, timings } = runPipeline(initialState(lowered), pipeline, ctx, {
    verify: opts.verify ?? true,
    ...(opts.dumpAfter ? { dumpAfter: opts.dumpAfter } : {}),
    ...(opts.dumpAll ? { dumpAll: true } : {}),
    ...(opts.onDump ? { onDump: opts.onDump } : {}),
  });
  return { lowered: withPhases(state.lowered, state), state, timings };
}
