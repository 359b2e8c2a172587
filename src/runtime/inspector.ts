import type { Call, DecodeStmt, Expr, RefreshStmt } from '../dsl/ast.ts';
import { printExpr } from '../dsl/printer.ts';
import type { Canvas } from '../dsl/semantics/canvas.ts';
import { type Mask, maskOf, positionsOf } from '../dsl/semantics/evaluate.ts';
import type { LayerRules } from '../dsl/semantics/layerRules.ts';
import { PlanStepper, type StepScores } from '../dsl/semantics/stepper.ts';
import type { TypedPlan } from '../dsl/typecheck.ts';
import { lists as names } from '../ir/names.ts';
import { GenerationError } from './generationError.ts';

/** What one layer of one step runs: its stage variant and the index lists it is fed. */
export interface LayerPlan {
  readonly layer: number;
  readonly variant: 'cached' | 'reuse';
  /** Every row is recomputed over the full key set (a refresh of `all` on this layer). */
  readonly full: boolean;
  readonly lists: Map<string, Int32Array>;
  readonly rows: Mask;
}

/**
 * The host-side inspector: turns the plan's step semantics (PlanStepper, the same decisions the
 * checker proves) into index lists, one layer at a time. Sets are never baked into kernels; only
 * these lists change from step to step.
 */
export class Inspector {
  readonly stepper: PlanStepper;
  private stepSizes = new Map<string, number>();

  constructor(
    typed: TypedPlan,
    private readonly rules: readonly LayerRules[],
    canvas: Canvas,
    scores: StepScores,
    randomScores: Float64Array,
    /** KV heads of the model: an attend reading a `per kv_head` selection gets a key list for each. */
    kvHeads = 1,
  ) {
    const pinnedMissing = (call: Call) => {
      throw new GenerationError(
        `${printExpr(call)} (line ${call.span.start.line}) is measured when its layer is decided, but this model has ${rules.length} layers, so it never is`,
      );
    };
    this.stepper = new PlanStepper(typed, rules, canvas, scores, randomScores, { pinnedMissing }, kvHeads);
  }

  /** Steps at which each refresh rule's condition held on at least one of its layers. */
  get firings(): ReadonlyMap<RefreshStmt, number> {
    return this.stepper.firings;
  }

  /** Decides layer `l` of the current step; call in layer order, after the layers below have run. */
  planLayer(r: LayerRules): LayerPlan {
    const l = r.layer;
    if (l === 0) this.stepSizes = new Map();
    const d = this.stepper.decideLayer(r);
    this.stepper.commitLayer(d);
    const lists = new Map<string, Int32Array>([[names.rows(l), positionsOf(d.rows)]]);
    if (d.keys) lists.set(names.keys(l), positionsOf(d.keys));
    d.headKeys?.forEach((keys, g) => {
      lists.set(names.headKeys(l, g), positionsOf(keys));
    });
    for (const [segment, keys] of d.segments)
      if (!d.servedFrom.has(segment)) lists.set(names.keys(l, segment), positionsOf(keys));
    for (const w of d.writes) lists.set(names.write(l, w.id), positionsOf(w.rows));
    // The cached program reads these on every layer that has them, also on one a layer-scoped
    // refresh makes full: there the rows the layer below skipped still need their input.
    if (d.restore) lists.set(names.restore(l), positionsOf(d.restore));
    if (d.delta) lists.set(names.delta(l), positionsOf(d.delta));
    for (const [name, list] of lists) this.stepSizes.set(name, list.length);
    return { layer: l, variant: d.variant, full: d.full, lists, rows: d.rows };
  }

  /** The length of every index list built this step, by name (`rows.0`, `keys.1`, …). */
  listSizes(): Map<string, number> {
    return new Map(this.stepSizes);
  }

  /** How many rows each layer computed this step. */
  layerRows(): number[] {
    return this.stepper.stepRows.map((m) => m.reduce((a, b) => a + b, 0));
  }

  /** Rows computed at the last layer this step: the rows whose predictions are fresh. */
  outputRows(): Int32Array {
    return positionsOf(this.stepper.stepRows[this.rules.length - 1] ?? maskOf(this.stepper.L, () => false));
  }

  get decodeRule(): DecodeStmt {
    return this.stepper.decodeRule;
  }

  /** The masked positions the decode rule may commit now (its `in` set, default the current block). */
  candidates(): Mask {
    return this.stepper.candidates();
  }

  /** The positions the decode rule commits on the current state, best first. */
  decide(score: (by: Expr | undefined) => Float64Array): number[] {
    return this.stepper.decide(score);
  }

  /** The decoded positions a revoking decode rule remasks after committing `chosen`. */
  revoke(chosen: readonly number[]): number[] {
    return this.stepper.revoke(chosen);
  }

  /** Evaluates a decode score (default: confidence) on the current state. */
  decodeScore(by: Expr | undefined): Float64Array {
    return this.stepper.decodeScore(by);
  }

  /** End of step: record a full refresh and choose the selections whose moment has come. */
  finishStep(): void {
    this.stepper.finishStep();
  }
}
