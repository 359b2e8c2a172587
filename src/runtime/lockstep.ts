import type { HostTensor } from '../ir/tensor.ts';
import type { CachePart } from './cachePart.ts';
import type { Probe } from './probe.ts';
import type { CanvasRows, HeadOutput, Program, StepRunner } from './runner.ts';

/** How far a runner's logits were from its shadow's at one `head` call, and the shadow's scale. */
export interface LockstepGap {
  readonly deviation: number;
  readonly scale: number;
}

/**
 * Runs a shadow runner beside a primary one on exactly the same calls (same programs, same index
 * lists, same canvas), and records at every `head` how far the primary's logits are from the
 * shadow's. With the reference interpreter as the shadow, a compiled backend is compared with the
 * plan it claims to run at every step, cached steps included: the golden full forward cannot judge
 * those for an approximate plan, since the plan differs from it by design. Everything the driver
 * reads (hidden states, probes, caches) comes from the primary, so the run follows its decisions.
 */
export class LockstepRunner implements StepRunner {
  readonly gaps: LockstepGap[] = [];

  constructor(
    private readonly primary: StepRunner,
    private readonly shadow: StepRunner,
  ) {}

  get probe(): Probe | undefined {
    return this.primary.probe;
  }

  async embed(program: Program, canvas: CanvasRows, read: boolean): Promise<HostTensor | undefined> {
    await this.shadow.embed(program, canvas, false);
    return this.primary.embed(program, canvas, read);
  }

  async layer(
    program: Program,
    layer: number,
    lists: ReadonlyMap<string, Int32Array>,
    read: boolean,
  ): Promise<HostTensor | undefined> {
    await this.shadow.layer(program, layer, lists, false);
    return this.primary.layer(program, layer, lists, read);
  }

  async head(program: Program, out: Int32Array): Promise<HeadOutput> {
    // Both sides' logits, always: comparing them is what this runner is for.
    const expected = (await this.shadow.head(program, out, true)).logits;
    const head = await this.primary.head(program, out, true);
    const got = head.logits;
    if (!expected || !got) throw new Error('a runner asked for its logits did not return them');
    let deviation = 0;
    let scale = 0;
    expected.data.forEach((e, i) => {
      const d = Math.abs((got.data[i] as number) - e);
      // A NaN from the primary is the largest deviation there is.
      deviation = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(deviation, d);
      scale = Math.max(scale, Math.abs(e));
    });
    this.gaps.push({ deviation, scale });
    return head;
  }

  cachePart(part: CachePart, layer: number): HostTensor | undefined {
    return this.primary.cachePart(part, layer);
  }

  release(): void {
    this.primary.release?.();
    this.shadow.release?.();
  }
}
