import type { DecodeStmt, Expr, RefreshStmt, Segment, SelectStmt } from '../dsl/ast.ts';
import type { Canvas } from '../dsl/semantics/canvas.ts';
import { constantOf } from '../dsl/semantics/constant.ts';
import { decideCommits, decodeCandidates } from '../dsl/semantics/decodeRule.ts';
import {
  type EvalEnv,
  type EvalHooks,
  evaluate,
  type Mask,
  maskOf,
  members,
} from '../dsl/semantics/evaluate.ts';
import { fullSegmentKeys, segmentKeys } from '../dsl/semantics/segments.ts';
import type { TypedPlan } from '../dsl/typecheck.ts';
import { type LayerRules, reusedSegments, segmentsOf } from '../ir/planShape.ts';

/** Model-derived per-token scores; the driver computes them from the model's current state. */
export interface ScoreSource {
  /** A score by name (confidence, margin, entropy, rollout, value_drift, …) at the given layer. */
  score(name: string, queries: Mask | undefined, layer: number): Float64Array;
  attnSimilarity(layer: number): number;
}

/** What one layer of one step runs: its stage variant and the index lists it is fed. */
export interface LayerPlan {
  readonly layer: number;
  readonly variant: 'cached' | 'reuse';
  /** Every row is recomputed over the full key set (a refresh of `all` on this layer). */
  readonly full: boolean;
  readonly lists: Map<string, Int32Array>;
  readonly rows: Mask;
}

const toList = (m: Mask): Int32Array => Int32Array.from(members(m));
const union = (a: Mask, b: Mask): Mask => maskOf(a.length, (i) => a[i] === 1 || b[i] === 1);
const sameSet = (a: Mask, b: Mask): boolean => a.every((x, i) => x === b[i]);

interface Partial {
  readonly step: number;
  readonly rows: Mask;
  readonly keys: Mask;
}

/**
 * The host-side inspector: turns the plan's token sets into index lists, one layer at a time, and
 * keeps what deciding them needs across steps (which cache rows are valid, stored partials,
 * selections). Sets are never baked into kernels; only these lists change from step to step.
 */
export class Inspector {
  private readonly L: number;
  /** Step at which each (kind, layer) cache row was last written; -1 if never. */
  private readonly written = new Map<string, Int32Array>();
  private readonly partials = new Map<string, Partial>();
  private readonly selections = new Map<string, Mask>();
  private lastFullRefresh = 0;
  private dirtySince = 0;
  private layer = 0;
  private stepRows: Mask[] = [];
  private stepSizes = new Map<string, number>();
  private allFull = true;
  private firedThisStep = new Set<RefreshStmt>();
  /** Steps at which each refresh rule's condition held on at least one of its layers. */
  readonly firings = new Map<RefreshStmt, number>();

  constructor(
    private readonly typed: TypedPlan,
    private readonly rules: readonly LayerRules[],
    private readonly canvas: Canvas,
    private readonly scores: ScoreSource,
    private readonly randomScores: Float64Array,
  ) {
    this.L = canvas.length;
  }

  private readonly hooks: EvalHooks = {
    modelScore: (name, queries) =>
      name === 'random' ? this.randomScores : this.scores.score(name, queries, this.layer),
    selection: (name) => this.selections.get(name) ?? maskOf(this.L, () => false),
    targets: (next) => this.targets(next),
    dirty: (set) => members(set).filter((i) => this.canvas.tokenSince(i) > this.dirtySince).length,
    attnSimilarity: (layer) => this.scores.attnSimilarity(layer),
  };

  private env(): EvalEnv {
    return { canvas: this.canvas, bindings: this.typed.bindings, hooks: this.hooks };
  }
  private set(e: Expr): Mask {
    return evaluate(e, this.env()) as Mask;
  }
  private cond(e: Expr): boolean {
    return evaluate(e, this.env()) === true;
  }

  private table(kind: string, layer: number): Int32Array {
    const key = `${kind}.${layer}`;
    let t = this.written.get(key);
    if (!t) {
      t = new Int32Array(this.L).fill(-1);
      this.written.set(key, t);
    }
    return t;
  }
  private valid(kind: string, layer: number, i: number): boolean {
    return (this.table(kind, layer)[i] ?? -1) >= this.canvas.tokenSince(i);
  }

  /** Whether a refresh of every row fires on every layer this step (the `refresh` phase). */
  fullStep(): boolean {
    return this.rules.every((r) => this.refreshSet(r, false).every((x) => x === 1));
  }

  private refreshSet(r: LayerRules, record: boolean): Mask {
    this.layer = r.layer;
    this.dirtySince = this.lastFullRefresh;
    let extra = maskOf(this.L, () => false);
    for (const s of r.refreshes) {
      if (!this.cond(s.when)) continue;
      extra = union(extra, this.set(s.set));
      if (record) this.firedThisStep.add(s);
    }
    return extra;
  }

  /** Decides layer `l` of the current step; call in layer order, after the layers below have run. */
  planLayer(r: LayerRules): LayerPlan {
    const c = this.canvas;
    const l = r.layer;
    if (l === 0) {
      this.stepRows = [];
      this.stepSizes = new Map();
      this.allFull = true;
      this.firedThisStep = new Set();
    }
    const extra = this.refreshSet(r, true);
    const full = extra.every((x) => x === 1);
    this.allFull &&= full;
    const rows = full
      ? extra
      : union(r.compute ? this.set(r.compute.set) : maskOf(this.L, () => true), extra);
    const lists = new Map<string, Int32Array>([[`rows.${l}`, toList(rows)]]);
    const all = maskOf(this.L, () => true);
    const segments = segmentsOf(r.attend);
    let variant: LayerPlan['variant'] = 'cached';
    if (segments.length === 0) {
      const keys = full || !r.attend || r.attend.keys.kind !== 'keys' ? all : this.set(r.attend.keys.set);
      lists.set(`keys.${l}`, toList(keys));
    } else {
      const set = (e: Expr) => this.set(e);
      const { keys: keysOf, reusable } = full
        ? fullSegmentKeys(segments, set, this.L)
        : { keys: segmentKeys(segments, set), reusable: undefined };
      const reused = reusedSegments(r);
      if (
        !full &&
        reused.length > 0 &&
        reused.every((s) => this.canReuse(l, s, rows, keysOf.get(s.name) as Mask))
      ) {
        variant = 'reuse';
      }
      for (const s of segments) {
        if (variant === 'reuse' && s.reusedUntil) continue;
        lists.set(`keys.${l}.${s.name}`, toList(keysOf.get(s.name) as Mask));
        if (s.reusedUntil && reusable && !reusable.has(s.name)) this.partials.delete(`${l}.${s.name}`);
        else if (s.reusedUntil)
          this.partials.set(`${l}.${s.name}`, {
            step: c.step,
            rows: full ? all : rows,
            keys: keysOf.get(s.name) as Mask,
          });
      }
    }
    for (const { rule, id } of r.caches) {
      const S = this.set(rule.set);
      const delay = rule.delay ? constantOf(this.typed, rule.delay) : 0;
      const writes = maskOf(
        this.L,
        (i) => rows[i] === 1 && S[i] === 1 && (c.isPrompt(i) || c.age(i) >= delay),
      );
      lists.set(`write.${l}.${id}`, toList(writes));
      for (const k of rule.kinds) {
        const t = this.table(k.name, l);
        for (const i of members(writes)) t[i] = c.step;
      }
    }
    // The cached program reads these lists on every layer, also on one that a layer-scoped
    // refresh makes full: there the rows below that were not computed still need their input.
    const below = this.stepRows[l - 1];
    if (below && this.rules[l - 1]?.kinds.has('hidden')) {
      lists.set(
        `restore.${l}`,
        toList(maskOf(this.L, (i) => rows[i] === 1 && below[i] !== 1 && this.valid('hidden', l - 1, i))),
      );
    }
    if (r.kinds.has('attn') && r.kinds.has('ffn')) {
      lists.set(
        `delta.${l}`,
        toList(maskOf(this.L, (i) => rows[i] !== 1 && this.valid('attn', l, i) && this.valid('ffn', l, i))),
      );
    }
    this.stepRows[l] = rows;
    for (const [name, list] of lists) this.stepSizes.set(name, list.length);
    return { layer: l, variant, full, lists, rows };
  }

  private canReuse(l: number, s: Segment, rows: Mask, keys: Mask): boolean {
    const p = this.partials.get(`${l}.${s.name}`);
    if (!p || !s.reusedUntil) return false;
    this.dirtySince = p.step;
    const due = this.cond(s.reusedUntil);
    this.dirtySince = this.lastFullRefresh;
    return !due && rows.every((x, i) => x === 0 || p.rows[i] === 1) && sameSet(keys, p.keys);
  }

  /** The length of every index list built this step, by name (`rows.0`, `keys.1`, …). */
  listSizes(): Map<string, number> {
    return new Map(this.stepSizes);
  }

  /** How many rows each layer computed this step. */
  layerRows(): number[] {
    return this.stepRows.map((m) => m.reduce((a, b) => a + b, 0));
  }

  /** Rows computed at the last layer this step: the rows whose predictions are fresh. */
  outputRows(): Int32Array {
    return toList(this.stepRows[this.rules.length - 1] ?? maskOf(this.L, () => false));
  }

  get decodeRule(): DecodeStmt {
    return this.typed.decode;
  }

  /** The masked positions the decode rule may commit now (its `in` set, default the current block). */
  candidates(): Mask {
    return decodeCandidates(this.typed.decode, this.env());
  }

  /** The positions the decode rule commits on the current state, best first. */
  decide(score: (by: Expr | undefined) => Float64Array): number[] {
    const d = this.typed.decode;
    const random = d.by?.kind === 'name' && d.by.name === 'random';
    return decideCommits(d, this.env(), random ? this.randomScores : score(d.by));
  }

  /** Evaluates a decode score (default: confidence) on the current state. */
  decodeScore(by: Expr | undefined): Float64Array {
    this.layer = this.rules.length - 1;
    return by
      ? (evaluate(by, {
          canvas: this.canvas,
          bindings: this.typed.bindings,
          hooks: this.hooks,
        }) as Float64Array)
      : this.scores.score('confidence', undefined, this.layer);
  }

  private targets(next: boolean): Mask {
    const c = this.canvas;
    const chosen = this.decide((by) => this.decodeScore(by));
    if (!next) return maskOf(this.L, (i) => chosen.includes(i));
    const after = c.lookahead(chosen, () => (c.done ? [] : this.decide((by) => this.decodeScore(by))));
    return maskOf(this.L, (i) => after.includes(i));
  }

  /** End of step: record a full refresh and choose the selections whose moment has come. */
  finishStep(): void {
    if (this.allFull) this.lastFullRefresh = this.canvas.step;
    for (const s of this.firedThisStep) this.firings.set(s, (this.firings.get(s) ?? 0) + 1);
    this.layer = this.rules.length - 1;
    for (const s of this.typed.plan.body) {
      if (s.kind === 'select' && this.cond((s as SelectStmt).at))
        this.selections.set(s.name, this.set(s.set));
    }
  }
}
