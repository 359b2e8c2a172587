import type { RefreshStmt } from '../dsl/ast.ts';
import type { CheckedPlan } from '../dsl/check.ts';
import { printExpr } from '../dsl/printer.ts';
import { Canvas } from '../dsl/semantics/canvas.ts';
import { constantOf } from '../dsl/semantics/constant.ts';
import { hiddenLayers, similarityLayers } from '../dsl/semantics/uses.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { HostTensor } from '../ir/tensor.ts';
import type { ModelConfig } from '../model/config.ts';
import { goldenForward, predictionRow } from '../model/golden.ts';
import { createRng, type Weights } from '../model/weights.ts';
import { runStep } from './batch.ts';
import type { CachePart } from './cachePart.ts';
import { GenerationError } from './generationError.ts';
import { Inspector } from './inspector.ts';
import type { Probe } from './probe.ts';
import { ReferenceRunner } from './referenceRunner.ts';
import type { Program, StepOutput, StepRunner } from './runner.ts';
import { ModelScores } from './scores.ts';

export interface GenerationCase {
  readonly config: ModelConfig;
  readonly weights: Weights;
  readonly prompt: Int32Array;
  readonly genLen: number;
  readonly seed: number;
  /** The backend that runs the step programs (default: the float64 reference interpreter). */
  readonly runner?: (L: number) => StepRunner;
  /** Compare every step with the golden full forward (default true; generation alone skips it). */
  readonly compare?: boolean;
  /** Called after every step with what it computed and committed. */
  readonly onStep?: (info: StepInfo) => void;
}

export interface StepInfo {
  readonly step: number;
  readonly block: number;
  readonly blockStep: number;
  readonly phase: 'refresh' | 'cached';
  /** The program each layer ran, by layer number (`reuse` where it served a stored partial). */
  readonly programs: ReadonlyMap<number, Program>;
  /** Rows recomputed at each layer. */
  readonly rows: readonly number[];
  /** Lengths of the index lists of the step, by name (`rows.0`, `keys.0`, `out`, …). */
  readonly sizes: ReadonlyMap<string, number>;
  readonly committed: readonly { readonly position: number; readonly token: number }[];
  /** Decoded positions a revoking decode rule turned back into masks this step. */
  readonly remasked: readonly number[];
  /**
   * Rows whose predictions this step recomputed (canvas positions), and their logits [#out, vocab]:
   * the runner's (StepRunner.head), valid until the next step starts; copy them to keep them.
   * Absent from a generation that did not ask for them (GenerateOptions.logits) on a runner that
   * left them on its device.
   */
  readonly out: Int32Array;
  readonly logits?: HostTensor;
  /** Wall time of the step (with a batch, of the whole batch's step). */
  readonly ms: number;
}

export interface StepRecord {
  readonly step: number;
  readonly block: number;
  readonly blockStep: number;
  readonly phase: 'refresh' | 'cached';
  /** Rows recomputed at the last layer. */
  readonly computed: number;
  /** Max |plan logit - golden logit| over the prediction rows of the decode candidates. */
  readonly deviation: number;
  /** Largest |golden logit| over the same rows, the scale errors are measured against. */
  readonly scale: number;
  /** Whether the plan commits the same positions and tokens as decoding from the golden logits would. */
  readonly agrees: boolean;
}

export interface GenerationResult {
  readonly steps: readonly StepRecord[];
  readonly tokens: Int32Array;
  /** Steps at which each refresh rule fired (its condition held on one of its layers). */
  readonly firings: ReadonlyMap<RefreshStmt, number>;
}

/** The block length a plan uses on a canvas of `genLen` generated positions. */
export function blockLength(plan: CheckedPlan, genLen: number): number {
  const blocks = plan.typed.plan.body.find((s) => s.kind === 'blocks');
  return blocks ? constantOf(plan.typed, blocks.length) : genLen;
}

/**
 * The generation state of one sequence: its canvas and tokens, its inspector and scores. A step's
 * forward runs elsewhere (runStep, possibly batched with other sequences); this takes in what it
 * predicted, decides the commits and moves the schedule on.
 */
export class SequenceRun {
  readonly canvas: Canvas;
  readonly tokens: Int32Array;
  readonly blocks: Int32Array;
  readonly scores: ModelScores;
  readonly inspector: Inspector;
  /** The per-position draws of `random` decode orders. */
  readonly random: Float64Array;
  /** The layers whose attention rows are remembered at refreshes: those the plan measures drift at. */
  private readonly similarity: readonly number[];

  constructor(
    plan: CheckedPlan,
    lowered: LoweredPlan,
    private readonly config: ModelConfig,
    weights: Weights,
    prompt: Int32Array,
    genLen: number,
    seed: number,
    /** The K or V cache of a layer over this sequence's rows. */
    cachePart: (part: CachePart, layer: number) => HostTensor | undefined,
    probe?: Probe,
    /** Whether the scores keep every row's logits (ModelScores.logits), for the golden comparison. */
    keepLogits = true,
  ) {
    const canvas = new Canvas(
      prompt.length,
      genLen,
      blockLength(plan, genLen),
      config.alignedBlocks === true,
    );
    const L = canvas.length;
    this.canvas = canvas;
    this.tokens = new Int32Array(L).fill(config.maskTokenId);
    this.tokens.set(prompt);
    this.blocks = Int32Array.from({ length: L }, (_, i) => canvas.blockOf(i));
    const rng = createRng(seed);
    this.random = Float64Array.from({ length: L }, () => rng.uniform());
    this.scores = new ModelScores(
      config,
      weights,
      L,
      this.blocks,
      lowered.blockCausal,
      cachePart,
      new Set(
        hiddenLayers(
          plan.typed,
          lowered.layers.map((r) => r.layer),
        ),
      ),
      probe,
      keepLogits,
    );
    this.inspector = new Inspector(
      plan.typed,
      lowered.layers,
      canvas,
      this.scores,
      this.random,
      lowered.config.kvHeads,
    );
    this.similarity = similarityLayers(
      plan.typed,
      lowered.layers.map((r) => r.layer),
    );
  }

  /** Takes in a step's predictions; returns the positions the decode rule commits, best first. */
  observe(out: StepOutput): number[] {
    this.scores.storeLogits(out.out, out.logits, this.canvas.step, out.stats);
    if (out.phase === 'refresh' && this.similarity.length > 0) this.scores.rememberAttention(this.similarity);
    return this.inspector.decide((by) => this.inspector.decodeScore(by));
  }

  /** Ends the step: commits the chosen positions and advances; returns what the step did. */
  commit(chosen: readonly number[], out: StepOutput, ms: number): StepInfo {
    const c = this.canvas;
    const remasked = this.inspector.revoke(chosen);
    this.inspector.finishStep();
    const committed = chosen.map((position) => ({
      position,
      token: this.scores.predicted(position),
    }));
    const info: StepInfo = {
      step: c.step,
      block: c.block,
      blockStep: c.blockStep,
      phase: out.phase,
      programs: out.programs,
      rows: this.inspector.layerRows(),
      sizes: new Map([...this.inspector.listSizes(), ['out', out.out.length]]),
      committed,
      remasked,
      out: out.out,
      ...(out.logits ? { logits: out.logits } : {}),
      ms,
    };
    for (const { position, token } of committed) this.tokens[position] = token;
    for (const position of remasked) this.tokens[position] = this.config.maskTokenId;
    c.commit(chosen, remasked);
    c.advance();
    return info;
  }

  /**
   * Throws DecodeStalled when a plan keeps stepping without finishing. The checker rejects decode
   * rules that commit nothing on its sample runs, but an `in` set filtered by a model score
   * (`generated[entropy < 1.0]`) may hold no masked position on a real model: that is the plan's
   * doing, reported as such, not a crash.
   */
  checkProgress(planName: string): void {
    const c = this.canvas;
    if (c.step <= 4 * c.genLen + 8) return;
    const masked = Array.from({ length: c.length }, (_, i) => i).filter((i) => c.isMasked(i)).length;
    const d = this.inspector.decodeRule;
    const within = d.within ? `\`in ${printExpr(d.within)}\`` : 'the current block';
    throw new DecodeStalled(
      `plan ${planName} does not finish the generation: after ${c.step} steps ${masked} positions are still masked, and its decode rule (line ${d.span.start.line}) finds no candidate among them in ${within}`,
    );
  }
}

/** A plan whose decode rule stops committing on this model: a property of the plan, not a bug. */
export class DecodeStalled extends GenerationError {
  override readonly name = 'DecodeStalled';
}

/**
 * Runs a plan through a whole generation on the reference interpreter, and at every step compares
 * it with the golden full forward on the same token state (the plan's own history drives the run).
 */
export async function simulateGeneration(
  plan: CheckedPlan,
  lowered: LoweredPlan,
  c: GenerationCase,
): Promise<GenerationResult> {
  const { config, weights } = c;
  const P = c.prompt.length;
  const L = P + c.genLen;
  const runner: StepRunner = c.runner ? c.runner(L) : new ReferenceRunner(lowered, weights, L);
  const run = new SequenceRun(
    plan,
    lowered,
    config,
    weights,
    c.prompt,
    c.genLen,
    c.seed,
    (part, l) => runner.cachePart(part, l),
    runner.probe,
    c.compare !== false,
  );
  const { canvas, tokens, blocks, scores, inspector } = run;
  const member = { inspector, scores, offset: 0, length: L };
  const rows = { tokens, blocks, seqs: new Int32Array(L) };
  const goldenScores = new ModelScores(config, weights, L, blocks, lowered.blockCausal, () => undefined);
  const goldenInspector = new Inspector(
    plan.typed,
    lowered.layers,
    canvas,
    goldenScores,
    run.random,
    lowered.config.kvHeads,
  );
  const V = config.vocab;
  const steps: StepRecord[] = [];
  const everyRow = Int32Array.from({ length: L }, (_, i) => i);
  const decided = (ps: number[], by: ModelScores) =>
    ps
      .map((i) => `${i}:${by.predicted(i)}`)
      .sort()
      .join(',');
  try {
    while (!canvas.done) {
      run.checkProgress(plan.plan.name);
      const t0 = performance.now();
      const [out] = (await runStep(runner, lowered, rows, [member])) as [StepOutput];
      const chosen = run.observe(out);
      const ms = performance.now() - t0;
      if (c.compare !== false) {
        const golden = goldenForward(config, weights, tokens, {
          promptLen: P,
          blockLen: canvas.blockLen,
          aligned: canvas.aligned,
        });
        goldenScores.storeLogits(everyRow, { shape: [L, V], data: golden.logits }, canvas.step);
        goldenScores.hiddenIn.clear();
        for (const [l, h] of scores.hiddenIn) goldenScores.hiddenIn.set(l, h);
        const goldenChosen = goldenInspector.decide((by) => goldenInspector.decodeScore(by));
        let deviation = 0;
        let scale = 0;
        const candidates = inspector.candidates();
        for (let i = 0; i < L; i++) {
          const r = predictionRow(config, i);
          // A candidate the plan never predicted has no logits to compare: the decode rule ranks it
          // last (confidence 0), and the checker proves that what it commits was predicted.
          if (candidates[i] !== 1 || r < 0 || (scores.logitsStep[r] ?? -1) < 0) continue;
          for (let v = 0; v < V; v++) {
            const g = golden.logits[r * V + v] ?? 0;
            deviation = Math.max(deviation, Math.abs((scores.logits[r * V + v] ?? 0) - g));
            scale = Math.max(scale, Math.abs(g));
          }
        }
        steps.push({
          step: canvas.step,
          block: canvas.block,
          blockStep: canvas.blockStep,
          phase: out.phase,
          computed: out.out.length,
          deviation,
          scale,
          agrees: decided(chosen, scores) === decided(goldenChosen, goldenScores),
        });
      }
      // Committing advances the canvas, so it happens whether or not anyone listens.
      const info = run.commit(chosen, out, ms);
      c.onStep?.(info);
    }
  } finally {
    runner.release?.();
  }
  return { steps, tokens, firings: inspector.firings };
}
