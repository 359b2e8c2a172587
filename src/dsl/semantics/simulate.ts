import type { CacheStmt, Expr, Segment, SelectStmt, Stmt } from '../ast.ts';
import { builtins } from '../builtins.ts';
import { type Diagnostic, error } from '../diagnostics.ts';
import { printExpr } from '../printer.ts';
import { forEachChild, type TypedPlan } from '../typecheck.ts';
import { Canvas } from './canvas.ts';
import { constantOf } from './constant.ts';
import { describePositions, rowClass, when } from './describe.ts';
import { type Mask, maskOf, members } from './evaluate.ts';
import { isBlockCausal, type LayerRules, layerRules } from './layerRules.ts';
import { type LayerDecision, PlanStepper, type StepObserver, type StepScores } from './stepper.ts';

/** One sample geometry and one outcome of data-dependent conditions (drift, similarity). */
export interface Scenario {
  readonly promptLen: number;
  readonly genLen: number;
  readonly blockLen: number;
  readonly numLayers: number;
  readonly seed: number;
  /** `never`: data-dependent conditions stay false; `always`: they hold at every step. */
  readonly data: 'never' | 'always';
  /**
   * `scores`: rules whose commit count depends on scores (threshold, factor) follow the stand-in
   * scores; `one`: they commit one position a step, the least they may. Stand-in scores can make a
   * threshold finish every block in its first step, which would hide every cached step.
   */
  readonly commits: 'scores' | 'one';
  /**
   * Blocks counted from position 0, as models trained with blocks run them (SDAR, Fast-dLLM v2):
   * the prompt's tail then shares block 0 with the first generated positions.
   */
  readonly aligned: boolean;
}

/** Where a plan departs from full attention, and on which rows; the premise is worded from these. */
export interface Approximations {
  readonly staleKv: Set<string>;
  readonly staleHidden: Set<string>;
  readonly staleFeatures: Set<string>;
  readonly reusedPartials: Set<string>;
  readonly sparse: Set<string>;
  /** Key sets read per KV head (`per kv_head` selections): each head attends to its own. */
  readonly sparsePerHead: Set<string>;
  readonly staleLogits: Set<string>;
}

export const noApproximations = (): Approximations => ({
  staleKv: new Set(),
  staleHidden: new Set(),
  staleFeatures: new Set(),
  reusedPartials: new Set(),
  sparse: new Set(),
  sparsePerHead: new Set(),
  staleLogits: new Set(),
});

/**
 * The range a model score takes on real models, so that a threshold on it (`entropy < 1.0`,
 * `query_key(q) > 0`) splits the stand-in values as it splits real ones: with every stand-in in
 * [0, 1), `all[entropy < 1.0]` held every row in the simulation and none on a model (fuzz
 * finding F10). Entropy reaches log(vocab), about 12 for the largest vocabularies.
 */
/** The drift scores, with the part of the K/V cache each compares: drawn per layer, and they need that cache. */
/**
 * The drift scores: what each compares, and the cache entries it compares with: the K/V cache of
 * the layer it is read at, or (hidden state) the `hidden` cache of the layer below.
 */
const driftOf: Readonly<Record<string, { readonly what: string; readonly kind: 'kv' | 'hidden' }>> = {
  value_drift: { what: 'V', kind: 'kv' },
  key_drift: { what: 'K', kind: 'kv' },
  hidden_drift: { what: 'the hidden state', kind: 'hidden' },
};

const scoreRange: Readonly<Record<string, readonly [number, number]>> = {
  entropy: [0, 12],
  value_drift: [0, 2],
  hidden_drift: [0, 2],
  key_drift: [0, 2],
  query_key: [-4, 4],
};

// A deterministic stand-in for model outputs of rows 0 to n - 1: what the checker needs is their
// shape, not values. A quarter of the values sit at the ends of the range, where real scores
// also sit (confidence 0 for a row never predicted, 1 when saturated): with every value strictly
// inside, `all[confidence > 0.01]` held every row in the simulation, and a plan that drops rows
// on a model was classified exact (fuzz seed 1911093110).
function pseudoScores(seed: number, step: number, name: string, n: number, ends = true): Float64Array {
  const [lo, hi] = scoreRange[name.split('@')[0] as string] ?? [0, 1];
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = unitHash(seed, step, name, i);
    const x = !ends ? u : u < 0.125 ? 0 : u >= 0.875 ? 1 : (u - 0.125) / 0.75;
    out[i] = lo + (hi - lo) * x;
  }
  return out;
}

function unitHash(seed: number, step: number, name: string, i: number): number {
  let h = (seed * 0x9e3779b1) ^ (step * 0x85ebca6b) ^ (i * 0xc2b2ae35);
  for (let k = 0; k < name.length; k++) h = Math.imul(h ^ name.charCodeAt(k), 0x27d4eb2d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) / 2 ** 32;
}

/** What the runtime reports for a position with no prediction yet (ModelScores): none is known. */
const unpredicted: Readonly<Record<string, number>> = { confidence: 0, margin: 0, entropy: 12 };

/**
 * The stand-in scores of a scenario: deterministic per seed, step, score, row and, for the drifts,
 * layer (they are measured on each layer's own K or V, the others once a step, so a compute set built from
 * it may differ between layers, which the reads between layers must survive). The prediction
 * statistics of a position whose prediction row (`row`: the position itself, or the one before it
 * under ar_shift; -1 for none) has never been computed (`logitsStep` -1) take the value the
 * runtime gives them, as does position 0 under ar_shift, which nothing predicts.
 */
export function standInScores(
  sc: Scenario,
  canvas: Canvas,
  logitsStep: Int32Array,
  row: (position: number) => number,
): StepScores {
  // A plan may read one score in many places: its stand-in is drawn once a step (and layer), and
  // redrawn within the step only when rows gained a prediction (they never lose one).
  const drawn = new Map<string, { unpredicted: number; scores: Float64Array }>();
  let drawnAt = -1;
  return {
    score: (name, _queries, layer) => {
      const key = driftOf[name] !== undefined ? `${name}@${layer}` : name;
      if (drawnAt !== canvas.step) {
        drawn.clear();
        drawnAt = canvas.step;
      }
      const none = unpredicted[name];
      let unpredictedRows = 0;
      if (none !== undefined) for (const t of logitsStep) if (t < 0) unpredictedRows++;
      const known = drawn.get(key);
      if (known?.unpredicted === unpredictedRows) return known.scores;
      const scores = pseudoScores(sc.seed, canvas.step, key, canvas.length);
      if (none !== undefined)
        for (let i = 0; i < scores.length; i++) {
          const r = row(i);
          if (r < 0 || (logitsStep[r] ?? -1) < 0) scores[i] = none;
        }
      drawn.set(key, { unpredicted: unpredictedRows, scores });
      return scores;
    },
    attnSimilarity: () => (sc.data === 'always' ? -1 : 1),
  };
}

/**
 * Scores whose decode order the plan can know: `age` and `position` are the simulation's own, and a
 * `random` order is drawn per generation, which `targets` and `next_targets` follow whatever the
 * draw. An order by any other score comes from the model's predictions.
 */
const fixedScores: ReadonlySet<string> = new Set(['age', 'position', 'random']);

/** Whether a plan's decode order comes from the model's predictions (the default, confidence, does). */
export function decodeOrderFromModel(typed: TypedPlan): boolean {
  const by = typed.decode.by;
  return (
    !by ||
    refersTo(by, (e) => {
      const name = e.kind === 'name' ? e.name : e.kind === 'call' ? e.callee.name : undefined;
      const b = name === undefined ? undefined : builtins[name];
      // A score of scores (maxpool) is as fixed as the scores it reads.
      const combinator = b?.kind === 'function' && b.args.some((a) => a.type === 'score');
      return b?.type === 'score' && !combinator && !fixedScores.has(name as string);
    })
  );
}

/** The prediction row of each position of a plan: the one before it under ar_shift. */
export const predictionRowOf =
  (typed: TypedPlan) =>
  (position: number): number =>
    typed.decode.arShift ? position - 1 : position;

/** The per-generation draws of `random` decode orders in a scenario. */
export const standInRandom = (sc: Scenario, L: number): Float64Array =>
  pseudoScores(sc.seed, 0, 'random', L, false);

/** In a slowest-commit scenario, rules whose commit count comes from scores commit one a step. */
export function scenarioCommits(typed: TypedPlan, sc: Scenario): StepObserver {
  return sc.commits === 'one' && countFromScores(typed) ? { commits: (chosen) => chosen.slice(0, 1) } : {};
}

/** Whether the decode rule's commit count comes from scores (all but `per_step` and `steps`). */
const countFromScores = (typed: TypedPlan): boolean =>
  !['per_step', 'steps'].includes(typed.decode.rule.callee.name);

const refersTo = (e: Expr, pred: (e: Expr) => boolean): boolean => {
  if (pred(e)) return true;
  let hit = false;
  forEachChild(e, (c) => {
    hit ||= refersTo(c, pred);
  });
  return hit;
};

/** The first reference to `name` inside `e`, where a read of it is reported. */
function findName(e: Expr, name: string): Expr | undefined {
  if (e.kind === 'name' && e.name === name) return e;
  let hit: Expr | undefined;
  forEachChild(e, (c) => {
    hit ??= findName(c, name);
  });
  return hit;
}

const selectingFunctions = new Set(['topk', 'topp', 'keep', 'leftmost', 'window']);
const union = (a: Mask, b: Mask): Mask => maskOf(a.length, (i) => a[i] === 1 || b[i] === 1);

/** The last step a scenario's generation may take; one still running then is an error. */
export const stepLimit = (sc: Scenario): number => 4 * sc.genLen + 8;

/** Runs a plan through one generation on a sample canvas, checking every read it makes. */
class Simulation {
  readonly errors = new Map<string, Diagnostic>();
  readonly canvas: Canvas;
  private readonly L: number;
  private readonly logitsStep: Int32Array;
  /** The row whose logits predict each position (the one before it under ar_shift). */
  private readonly predictionRow: (position: number) => number;
  private readonly causal: boolean;
  private readonly rules: readonly LayerRules[];
  /** The plan's step semantics, the very decisions the runtime's inspector takes. */
  private readonly stepper: PlanStepper;
  /** Whether the decode order comes from the model's predictions (decodeOrderFromModel). */
  private readonly orderFromData: boolean;

  constructor(
    private readonly typed: TypedPlan,
    private readonly sc: Scenario,
    private readonly approx: Approximations,
    private readonly trace: SimulationTrace = {},
  ) {
    this.canvas = new Canvas(sc.promptLen, sc.genLen, sc.blockLen, sc.aligned);
    this.orderFromData = decodeOrderFromModel(typed);
    this.L = this.canvas.length;
    this.logitsStep = new Int32Array(this.L).fill(-1);
    this.causal = isBlockCausal(typed);
    this.rules = layerRules(typed, sc.numLayers);
    this.predictionRow = predictionRowOf(typed);
    const standIn = standInScores(sc, this.canvas, this.logitsStep, this.predictionRow);
    const scores: StepScores = {
      score: standIn.score,
      attnSimilarity: (layer) => {
        if (!this.stepper.endOfStep && layer >= this.stepper.layer) this.similarityTooEarly(layer);
        return standIn.attnSimilarity(layer);
      },
    };
    this.stepper = new PlanStepper(typed, this.rules, this.canvas, scores, standInRandom(sc, this.L), {
      selectionMissing: (name) => this.selectionMissing(name),
      scoreUse: (score, over) => this.checkScoreNeeds(score, over),
      pinnedMissing: (call, layer) => {
        const at = constantOf(typed, call.args[1] as Expr);
        this.fail(
          call.span,
          `${printExpr(call)} is measured when layer ${at} is decided, but it is read ${when(this.canvas, layer)}, before that`,
          [`help: apply the rule only to layer ${at} and deeper, e.g. \`on layers >= ${at}\``],
        );
      },
      ...scenarioCommits(typed, sc),
    });
  }

  private fail(span: Stmt['span'] | Expr['span'], message: string, notes: string[] = []): void {
    const key = `${span.start.offset}:${message.replace(/\d+/g, '#')}`;
    if (!this.errors.has(`${span.start.offset}`) && !this.errors.has(key)) {
      this.errors.set(`${span.start.offset}`, error(span, message, notes));
    }
  }

  private selectionMissing(name: string): void {
    const stmt = this.typed.plan.body.find((s): s is SelectStmt => s.kind === 'select' && s.name === name);
    if (!stmt) return;
    const root = this.stepper.evaluating;
    const use = root && findName(root, name);
    this.fail(
      use?.span ?? stmt.nameSpan,
      `selection '${name}' is read ${when(this.canvas, this.stepper.layer)} before it is first chosen`,
      [
        `note: '${name}' (line ${stmt.nameSpan.start.line}) is chosen at the end of a step where \`${printExpr(stmt.at)}\` holds, and usable from the next step`,
        'help: choose it earlier, or make the steps before it full refreshes (`refresh all when ...`)',
      ],
    );
  }

  /** The drift scores `score` reads, each with the layer it is measured at (`measured_at` pins one). */
  private driftReads(score: Expr, layer: number): { readonly name: string; readonly layer: number }[] {
    const found = new Map<string, { name: string; layer: number }>();
    const visit = (e: Expr, at: number): void => {
      if (e.kind === 'name' && driftOf[e.name]) found.set(`${e.name}@${at}`, { name: e.name, layer: at });
      if (e.kind === 'call' && e.callee.name === 'measured_at' && e.args[0] && e.args[1]) {
        visit(e.args[0], constantOf(this.typed, e.args[1]));
        return;
      }
      forEachChild(e, (c) => visit(c, at));
    };
    visit(score, layer);
    return [...found.values()];
  }

  private checkScoreNeeds(score: Expr, over: Mask): void {
    const c = this.canvas;
    for (const { name, layer } of this.driftReads(score, this.stepper.layer)) {
      const { what, kind } = driftOf[name] as (typeof driftOf)[string];
      if (kind === 'hidden' && layer === 0) {
        this.fail(
          score.span,
          `${name} compares the hidden state entering a layer with the hidden state the layer below cached, but it is read ${when(c, layer)}, which has no layer below`,
          ['help: read it on deeper layers only, e.g. in a rule scoped `on layers >= 1`'],
        );
        continue;
      }
      const at = kind === 'hidden' ? layer - 1 : layer;
      const missing = members(over).filter((i) => this.stepper.writtenAt(kind, at, i) < 0);
      if (missing.length > 0) {
        this.fail(
          score.span,
          kind === 'kv'
            ? `${name} compares fresh ${what} with cached ${what}, but ${describePositions(c, missing)} have no cached K/V ${when(c, layer)}`
            : `${name} compares ${what} entering layer ${layer} with what layer ${at} cached, but ${describePositions(c, missing)} have no cached hidden state of layer ${at} ${when(c, layer)}`,
          [
            kind === 'kv'
              ? 'help: cache their K/V, e.g. `cache kv of all`'
              : 'help: cache their hidden states, e.g. `cache kv, hidden of all`',
          ],
        );
      }
    }
    const choosing = this.stepper.choosing;
    if (!choosing) return;
    const computed = this.stepper.computedEverywhere();
    const attentionScores = (e: Expr) =>
      e.kind === 'call' && ['attention_mass', 'query_key'].includes(e.callee.name);
    const visit = (e: Expr): void => {
      if (attentionScores(e) && e.kind === 'call' && e.args[0]) {
        const q = this.stepper.set(e.args[0]);
        const missing = members(q).filter((i) => computed[i] !== 1);
        if (missing.length > 0) {
          this.fail(
            e.span,
            `${e.callee.name} needs the attention of its queries, but ${describePositions(c, missing)} are not computed ${when(c)}, when '${choosing.name}' is chosen`,
            ['help: choose the selection at a step that computes those rows (e.g. a refresh step)'],
          );
        }
      }
      forEachChild(e, visit);
    };
    visit(score);
  }

  /** Latest step at which any token visible to row i changed; K/V written since then are fresh. */
  private visibleChange(): (i: number) => number {
    const c = this.canvas;
    const perBlock = new Array<number>(c.numBlocks + 1).fill(0);
    for (let i = 0; i < this.L; i++) {
      const b = c.blockOf(i) + 1;
      perBlock[b] = Math.max(perBlock[b] ?? 0, c.tokenSince(i));
    }
    for (let b = 1; b < perBlock.length; b++) perBlock[b] = Math.max(perBlock[b] ?? 0, perBlock[b - 1] ?? 0);
    const global = perBlock.at(-1) ?? 0;
    return this.causal ? (i) => perBlock[c.blockOf(i) + 1] ?? 0 : () => global;
  }

  /** Keys that queries in R may see under the plan's structural mask. */
  private visibleKeys(R: Mask): Mask {
    const c = this.canvas;
    if (!this.causal) return maskOf(this.L, () => true);
    let top = -1;
    R.forEach((x, i) => {
      if (x) top = Math.max(top, c.blockOf(i));
    });
    return maskOf(this.L, (i) => c.blockOf(i) <= top);
  }

  run(): void {
    const c = this.canvas;
    const maxSteps = stepLimit(this.sc);
    let stuck = 0;
    while (!c.done && this.errors.size === 0) {
      if (c.step > maxSteps) {
        this.fail(
          this.typed.decode.span,
          `the decode rule does not finish the generation within ${maxSteps} steps`,
        );
        return;
      }
      this.step();
      // As the runtime does: decide from this step's predictions, then choose the selections.
      const chosen = this.stepper.decide();
      this.checkPredictions(chosen);
      const remasked = this.stepper.revoke(chosen);
      this.stepper.finishStep();
      if (chosen.length === 0) {
        if (++stuck > this.sc.blockLen + 2) {
          this.fail(
            this.typed.decode.span,
            `the decode rule commits nothing ${when(c)} although block ${c.block} still has masked positions`,
            ['help: decode candidates are the masked positions of the `in` set (default: current_block)'],
          );
          return;
        }
      } else stuck = 0;
      this.trace.commit?.(chosen, remasked);
      c.commit(chosen, remasked);
      c.advance();
    }
  }

  /**
   * The predictions the decode rule reads this step: those of the positions it chose, or, when its
   * order comes from the model's predictions, of every candidate with a prediction, since the
   * stand-in scores only sample the choices a run can make (a plan that computed the chosen rows'
   * predictions here read, on a model and under ar_shift, one made before its row's token changed).
   */
  private checkPredictions(chosen: number[]): void {
    const c = this.canvas;
    const d = this.typed.decode;
    const fresh = this.visibleChange();
    const picked = new Set(chosen);
    const read = this.orderFromData
      ? [...chosen, ...this.stepper.decideCandidates().filter((i) => !picked.has(i))]
      : chosen;
    for (const i of read) {
      const row = this.predictionRow(i);
      if (row < 0) continue;
      const at = this.logitsStep[row] ?? -1;
      // A row never predicted ranks last (its score is the score's `none`), so where the rule did
      // not choose it here, the ones a run ranks above it are the ones that can be chosen.
      if (!picked.has(i) && at < 0) continue;
      if (at < c.tokenSince(row)) {
        this.fail(
          d.span,
          `the decode rule ${picked.has(i) ? 'reads the prediction of' : 'may commit'} ${describePositions(c, [i])} ${when(c)}, but ${d.arShift ? `row ${row} (ar_shift)` : 'that row'} was never computed since its token last changed`,
          picked.has(i)
            ? []
            : [
                "note: its order comes from the model's predictions, so a run may commit any of its candidates",
              ],
        );
      } else if (at < fresh(row)) this.approx.staleLogits.add(rowClass(c, i));
    }
  }

  private step(): void {
    const c = this.canvas;
    const t = c.step;
    const fresh = this.visibleChange();
    let avail = maskOf(this.L, () => true);
    let prevR: Mask | undefined;
    for (const r of this.rules) {
      const l = r.layer;
      const d = this.stepper.decideLayer(r);
      this.trace.layer?.(d);
      const R = d.rows;
      const noInput = members(R).filter((i) => avail[i] !== 1);
      if (noInput.length > 0) {
        this.fail(
          r.compute?.span ?? this.typed.plan.nameSpan,
          `${describePositions(c, noInput)} are computed ${when(c, l)}, but their input (the output of layer ${l - 1}) is neither computed nor cached`,
          [`help: cache it, e.g. \`cache hidden of all\`, or compute those rows on layer ${l - 1} too`],
        );
      }
      if (prevR) this.noteStaleInputs(R, prevR, l - 1, fresh);

      const needed = this.keysRead(d, r, fresh);
      const uncovered: number[] = [];
      for (const k of members(needed)) {
        if (R[k] === 1) continue;
        const w = this.stepper.writtenAt('kv', l, k);
        if (w < c.tokenSince(k)) uncovered.push(k);
        else if (l > 0 && w < fresh(k)) this.approx.staleKv.add(rowClass(c, k));
      }
      if (uncovered.length > 0) {
        const neverWritten = uncovered.filter((k) => this.stepper.writtenAt('kv', l, k) < 0);
        const why =
          neverWritten.length === uncovered.length
            ? 'nor ever cached'
            : 'nor cached since their token last changed';
        this.fail(
          r.attend?.span ?? r.compute?.span ?? this.typed.plan.nameSpan,
          `keys at ${describePositions(c, uncovered)} are read ${when(c, l)} but are neither computed in this step ${why}`,
          [
            ...this.coverNotes(uncovered, r),
            t === 0 && neverWritten.length === uncovered.length
              ? 'help: nothing is cached before the first step: add `refresh all when block_start` (or `when step == 0`)'
              : 'help: compute those rows in this step, or cache their K/V after they are computed (`cache kv of ...`)',
          ],
        );
      }
      this.stepper.commitLayer(d);
      avail = this.outputs(R, avail, l);
      prevR = R;
      if (l === this.rules.length - 1) for (const i of members(R)) this.logitsStep[i] = t;
    }
  }

  /**
   * Whether a key set picks keys by score or count. The sample canvas may be too small for such a
   * pick to drop anything, yet on a real canvas it does, so it makes the plan approximate.
   */
  private selects(e: Expr): boolean {
    let hit = this.selecting.get(e);
    if (hit !== undefined) return hit;
    hit = refersTo(e, (x) => {
      if (x.kind === 'call') return selectingFunctions.has(x.callee.name);
      // A filter by a score (`generated[position > 40]`) drops keys on some canvas even when the
      // sample canvases happen to keep them all.
      if (x.kind === 'filter') return true;
      if (x.kind !== 'name') return false;
      const b = this.typed.bindings.get(x.name);
      return b?.kind === 'select' || (b?.kind === 'let' && this.selects(b.expr));
    });
    this.selecting.set(e, hit);
    return hit;
  }

  /**
   * What `selects` found for each key set and `let` expression, and how each key set prints: both
   * are asked on every layer of every step, and a large plan's key sets are long, its lets read
   * each other many times.
   */
  private readonly selecting = new Map<Expr, boolean>();
  private readonly printed = new Map<Expr, string>();

  private print(e: Expr): string {
    let text = this.printed.get(e);
    if (text === undefined) {
      text = printExpr(e);
      this.printed.set(e, text);
    }
    return text;
  }

  /** The keys read from outside R this layer, after split segments and reused partials. */
  private keysRead(d: LayerDecision, r: LayerRules, fresh: (i: number) => number): Mask {
    const c = this.canvas;
    const visible = this.visibleKeys(d.rows);
    const attend = r.attend;
    if (!attend || attend.keys.kind === 'keys') {
      if (d.full || !attend || attend.keys.kind !== 'keys') return visible;
      const keys = d.keys as Mask;
      const dropped = members(visible).filter((i) => keys[i] !== 1);
      if (dropped.length > 0 || this.selects(attend.keys.set))
        (r.perKvHead ? this.approx.sparsePerHead : this.approx.sparse).add(this.print(attend.keys.set));
      return maskOf(this.L, (i) => keys[i] === 1 && visible[i] === 1);
    }
    const segments = attend.keys.segments;
    this.checkDisjoint(segments, d.segments, d.layer);
    for (const b of d.blocked) {
      const what =
        b.newRows.length > 0
          ? `query ${describePositions(c, b.newRows)}, which it was never computed for`
          : `keys \`${printExpr(b.segment.keys)}\` that changed since it was computed at step ${b.partialStep}`;
      this.fail(
        b.segment.span,
        `the partial of segment '${b.segment.name}' is reused ${when(c, d.layer)} for ${what}`,
        ['help: recompute it when its rows or keys change, e.g. `reused until ... or block_start`'],
      );
    }
    let needed = maskOf(this.L, () => false);
    let attended = maskOf(this.L, () => false);
    for (const g of segments) {
      const keys = d.segments.get(g.name) as Mask;
      attended = union(attended, keys);
      const served = d.servedFrom.get(g.name);
      if (served === undefined) {
        needed = union(needed, keys);
        continue;
      }
      if (members(union(d.rows, keys)).some((i) => fresh(i) > served)) this.approx.reusedPartials.add(g.name);
    }
    if (d.full) return visible;
    const dropped = members(visible).filter((i) => attended[i] !== 1);
    if (dropped.length > 0 || segments.some((g) => this.selects(g.keys)))
      this.approx.sparse.add(segments.map((g) => this.print(g.keys)).join(' | '));
    return maskOf(this.L, (i) => needed[i] === 1 && visible[i] === 1);
  }

  /** The LSE merge adds the segments' partials, so a key in two segments would count twice. */
  private checkDisjoint(segments: readonly Segment[], keysOf: ReadonlyMap<string, Mask>, l: number): void {
    segments.forEach((a, i) => {
      for (const b of segments.slice(0, i)) {
        const ka = keysOf.get(a.name) as Mask;
        const kb = keysOf.get(b.name) as Mask;
        const both = members(ka).filter((k) => kb[k] === 1);
        if (both.length === 0) continue;
        this.fail(
          a.span,
          `segments '${b.name}' and '${a.name}' both hold keys at ${describePositions(this.canvas, both)} ${when(this.canvas, l)}; the log-sum-exp merge would count them twice`,
          [
            `help: make the segments disjoint, e.g. \`${a.name} = ${printExpr(a.keys)} - (${printExpr(b.keys)})\``,
          ],
        );
        return;
      }
    });
  }

  /**
   * Which `cache kv` rule would have to cover keys read without a valid entry on layer l, and why
   * it did not: its delay held back rows computed since their token changed, or its set misses them.
   */
  private coverNotes(keys: readonly number[], r: LayerRules): string[] {
    const c = this.canvas;
    const l = r.layer;
    const rules = r.caches.map((x) => x.rule).filter((s) => s.kinds.some((k) => k.name === 'kv'));
    const rule = (x: CacheStmt) =>
      `\`cache ${x.kinds.map((k) => k.name).join(', ')} of ${printExpr(x.set)}${x.delay ? ` delay ${printExpr(x.delay)}` : ''}\` (line ${x.span.start.line})`;
    if (rules.length === 0) return [`note: no \`cache kv\` rule applies to layer ${l}`];
    const delayed = rules.filter((x) => keys.some((k) => this.stepper.heldAt(x, l, k) >= c.tokenSince(k)));
    if (delayed.length > 0)
      return delayed.map(
        (x) => `note: ${rule(x)} skipped them when they were last computed: they were younger than its delay`,
      );
    const covering = rules.filter((x) => {
      const S = this.stepper.set(x.set);
      return keys.every((k) => S[k] === 1);
    });
    return covering.length > 0
      ? covering.map(
          (x) =>
            `note: ${rule(x)} covers them, but they were not computed since their token last changed, so it wrote nothing valid`,
        )
      : [
          `note: ${rules.length === 1 ? 'the only K/V cache rule on this layer' : 'the K/V cache rules on this layer'}, ${rules.map(rule).join(' and ')}, ${rules.length === 1 ? 'does' : 'do'} not hold them`,
        ];
  }

  /** Rows whose layer-l output exists: computed, or served from a valid hidden/feature cache. */
  private outputs(R: Mask, avail: Mask, l: number): Mask {
    const valid = (kind: string, i: number) => this.stepper.valid(kind, l, i);
    return maskOf(
      this.L,
      (i) => R[i] === 1 || valid('hidden', i) || (avail[i] === 1 && valid('attn', i) && valid('ffn', i)),
    );
  }

  private noteStaleInputs(R: Mask, prevR: Mask, l: number, fresh: (i: number) => number): void {
    const c = this.canvas;
    const at = (kind: string, i: number) => this.stepper.writtenAt(kind, l, i);
    for (const i of members(R)) {
      if (prevR[i] === 1) continue;
      const h = at('hidden', i);
      if (h >= c.tokenSince(i)) {
        if (h < fresh(i)) this.approx.staleHidden.add(rowClass(c, i));
      } else if (at('attn', i) < fresh(i) || at('ffn', i) < fresh(i)) {
        this.approx.staleFeatures.add(rowClass(c, i));
      }
    }
  }

  /** `attn_similarity(l)` read on a layer that runs before layer l has been measured. */
  private similarityTooEarly(l: number): void {
    const root = this.stepper.evaluating;
    let call: Expr | undefined;
    const visit = (e: Expr): void => {
      if (!call && e.kind === 'call' && e.callee.name === 'attn_similarity') call = e;
      forEachChild(e, visit);
    };
    if (root) visit(root);
    this.fail(
      call?.span ?? root?.span ?? this.typed.plan.nameSpan,
      `attn_similarity(${l}) is known once layer ${l} has run, but it is read ${when(this.canvas, this.stepper.layer)}, before that`,
      [`help: apply the rule only to the layers after it, e.g. \`on layers > ${l}\``],
    );
  }
}

/**
 * Scenarios of the bounded check: two seeds, both outcomes of data-dependent conditions, a short
 * canvas besides the long one (a commit schedule such as `steps(n)` spreads differently over them,
 * and so does `dirty`) and, for decode rules whose commit count comes from scores, their slowest
 * schedule too (for the others it would repeat a scenario, at the cost of a whole generation).
 */
export function scenarios(typed: TypedPlan, blockLen: number | undefined, numLayers: number): Scenario[] {
  const block = blockLen ?? 24;
  const blocks = blockLen === undefined ? 1 : block <= 8 ? 4 : block <= 64 ? 3 : 2;
  const long = { promptLen: 6, genLen: block * blocks, blockLen: block, numLayers };
  const shortGen = blockLen === undefined ? 5 : block + 1;
  const short = { promptLen: 2, genLen: shortGen, blockLen: block, numLayers };
  const datas = ['never', 'always'] as const;
  const slowest: Scenario['commits'] = countFromScores(typed) ? 'one' : 'scores';
  const plain = { aligned: false };
  return [
    ...[1, 2].flatMap((seed) =>
      datas.map((data) => ({ ...long, ...plain, seed, data, commits: 'scores' as const })),
    ),
    ...(slowest === 'one'
      ? datas.map((data) => ({ ...long, ...plain, seed: 3, data, commits: slowest }))
      : []),
    ...datas.map((data) => ({ ...short, ...plain, seed: 4, data, commits: slowest })),
    ...(slowest === 'one'
      ? datas.map((data) => ({ ...short, ...plain, seed: 5, data, commits: 'scores' as const }))
      : []),
    // A plan with blocks may run on a model that counts them from position 0: block 0 then holds
    // the prompt's tail (the long prompt of 6 is not a multiple of a block of 4 or 32).
    ...(blockLen === undefined
      ? []
      : datas.map((data) => ({ ...long, aligned: true, seed: 6, data, commits: slowest }))),
  ];
}

/** What a simulation decided, for tests that hold the runtime to the same decisions. */
export interface SimulationTrace {
  layer?(d: LayerDecision): void;
  /** The positions committed at a step, and those a revoking decode rule remasked. */
  commit?(chosen: readonly number[], remasked: readonly number[]): void;
}

export function simulatePlan(
  typed: TypedPlan,
  sc: Scenario,
  approx: Approximations,
  trace: SimulationTrace = {},
): Diagnostic[] {
  const sim = new Simulation(typed, sc, approx, trace);
  sim.run();
  return [...sim.errors.values()];
}
