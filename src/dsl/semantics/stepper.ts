import type { CacheStmt, Call, DecodeStmt, Expr, RefreshStmt, Segment, SelectStmt } from '../ast.ts';
import { revokingRules } from '../builtins.ts';
import { forEachChild, forEachStmtExpr, type TypedPlan } from '../typecheck.ts';
import type { Canvas } from './canvas.ts';
import { constantOf } from './constant.ts';
import { decideCommits, decideRevocations, decodeCandidates } from './decodeRule.ts';
import {
  type EvalEnv,
  type EvalHooks,
  evaluate,
  type Mask,
  maskOf,
  members,
  type RuntimeValue,
} from './evaluate.ts';
import { type LayerRules, reusedSegments, segmentsOf } from './layerRules.ts';
import { fullSegmentKeys, segmentKeys } from './segments.ts';

/** Per-token scores measured on the model (the runtime) or stood in for (the checker). */
export interface StepScores {
  /**
   * A score by name (confidence, margin, entropy, rollout, value_drift, …) at the given layer; with
   * `kvHead`, as one KV head sees it (attention_mass over its query heads, key/value drift of its
   * slice; a score with no per-head form is the same for every head).
   */
  score(name: string, queries: Mask | undefined, layer: number, kvHead?: number): Float64Array;
  attnSimilarity(layer: number): number;
}

/** What the checker listens to while the stepper evaluates; the runtime leaves these out. */
export interface StepObserver {
  /** A selection was read before it was ever chosen (not on a full layer's split). */
  selectionMissing?(name: string): void;
  /** A score was applied to a set (ranking it), so that its needs can be checked. */
  scoreUse?(score: Expr, over: Mask): void;
  /** Turns the rule's commits into the ones to make (the checker's slowest-commit scenarios). */
  commits?(chosen: number[]): number[];
  /**
   * `measured_at(score, layer)` was read before that layer was decided this step (on a layer below
   * it, or on a model without it); the value read is all zeros.
   */
  pinnedMissing?(call: Call, layer: number): void;
}

/** A reused segment whose until-condition does not call for a recompute, but whose partial cannot serve. */
export interface BlockedReuse {
  readonly segment: Segment;
  /** Query rows the stored partial was not computed for. */
  readonly newRows: readonly number[];
  /** Whether the segment's keys differ from those the partial was computed over. */
  readonly keysChanged: boolean;
  readonly partialStep: number;
}

/** Everything one layer of one step does, decided from the plan and the token state. */
export interface LayerDecision {
  readonly layer: number;
  /** A refresh of every row fires on this layer: an exact full forward over every key. */
  readonly full: boolean;
  readonly rows: Mask;
  /** The keys of an attend without `split` (every key on a full layer or without a key set). */
  readonly keys: Mask | undefined;
  /** For an attend reading a `per kv_head` selection: the keys of each KV head (`keys` is their union). */
  readonly headKeys: readonly Mask[] | undefined;
  /** The keys of each split segment. */
  readonly segments: ReadonlyMap<string, Mask>;
  /** `reuse`: every reused segment is served from its stored partial; `cached`: all recomputed. */
  readonly variant: 'cached' | 'reuse';
  /** For the reuse variant: the step at which each served partial was computed. */
  readonly servedFrom: ReadonlyMap<string, number>;
  readonly blocked: readonly BlockedReuse[];
  /** The rows each cache rule in scope writes, after its delay. */
  readonly writes: readonly { readonly rule: CacheStmt; readonly id: number; readonly rows: Mask }[];
  /** Rows whose input is restored from the hidden-state cache of the layer below (when it has one). */
  readonly restore: Mask | undefined;
  /** Rows not computed that carry their residual stream on with cached deltas (when cached). */
  readonly delta: Mask | undefined;
}

interface StoredPartial {
  readonly step: number;
  readonly rows: Mask;
  readonly keys: Mask;
}

const union = (a: Mask, b: Mask): Mask => maskOf(a.length, (i) => a[i] === 1 || b[i] === 1);
const sameSet = (a: Mask, b: Mask): boolean => a.every((x, i) => x === b[i]);

/**
 * The step semantics of a plan (docs/language.md section 6), one layer at a time: which rows are
 * recomputed, which keys are attended, which partials are reused, what is cached, what is restored,
 * and, at the end of a step, which selections are chosen and what is decoded. The runtime's
 * inspector turns its decisions into index lists; the checker's simulation checks every read
 * against them. Both call this one class, so what is proven is what runs.
 */
export class PlanStepper {
  readonly L: number;
  /** The layer being decided (scores are measured at it). */
  layer = 0;
  /** The outermost expression being evaluated, so that an observer can point inside it. */
  evaluating: Expr | undefined;
  /** Selections and decoding run after every layer, when every layer's measurements are known. */
  endOfStep = false;
  /** The selection being chosen, while its set is evaluated. */
  choosing: SelectStmt | undefined;
  /** Step at which each (kind, layer) cache row was last written; -1 if never. */
  private readonly written = new Map<string, Int32Array[]>();
  /** Step at which a cache rule's delay last held back a row it would have written, per layer. */
  private readonly held = new Map<CacheStmt, Int32Array[]>();
  private readonly partials = new Map<string, StoredPartial>();
  private readonly selections = new Map<string, Mask>();
  /** The sets of `per kv_head` selections, one per KV head. */
  private readonly headSelections = new Map<string, Mask[]>();
  /** The KV head whose sets are being evaluated (undefined: sets shared by every head). */
  private head: number | undefined;
  private lastFullRefresh = 0;
  private dirtySince = 0;
  private quietSelections = false;
  /** Rows each layer computed this step. */
  readonly stepRows: Mask[] = [];
  private allFull = true;
  private firedThisStep = new Set<RefreshStmt>();
  /** The decode score each position had when it was committed (NaN: masked); read by revoking rules. */
  private readonly scoreAtCommit: Float64Array;
  /** Each layer's attn_similarity this step, measured once however many layers ask (after_drift). */
  private similarities: number[] = [];
  /** The `measured_at` calls of the plan, with the layer each is pinned to. */
  private readonly pinnedCalls: readonly { readonly call: Call; readonly layer: number }[];
  /**
   * This step's value of each `measured_at` call whose layer has been decided: shared by every
   * head ([0]), and as each KV head sees it ([1 + g]) when the plan chooses sets per KV head.
   */
  private pinned = new Map<Call, Float64Array[]>();
  private readonly perHeadPlan: boolean;
  /** Steps at which each refresh rule's condition held on at least one of its layers. */
  readonly firings = new Map<RefreshStmt, number>();

  constructor(
    readonly typed: TypedPlan,
    readonly rules: readonly LayerRules[],
    readonly canvas: Canvas,
    private readonly scores: StepScores,
    private readonly randomScores: Float64Array,
    private readonly observer: StepObserver = {},
    /** KV heads of the model: a `per kv_head` selection has one set for each. */
    readonly kvHeads = 1,
  ) {
    this.L = canvas.length;
    this.scoreAtCommit = new Float64Array(this.L).fill(Number.NaN);
    const calls: { call: Call; layer: number }[] = [];
    const visit = (e: Expr): void => {
      if (e.kind === 'call' && e.callee.name === 'measured_at' && e.args[1])
        calls.push({ call: e, layer: constantOf(typed, e.args[1]) });
      forEachChild(e, visit);
    };
    for (const s of typed.plan.body) forEachStmtExpr(s, visit);
    this.pinnedCalls = calls;
    this.perHeadPlan = kvHeads > 1 && typed.plan.body.some((s) => s.kind === 'select' && s.per !== undefined);
  }

  private readonly hooks: EvalHooks = {
    modelScore: (name, queries) =>
      name === 'random' ? this.randomScores : this.scores.score(name, queries, this.layer, this.head),
    selection: (name) => {
      const perHead = this.headSelections.get(name);
      if (perHead) return this.head === undefined ? perHead.reduce(union) : (perHead[this.head] as Mask);
      const v = this.selections.get(name);
      if (v) return v;
      if (!this.quietSelections) this.observer.selectionMissing?.(name);
      return maskOf(this.L, () => false);
    },
    targets: (next) => this.targets(next),
    uncached: () => maskOf(this.L, (i) => !this.valid('kv', this.layer, i)),
    dirty: (set) => members(set).filter((i) => this.canvas.tokenSince(i) > this.dirtySince).length,
    attnSimilarity: (layer) => this.scores.attnSimilarity(layer),
    afterDrift: (gamma) => {
      const below = this.endOfStep ? this.rules.length : this.layer;
      for (let l = 0; l < below; l++) if (this.similarity(l) < gamma) return true;
      return false;
    },
    scoreUse: (score, over) => this.observer.scoreUse?.(score, over),
    measuredAt: (call) => {
      const values = this.pinned.get(call);
      const v = values?.[this.head !== undefined && values.length > 1 ? 1 + this.head : 0];
      if (v) return v;
      this.observer.pinnedMissing?.(call, this.layer);
      return new Float64Array(this.L);
    },
  };

  /** Measures the scores pinned to layer `l` (`measured_at(score, l)`), as the layer is decided. */
  private measurePinned(l: number): void {
    for (const { call, layer } of this.pinnedCalls) {
      if (layer !== l || this.pinned.has(call)) continue;
      const score = call.args[0] as Expr;
      const shared = this.eval(score) as Float64Array;
      this.pinned.set(
        call,
        this.perHeadPlan ? [shared, ...this.perHead(score, (e) => this.eval(e) as Float64Array)] : [shared],
      );
    }
  }

  private similarity(l: number): number {
    this.similarities[l] ??= this.scores.attnSimilarity(l);
    return this.similarities[l];
  }

  /** Canvas-pure values of this token state: the layers of a step read the same sets again. */
  private memo = new Map<Expr, RuntimeValue>();
  private memoState = '';
  env(): EvalEnv {
    const state = this.canvas.state;
    if (state !== this.memoState) {
      this.memo = new Map();
      this.memoState = state;
    }
    return { canvas: this.canvas, bindings: this.typed.bindings, hooks: this.hooks, memo: this.memo };
  }
  eval(e: Expr): RuntimeValue {
    const outer = this.evaluating;
    this.evaluating ??= e;
    try {
      return evaluate(e, this.env());
    } finally {
      this.evaluating = outer;
    }
  }
  set(e: Expr): Mask {
    return this.eval(e) as Mask;
  }
  /** An expression evaluated once for each KV head (with that head's scores and selections). */
  private perHead<T>(e: Expr, evaluate: (e: Expr) => T): T[] {
    try {
      return Array.from({ length: this.kvHeads }, (_, g) => {
        this.head = g;
        return evaluate(e);
      });
    } finally {
      this.head = undefined;
    }
  }
  cond(e: Expr): boolean {
    return this.eval(e) === true;
  }

  // Looked up for every row read, so without building a key.
  private table(kind: string, layer: number): Int32Array {
    let perLayer = this.written.get(kind);
    if (!perLayer) {
      perLayer = [];
      this.written.set(kind, perLayer);
    }
    let t = perLayer[layer];
    if (!t) {
      t = new Int32Array(this.L).fill(-1);
      perLayer[layer] = t;
    }
    return t;
  }
  /** The step at which row i of a (kind, layer) cache was last written, or -1. */
  writtenAt(kind: string, layer: number, i: number): number {
    return this.table(kind, layer)[i] ?? -1;
  }
  /** Whether row i of a (kind, layer) cache was written after its token last changed. */
  valid(kind: string, layer: number, i: number): boolean {
    return this.writtenAt(kind, layer, i) >= this.canvas.tokenSince(i);
  }
  /** The last step at which the rule's delay held row i back on a layer, or -1. */
  heldAt(rule: CacheStmt, layer: number, i: number): number {
    return this.held.get(rule)?.[layer]?.[i] ?? -1;
  }

  private refreshSet(r: LayerRules): Mask {
    this.layer = r.layer;
    this.dirtySince = this.lastFullRefresh;
    let extra = maskOf(this.L, () => false);
    for (const s of r.refreshes) {
      if (!this.cond(s.when)) continue;
      extra = union(extra, this.set(s.set));
      this.firedThisStep.add(s);
    }
    return extra;
  }

  /**
   * Decides layer `l` of the current step; call in layer order, after the layers below have run,
   * then `commitLayer` once its reads are done (its cache writes take effect there).
   */
  decideLayer(r: LayerRules): LayerDecision {
    const l = r.layer;
    if (l === 0) {
      this.stepRows.length = 0;
      this.allFull = true;
      this.firedThisStep = new Set();
      this.similarities = [];
      this.pinned = new Map();
    }
    this.layer = l;
    this.measurePinned(l);
    const extra = this.refreshSet(r);
    const full = extra.every((x) => x === 1);
    this.allFull &&= full;
    const rows = full
      ? extra
      : union(r.compute ? this.set(r.compute.set) : maskOf(this.L, () => true), extra);
    const all = maskOf(this.L, () => true);
    const segments = segmentsOf(r.attend);
    let keys: Mask | undefined;
    let headKeys: Mask[] | undefined;
    let segmentSets = new Map<string, Mask>();
    let variant: LayerDecision['variant'] = 'cached';
    const servedFrom = new Map<string, number>();
    const blocked: BlockedReuse[] = [];
    if (segments.length === 0) {
      if (r.perKvHead && r.attend?.keys.kind === 'keys') {
        headKeys = full
          ? Array.from({ length: this.kvHeads }, () => all)
          : this.perHead(r.attend.keys.set, (e) => this.set(e));
        keys = headKeys.reduce(union);
      } else keys = full || !r.attend || r.attend.keys.kind !== 'keys' ? all : this.set(r.attend.keys.set);
    } else {
      const set = (e: Expr) => this.set(e);
      this.quietSelections = full;
      const chosen = full ? fullSegmentKeys(segments, set, this.L) : undefined;
      this.quietSelections = false;
      segmentSets = chosen ? chosen.keys : segmentKeys(segments, set);
      const reused = reusedSegments(r);
      if (!full && reused.length > 0) {
        const serve = reused.map((s) => this.serve(l, s, rows, segmentSets.get(s.name) as Mask, blocked));
        if (serve.every((step) => step !== undefined)) {
          variant = 'reuse';
          reused.forEach((s, i) => {
            servedFrom.set(s.name, serve[i] as number);
          });
        }
      }
      for (const s of reused) {
        const id = `${l}.${s.name}`;
        if (variant === 'reuse') continue;
        if (chosen && !chosen.reusable.has(s.name)) this.partials.delete(id);
        else
          this.partials.set(id, {
            step: this.canvas.step,
            rows: full ? all : rows,
            keys: segmentSets.get(s.name) as Mask,
          });
      }
    }
    const c = this.canvas;
    const writes = r.caches.map(({ rule, id }) => {
      const S = this.set(rule.set);
      const delay = rule.delay ? constantOf(this.typed, rule.delay) : 0;
      const held = (i: number) => !c.isPrompt(i) && c.age(i) < delay;
      for (const i of members(rows)) if (S[i] === 1 && held(i)) this.heldRows(rule, l)[i] = c.step;
      return { rule, id, rows: maskOf(this.L, (i) => rows[i] === 1 && S[i] === 1 && !held(i)) };
    });
    const below = this.stepRows[l - 1];
    const restore =
      below && this.rules[l - 1]?.kinds.has('hidden')
        ? maskOf(this.L, (i) => rows[i] === 1 && below[i] !== 1 && this.valid('hidden', l - 1, i))
        : undefined;
    const delta =
      r.kinds.has('attn') && r.kinds.has('ffn')
        ? maskOf(this.L, (i) => rows[i] !== 1 && this.valid('attn', l, i) && this.valid('ffn', l, i))
        : undefined;
    this.stepRows[l] = rows;
    return {
      layer: l,
      full,
      rows,
      keys,
      headKeys,
      segments: segmentSets,
      variant,
      servedFrom,
      blocked,
      writes,
      restore,
      delta,
    };
  }

  /** The layer's cache writes take effect: its rows' entries are valid from now on. */
  commitLayer(d: LayerDecision): void {
    for (const { rule, rows } of d.writes)
      for (const k of rule.kinds) {
        const t = this.table(k.name, d.layer);
        for (const i of members(rows)) t[i] = this.canvas.step;
      }
  }

  private heldRows(rule: CacheStmt, l: number): Int32Array {
    let perLayer = this.held.get(rule);
    if (!perLayer) {
      perLayer = this.rules.map(() => new Int32Array(this.L).fill(-1));
      this.held.set(rule, perLayer);
    }
    return perLayer[l] as Int32Array;
  }

  /**
   * The step of the stored partial a reused segment may be served from, or undefined when it must
   * be recomputed: none stored, its until-condition holds, or (recorded in `blocked`) it was computed
   * for other query rows or other keys.
   */
  private serve(l: number, s: Segment, rows: Mask, keys: Mask, blocked: BlockedReuse[]): number | undefined {
    const p = this.partials.get(`${l}.${s.name}`);
    if (!p || !s.reusedUntil) return undefined;
    this.dirtySince = p.step;
    const due = this.cond(s.reusedUntil);
    this.dirtySince = this.lastFullRefresh;
    if (due) return undefined;
    const newRows = members(rows).filter((i) => p.rows[i] !== 1);
    const keysChanged = !sameSet(keys, p.keys);
    if (newRows.length === 0 && !keysChanged) return p.step;
    blocked.push({ segment: s, newRows, keysChanged, partialStep: p.step });
    return undefined;
  }

  /** Rows computed on every layer this step: the queries whose attention is known at its end. */
  computedEverywhere(): Mask {
    return maskOf(this.L, (i) => this.stepRows.every((m) => m[i] === 1));
  }

  /** The masked positions the decode rule may commit now (its `in` set, default the current block). */
  candidates(): Mask {
    return decodeCandidates(this.typed.decode, this.env());
  }

  /** The candidates `decide` ranks, evaluated as it evaluates them (at the end of the step). */
  decideCandidates(): number[] {
    const wasEnd = this.endOfStep;
    this.endOfStep = true;
    try {
      return members(this.candidates());
    } finally {
      this.endOfStep = wasEnd;
    }
  }

  get decodeRule(): DecodeStmt {
    return this.typed.decode;
  }

  /** The positions the decode rule commits on the current state, best first. */
  decide(score: (by: Expr | undefined) => Float64Array = (by) => this.decodeScore(by)): number[] {
    const d = this.typed.decode;
    const random = d.by?.kind === 'name' && d.by.name === 'random';
    const wasEnd = this.endOfStep;
    this.endOfStep = true;
    try {
      const chosen = decideCommits(d, this.env(), random ? this.randomScores : score(d.by));
      return this.observer.commits ? this.observer.commits(chosen) : chosen;
    } finally {
      this.endOfStep = wasEnd;
    }
  }

  /**
   * The decoded positions a revoking decode rule turns back into masks after committing `chosen`
   * (call once a step, before the commit); records the decode score of each position it commits.
   */
  revoke(chosen: readonly number[]): number[] {
    const d = this.typed.decode;
    if (!revokingRules.has(d.rule.callee.name)) return [];
    const wasEnd = this.endOfStep;
    this.endOfStep = true;
    try {
      const remasked = decideRevocations(d, this.env(), chosen, this.scoreAtCommit);
      const random = d.by?.kind === 'name' && d.by.name === 'random';
      const now = random ? this.randomScores : this.decodeScore(d.by);
      for (const i of chosen) this.scoreAtCommit[i] = now[i] ?? Number.NaN;
      for (const i of remasked) this.scoreAtCommit[i] = Number.NaN;
      return remasked;
    } finally {
      this.endOfStep = wasEnd;
    }
  }

  /** Evaluates a decode score (default: confidence) on the current state, at the last layer. */
  decodeScore(by: Expr | undefined): Float64Array {
    this.layer = this.rules.length - 1;
    return by ? (this.eval(by) as Float64Array) : this.scores.score('confidence', undefined, this.layer);
  }

  private targets(next: boolean): Mask {
    const c = this.canvas;
    const chosen = this.decide();
    if (!next) return maskOf(this.L, (i) => chosen.includes(i));
    const after = c.lookahead(chosen, () => (c.done ? [] : this.decide()));
    return maskOf(this.L, (i) => after.includes(i));
  }

  /** End of step: record a full refresh and choose the selections whose moment has come. */
  finishStep(): void {
    if (this.allFull) this.lastFullRefresh = this.canvas.step;
    for (const s of this.firedThisStep) this.firings.set(s, (this.firings.get(s) ?? 0) + 1);
    this.layer = this.rules.length - 1;
    this.endOfStep = true;
    for (const s of this.typed.plan.body) {
      if (s.kind !== 'select' || !this.cond(s.at)) continue;
      this.choosing = s;
      if (s.per)
        this.headSelections.set(
          s.name,
          this.perHead(s.set, (e) => this.set(e)),
        );
      else this.selections.set(s.name, this.set(s.set));
      this.choosing = undefined;
    }
    this.endOfStep = false;
  }
}
