import type { CheckedPlan } from '../dsl/check.ts';
import { Canvas } from '../dsl/semantics/canvas.ts';
import type { StepScores } from '../dsl/semantics/stepper.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import { createRng } from '../model/weights.ts';
import { Inspector, type LayerPlan } from './inspector.ts';
import { blockLength } from './simulate.ts';

export interface SampleState {
  readonly canvas: Canvas;
  readonly layers: readonly LayerPlan[];
  /** Whether the step is a refresh of every row on every layer. */
  readonly full: boolean;
}

/**
 * The index lists the inspector builds for sample token states of a generation with stand-in
 * scores: the first step, and a step between refreshes when there is one (where plans differ).
 */
export function sampleStates(
  plan: CheckedPlan,
  lowered: LoweredPlan,
  promptLen: number,
  genLen: number,
): SampleState[] {
  const canvas = new Canvas(promptLen, genLen, blockLength(plan, genLen));
  const rng = createRng(1);
  const noise = () => Float64Array.from({ length: canvas.length }, () => rng.uniform());
  const scores: StepScores = { score: () => noise(), attnSimilarity: () => 1 };
  const inspector = new Inspector(
    plan.typed,
    lowered.layers,
    canvas,
    scores,
    noise(),
    lowered.config.kvHeads,
  );
  const target = Math.min(genLen - 1, Math.max(2, Math.floor(canvas.blockLen / 2) + 1));
  const out: SampleState[] = [];
  for (;;) {
    const layers = lowered.layers.map((r) => inspector.planLayer(r));
    const full = layers.every((p) => p.full);
    if (canvas.step === 0) out.push({ canvas: snapshot(canvas), layers, full });
    if ((canvas.step >= target && !full) || canvas.step >= 4 * genLen || canvas.done) {
      if (canvas.step > 0) out.push({ canvas: snapshot(canvas), layers, full });
      return out;
    }
    inspector.finishStep();
    const chosen = inspector.decide((by) => inspector.decodeScore(by));
    canvas.commit(chosen, inspector.revoke(chosen));
    canvas.advance();
  }
}

function snapshot(c: Canvas): Canvas {
  const copy = new Canvas(c.promptLen, c.genLen, c.blockLen, c.aligned);
  copy.decodedAt.set(c.decodedAt);
  copy.changedAt.set(c.changedAt);
  [copy.step, copy.block, copy.blockStep] = [c.step, c.block, c.blockStep];
  return copy;
}
