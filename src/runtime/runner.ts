import type { HostTensor } from '../ir/tensor.ts';
import type { Inspector } from './inspector.ts';
import type { ModelScores } from './scores.ts';

export interface StepOutput {
  readonly phase: 'refresh' | 'cached';
  /** Rows whose predictions this step recomputed, and their logits [#out, vocab]. */
  readonly out: Int32Array;
  readonly logits: HostTensor;
}

/** What runs a plan's step programs: the reference interpreter, or a compiled backend. */
export interface StepRunner {
  /**
   * One denoising step: the inspector decides each layer just before it runs. Backends whose
   * device works asynchronously (WebGPU) return a promise.
   */
  step(
    inspector: Inspector,
    scores: ModelScores,
    tokens: Int32Array,
    blocks: Int32Array,
  ): StepOutput | Promise<StepOutput>;
  /** The V cache of a layer, for scores that compare fresh and cached values. */
  kvValues(layer: number): HostTensor | undefined;
}
