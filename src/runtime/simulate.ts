import type { CheckedPlan } from '../dsl/check.ts';
import { Canvas } from '../dsl/semantics/canvas.ts';
import { constantOf } from '../dsl/semantics/constant.ts';
import { modelInternalScores, planUses } from '../dsl/semantics/uses.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import { goldenForward, predictionRow, softmaxStats } from '../model/golden.ts';
import { createRng, type Weights } from '../model/weights.ts';
import { Inspector } from './inspector.ts';
import { ReferenceRunner } from './referenceRunner.ts';
import type { StepRunner } from './runner.ts';
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
  /** Rows recomputed at each layer. */
  readonly rows: readonly number[];
  /** Lengths of the index lists of the step, by name (`rows.0`, `keys.0`, `out`, …). */
  readonly sizes: ReadonlyMap<string, number>;
  readonly committed: readonly { readonly position: number; readonly token: number }[];
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
}

/** The block length a plan uses on a canvas of `genLen` generated positions. */
export function blockLength(plan: CheckedPlan, genLen: number): number {
  const blocks = plan.typed.plan.body.find((s) => s.kind === 'blocks');
  return blocks ? constantOf(plan.typed, blocks.length) : genLen;
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
  const blockLen = blockLength(plan, c.genLen);
  const canvas = new Canvas(P, c.genLen, blockLen);
  const L = canvas.length;
  const tokens = new Int32Array(L).fill(config.maskTokenId);
  tokens.set(c.prompt);
  const blocks = Int32Array.from({ length: L }, (_, i) => canvas.blockOf(i));
  const rng = createRng(c.seed);
  const random = Float64Array.from({ length: L }, () => rng.uniform());
  const runner = c.runner ? c.runner(L) : new ReferenceRunner(lowered, weights, L);
  const scores = new ModelScores(
    config,
    weights,
    L,
    blocks,
    lowered.blockCausal,
    (l) => runner.kvValues(l),
    planUses(plan.plan, modelInternalScores),
  );
  const inspector = new Inspector(plan.typed, lowered.layers, canvas, scores, random);
  const goldenScores = new ModelScores(config, weights, L, blocks, lowered.blockCausal, () => undefined);
  const goldenInspector = new Inspector(plan.typed, lowered.layers, canvas, goldenScores, random);
  const V = config.vocab;
  // Attention rows are remembered at refreshes only for plans that measure their drift.
  const similarity = planUses(plan.plan, new Set(['attn_similarity']));
  const steps: StepRecord[] = [];
  const everyRow = Int32Array.from({ length: L }, (_, i) => i);
  const token = (logits: Float64Array, i: number) => {
    const r = predictionRow(config, i);
    return r < 0 ? config.maskTokenId : softmaxStats(logits.subarray(r * V, (r + 1) * V)).argmax;
  };
  const decided = (ps: number[], logits: Float64Array) =>
    ps
      .map((i) => `${i}:${token(logits, i)}`)
      .sort()
      .join(',');
  while (!canvas.done) {
    if (canvas.step > 4 * c.genLen + 8)
      throw new Error(`plan ${plan.plan.name} does not finish the generation`);
    const t0 = performance.now();
    const out = await runner.step(inspector, scores, tokens, blocks);
    scores.storeLogits(out.out, out.logits, canvas.step);
    if (out.phase === 'refresh' && similarity) scores.rememberAttention(lowered.layers.map((r) => r.layer));
    const chosen = inspector.decide((by) => inspector.decodeScore(by));
    const ms = performance.now() - t0;
    if (c.compare !== false) {
      const golden = goldenForward(config, weights, tokens, { promptLen: P, blockLen });
      goldenScores.storeLogits(everyRow, { shape: [L, V], data: golden.logits }, canvas.step);
      goldenScores.hiddenIn.clear();
      for (const [l, h] of scores.hiddenIn) goldenScores.hiddenIn.set(l, h);
      const goldenChosen = goldenInspector.decide((by) => goldenInspector.decodeScore(by));
      let deviation = 0;
      let scale = 0;
      const candidates = inspector.candidates();
      for (let i = 0; i < L; i++) {
        const r = predictionRow(config, i);
        if (candidates[i] !== 1 || r < 0) continue;
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
        agrees: decided(chosen, scores.logits) === decided(goldenChosen, golden.logits),
      });
    }
    inspector.finishStep();
    const committed = chosen.map((position) => ({ position, token: token(scores.logits, position) }));
    c.onStep?.({
      step: canvas.step,
      block: canvas.block,
      blockStep: canvas.blockStep,
      phase: out.phase,
      rows: inspector.layerRows(),
      sizes: new Map([...inspector.listSizes(), ['out', inspector.outputRows().length]]),
      committed,
      ms,
    });
    for (const { position, token: t } of committed) tokens[position] = t;
    canvas.commit(chosen);
    canvas.advance();
  }
  return { steps, tokens };
}
