import { interpretStage, ResourceStore } from '../ir/interpret.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { HostTensor, RuntimeValue } from '../ir/tensor.ts';
import type { Stage, StepProgram } from '../ir/types.ts';
import type { Weights } from '../model/weights.ts';
import type { Inspector } from './inspector.ts';
import type { StepOutput, StepRunner } from './runner.ts';
import type { ModelScores } from './scores.ts';

const stageOf = (p: StepProgram, name: string): Stage => {
  const s = p.stages.find((x) => x.name === name);
  if (!s) throw new Error(`program ${p.name} has no stage ${name}`);
  return s;
};

/** Runs a lowered plan's step programs on the float64 reference interpreter. */
export class ReferenceRunner implements StepRunner {
  readonly store: ResourceStore;

  constructor(
    private readonly lowered: LoweredPlan,
    private readonly weights: Weights,
    L: number,
    /** Round every intermediate to float32: the eager float32 reference. */
    private readonly float32 = false,
  ) {
    const { refresh, cached, reuse } = lowered.programs;
    const resources = new Map(
      [refresh, cached, ...(reuse ? [reuse] : [])].flatMap((p) =>
        p.resources.map((r) => [r.name, r] as const),
      ),
    );
    this.store = new ResourceStore([...resources.values()], { L });
  }

  private run(stage: Stage, inputs: Map<string, RuntimeValue>): Map<string, RuntimeValue> {
    for (const i of stage.inputs) {
      if (i.role !== 'weight') continue;
      const w = this.weights.get(i.name);
      if (!w) throw new Error(`stage ${stage.name} needs weight ${i.name}, which the model does not have`);
      inputs.set(i.name, w);
    }
    return interpretStage(stage, inputs, this.store, { float32: this.float32 });
  }

  step(inspector: Inspector, scores: ModelScores, tokens: Int32Array, blocks: Int32Array): StepOutput {
    const { refresh, cached, reuse } = this.lowered.programs;
    const full = inspector.fullStep();
    const main = full ? refresh : cached;
    const shared = {
      tokens: { shape: [tokens.length], data: tokens },
      blocks: { shape: [blocks.length], data: blocks },
    };
    let h = this.run(stageOf(main, 'embed'), new Map<string, RuntimeValue>([['tokens', shared.tokens]])).get(
      'h',
    ) as HostTensor;
    scores.hiddenIn.clear();
    for (const rules of this.lowered.layers) {
      if (scores.needsHidden) scores.hiddenIn.set(rules.layer, h);
      const lp = inspector.planLayer(rules);
      const program = full ? refresh : lp.variant === 'reuse' && reuse ? reuse : cached;
      const inputs = new Map<string, RuntimeValue>([['h', h], ['blocks', shared.blocks], ...lp.lists]);
      h = this.run(stageOf(program, `layer.${rules.layer}`), inputs).get('h') as HostTensor;
    }
    const out = inspector.outputRows();
    const logits = this.run(
      stageOf(main, 'head'),
      new Map<string, RuntimeValue>([
        ['h', h],
        ['out', out],
      ]),
    ).get('logits') as HostTensor;
    return { phase: full ? 'refresh' : 'cached', out, logits };
  }

  kvValues(layer: number): HostTensor | undefined {
    const name = `kv.v.${layer}`;
    return this.lowered.programs.cached.resources.some((r) => r.name === name)
      ? this.store.get(name)
      : undefined;
  }
}
