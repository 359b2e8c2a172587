import type { LoweredPlan } from '../ir/lower.ts';
import type { StepProgram } from '../ir/types.ts';
import type { ModelConfig } from '../model/config.ts';
import type { KernelProgram } from './kernelIR.ts';
import type { MemoryPlan } from './memory.ts';

export type Target = 'reference' | 'cpu' | 'wgsl' | 'ptx';

/** What flows through the pass pipeline: the phases' step programs, then kernels, then memory. */
export interface PipelineState {
  readonly lowered: LoweredPlan;
  /** The phases by name (`refresh`, `cached`, `reuse`); passes replace them. */
  readonly phases: ReadonlyMap<string, StepProgram>;
  /** Set by the fusion pass: one kernel program per phase. */
  readonly kernels?: ReadonlyMap<string, KernelProgram>;
  /** Set by the memory planning pass: one plan per phase. */
  readonly memory?: ReadonlyMap<string, MemoryPlan>;
}

export interface PassContext {
  readonly config: ModelConfig;
  readonly target: Target;
  /** The maximum canvas length that memory is planned for (default 1024, see memory.ts). */
  readonly canvas?: number;
}

export interface Pass {
  readonly name: string;
  readonly description: string;
  run(state: PipelineState, ctx: PassContext): PipelineState;
}
