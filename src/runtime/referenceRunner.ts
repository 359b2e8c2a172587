import { interpretStage, ResourceStore } from '../ir/interpret.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import { layerStage } from '../ir/names.ts';
import type { HostTensor, RuntimeValue } from '../ir/tensor.ts';
import type { Stage } from '../ir/types.ts';
import { type Weights, widened } from '../model/weights.ts';
import { type CachePart, cachePartResource } from './cachePart.ts';
import type { CanvasRows, HeadOutput, Program, StepRunner } from './runner.ts';

/** Runs a lowered plan's step programs on the float64 reference interpreter. */
export class ReferenceRunner implements StepRunner {
  readonly store: ResourceStore;
  private h: HostTensor | undefined;
  private rows = new Map<string, RuntimeValue>();

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

  private run(program: Program, name: string, inputs: Map<string, RuntimeValue>): Map<string, RuntimeValue> {
    const p = this.lowered.programs[program];
    const stage: Stage | undefined = p?.stages.find((x) => x.name === name);
    if (!stage) throw new Error(`program ${p?.name ?? program} has no stage ${name}`);
    for (const i of stage.inputs) {
      if (i.role !== 'weight') continue;
      const w = this.weights.get(i.name);
      if (!w) throw new Error(`stage ${stage.name} needs weight ${i.name}, which the model does not have`);
      inputs.set(i.name, widened(w));
    }
    return interpretStage(stage, inputs, this.store, { float32: this.float32 });
  }

  private carried(): HostTensor {
    if (!this.h) throw new Error('a layer ran before the embedding');
    return this.h;
  }

  embed(program: Program, canvas: CanvasRows, read: boolean): HostTensor | undefined {
    const ints = (data: Int32Array) => ({ shape: [data.length], data });
    this.rows = new Map<string, RuntimeValue>([
      ['blocks', ints(canvas.blocks)],
      ['seqs', ints(canvas.seqs)],
    ]);
    this.h = this.run(program, 'embed', new Map([['tokens', ints(canvas.tokens)]])).get('h') as HostTensor;
    return read ? this.h : undefined;
  }

  layer(
    program: Program,
    layer: number,
    lists: ReadonlyMap<string, Int32Array>,
    read: boolean,
  ): HostTensor | undefined {
    const inputs = new Map<string, RuntimeValue>([['h', this.carried()], ...this.rows, ...lists]);
    this.h = this.run(program, layerStage(layer), inputs).get('h') as HostTensor;
    return read ? this.h : undefined;
  }

  head(program: Program, out: Int32Array): HeadOutput {
    const inputs = new Map<string, RuntimeValue>([
      ['h', this.carried()],
      ['out', out],
    ]);
    return { logits: this.run(program, 'head', inputs).get('logits') as HostTensor };
  }

  cachePart(part: CachePart, layer: number): HostTensor | undefined {
    const name = cachePartResource(part, layer);
    return this.lowered.programs.cached.resources.some((r) => r.name === name)
      ? this.store.get(name)
      : undefined;
  }
}
