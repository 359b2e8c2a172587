import type {
  AttendStmt,
  CacheStmt,
  ComputeStmt,
  Expr,
  LayerScope,
  RefreshStmt,
  Segment,
  SelectStmt,
  Stmt,
} from '../ast.ts';
import { type Diagnostic, error } from '../diagnostics.ts';
import { printExpr } from '../printer.ts';
import { forEachChild, layerInScope, type TypedPlan } from '../typecheck.ts';
import { Canvas } from './canvas.ts';
import { decideCommits } from './decodeRule.ts';
import { describePositions, rowClass, when } from './describe.ts';
import { type EvalEnv, type EvalHooks, evaluate, type Mask, maskOf, members } from './evaluate.ts';
import { fullSegmentKeys, segmentKeys } from './segments.ts';

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
}

/** Where a plan departs from full attention, and on which rows; the premise is worded from these. */
export interface Approximations {
  readonly staleKv: Set<string>;
  readonly staleHidden: Set<string>;
  readonly staleFeatures: Set<string>;
  readonly reusedPartials: Set<string>;
  readonly sparse: Set<string>;
  readonly staleLogits: Set<string>;
}

export const noApproximations = (): Approximations => ({
  staleKv: new Set(),
  staleHidden: new Set(),
  staleFeatures: new Set(),
  reusedPartials: new Set(),
  sparse: new Set(),
  staleLogits: new Set(),
});

/**
 * The range a model score takes on real models, so that a threshold on it (`entropy < 1.0`,
 * `query_key(q) > 0`) splits the stand-in values as it splits real ones: with every stand-in in
 * [0, 1), `all[entropy < 1.0]` held every row in the simulation and none on a model (fuzz
 * finding F10). Entropy reaches log(vocab), about 12 for the largest vocabularies.
 */
const scoreRange: Readonly<Record<string, readonly [number, number]>> = {
  entropy: [0, 12],
  value_drift: [0, 2],
  query_key: [-4, 4],
};

// A deterministic stand-in for model outputs: what the checker needs is their shape, not values.
function pseudoScore(seed: number, step: number, name: string, i: number): number {
  const [lo, hi] = scoreRange[name.split('@')[0] as string] ?? [0, 1];
  return lo + (hi - lo) * unitHash(seed, step, name, i);
}

function unitHash(seed: number, step: number, name: string, i: number): number {
  let h = (seed * 0x9e3779b1) ^ (step * 0x85ebca6b) ^ (i * 0xc2b2ae35);
  for (let k = 0; k < name.length; k++) h = Math.imul(h ^ name.charCodeAt(k), 0x27d4eb2d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) / 2 ** 32;
}

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
const sameSet = (a: Mask, b: Mask): boolean => a.every((x, i) => x === b[i]);
const union = (a: Mask, b: Mask): Mask => maskOf(a.length, (i) => a[i] === 1 || b[i] === 1);

interface Partial {
  readonly step: number;
  readonly rows: Mask;
  readonly keys: Mask;
}

/** Runs a plan through one generation on a sample canvas, checking every read it makes. */
class Simulation {
  readonly errors = new Map<string, Diagnostic>();
  readonly canvas: Canvas;
  private readonly L: number;
  private readonly kv: Int32Array[];
  private readonly hidden: Int32Array[];
  private readonly attn: Int32Array[];
  private readonly ffn: Int32Array[];
  private readonly logitsStep: Int32Array;
  private readonly partials = new Map<string, Partial>();
  /** Per cache rule and layer, the last step at which its delay held back a row it would have written. */
  private readonly delayed = new Map<CacheStmt, Int32Array[]>();
  private readonly selections = new Map<string, Mask>();
  private lastFullRefresh = 0;
  private dirtySince = 0;
  private selectContext: { rows: Mask; stmt: SelectStmt } | undefined;
  /** The expression being evaluated, so that an error can point at the read inside it. */
  private evaluating: Expr | undefined;
  /** Reads of unchosen selections are allowed while a full layer evaluates its split segments. */
  private quietSelections = false;
  /** Selections and decoding run after every layer, when every layer's measurements are known. */
  private endOfStep = false;
  private layer = 0;
  private readonly causal: boolean;
  private readonly stmts: readonly Stmt[];

  constructor(
    private readonly typed: TypedPlan,
    private readonly sc: Scenario,
    private readonly approx: Approximations,
  ) {
    this.canvas = new Canvas(sc.promptLen, sc.genLen, sc.blockLen);
    this.L = this.canvas.length;
    const perLayer = () => Array.from({ length: sc.numLayers }, () => new Int32Array(this.L).fill(-1));
    this.kv = perLayer();
    this.hidden = perLayer();
    this.attn = perLayer();
    this.ffn = perLayer();
    this.logitsStep = new Int32Array(this.L).fill(-1);
    this.stmts = typed.plan.body;
    this.causal = this.stmts.some((s) => s.kind === 'attend' && s.mask?.name === 'block_causal');
  }

  private fail(span: Stmt['span'] | Expr['span'], message: string, notes: string[] = []): void {
    const key = `${span.start.offset}:${message.replace(/\d+/g, '#')}`;
    if (!this.errors.has(`${span.start.offset}`) && !this.errors.has(key)) {
      this.errors.set(`${span.start.offset}`, error(span, message, notes));
    }
  }

  private readonly hooks: EvalHooks = {
    modelScore: (name) =>
      Float64Array.from({ length: this.L }, (_, i) =>
        pseudoScore(
          this.sc.seed,
          name === 'random' ? 0 : this.canvas.step,
          // value_drift is measured on each layer's own V, so it differs from layer to layer (the
          // other model scores are measured once a step): a compute set built from it may differ
          // between layers, which the reads between layers must survive.
          name === 'value_drift' ? `${name}@${this.layer}` : name,
          i,
        ),
      ),
    selection: (name) => {
      const v = this.selections.get(name);
      if (v) return v;
      const stmt = this.stmts.find((s): s is SelectStmt => s.kind === 'select' && s.name === name);
      if (stmt && !this.quietSelections) {
        const use = this.evaluating && findName(this.evaluating, name);
        this.fail(
          use?.span ?? stmt.nameSpan,
          `selection '${name}' is read ${when(this.canvas, this.layer)} before it is first chosen`,
          [
            `note: '${name}' (line ${stmt.nameSpan.start.line}) is chosen at the end of a step where \`${printExpr(stmt.at)}\` holds, and usable from the next step`,
            'help: choose it earlier, or make the steps before it full refreshes (`refresh all when ...`)',
          ],
        );
      }
      return maskOf(this.L, () => false);
    },
    targets: (next) => this.decodeTargets(next),
    dirty: (set) => members(set).filter((i) => this.canvas.tokenSince(i) > this.dirtySince).length,
    attnSimilarity: (layer) => {
      if (!this.endOfStep && layer >= this.layer) this.similarityTooEarly(layer);
      return this.sc.data === 'always' ? -1 : 1;
    },
    scoreUse: (score, over) => this.checkScoreNeeds(score, over),
  };

  private env(): EvalEnv {
    return { canvas: this.canvas, bindings: this.typed.bindings, hooks: this.hooks };
  }
  private eval(e: Expr): ReturnType<typeof evaluate> {
    const outer = this.evaluating;
    this.evaluating ??= e;
    try {
      return evaluate(e, this.env());
    } finally {
      this.evaluating = outer;
    }
  }
  private set(e: Expr): Mask {
    return this.eval(e) as Mask;
  }
  private cond(e: Expr): boolean {
    return this.eval(e) === true;
  }
  private inScope(s: LayerScope | undefined, layer: number): boolean {
    return layerInScope(s, layer, (x) => evaluate(x, this.env()) as number);
  }

  /** The scoped rule covering the layer if any, else the unscoped one. */
  private ruleFor<K extends 'compute' | 'attend'>(
    kind: K,
    layer: number,
  ): (K extends 'compute' ? ComputeStmt : AttendStmt) | undefined {
    const rules = this.stmts.filter((s) => s.kind === kind) as (ComputeStmt | AttendStmt)[];
    const rule = rules.find((r) => r.layers && this.inScope(r.layers, layer)) ?? rules.find((r) => !r.layers);
    return rule as (K extends 'compute' ? ComputeStmt : AttendStmt) | undefined;
  }

  private checkScoreNeeds(score: Expr, over: Mask): void {
    const c = this.canvas;
    if (refersTo(score, (e) => e.kind === 'name' && e.name === 'value_drift')) {
      const kv = this.kv[this.layer] as Int32Array;
      const missing = members(over).filter((i) => (kv[i] ?? -1) < 0);
      if (missing.length > 0) {
        this.fail(
          score.span,
          `value_drift compares fresh V with cached V, but ${describePositions(c, missing)} have no cached K/V ${when(c, this.layer)}`,
          ['help: cache their K/V, e.g. `cache kv of all`'],
        );
      }
    }
    const ctx = this.selectContext;
    if (!ctx) return;
    const attentionScores = (e: Expr) =>
      e.kind === 'call' && ['attention_mass', 'query_key'].includes(e.callee.name);
    const visit = (e: Expr): void => {
      if (attentionScores(e) && e.kind === 'call' && e.args[0]) {
        const q = this.set(e.args[0]);
        const missing = members(q).filter((i) => ctx.rows[i] !== 1);
        if (missing.length > 0) {
          this.fail(
            e.span,
            `${e.callee.name} needs the attention of its queries, but ${describePositions(c, missing)} are not computed ${when(c)}, when '${ctx.stmt.name}' is chosen`,
            ['help: choose the selection at a step that computes those rows (e.g. a refresh step)'],
          );
        }
      }
      forEachChild(e, visit);
    };
    visit(score);
  }

  private decodeTargets(next: boolean): Mask {
    const c = this.canvas;
    const chosen = this.decide();
    if (!next) return maskOf(this.L, (i) => chosen.includes(i));
    const after = c.lookahead(chosen, () => (c.done ? [] : this.decide()));
    return maskOf(this.L, (i) => after.includes(i));
  }

  /** The positions the decode rule commits on the current state. */
  private decide(): number[] {
    const d = this.typed.decode;
    const score = d.by
      ? (evaluate(d.by, this.env()) as Float64Array)
      : this.hooks.modelScore('confidence', undefined, this.canvas);
    const chosen = decideCommits(d, this.env(), score);
    const countFromScores = d.rule.callee.name === 'threshold' || d.rule.callee.name === 'factor';
    return this.sc.commits === 'one' && countFromScores ? chosen.slice(0, 1) : chosen;
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
    const maxSteps = 4 * this.sc.genLen + 8;
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
      this.endOfStep = true;
      const chosen = this.decide();
      this.endOfStep = false;
      this.checkPredictions(chosen);
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
      c.commit(chosen);
      c.advance();
    }
  }

  private checkPredictions(chosen: number[]): void {
    const c = this.canvas;
    const d = this.typed.decode;
    const fresh = this.visibleChange();
    for (const i of chosen) {
      const row = d.arShift ? i - 1 : i;
      if (row < 0) continue;
      const at = this.logitsStep[row] ?? -1;
      if (at < c.tokenSince(row)) {
        this.fail(
          d.span,
          `the decode rule reads the prediction of ${describePositions(c, [i])} ${when(c)}, but ${d.arShift ? `row ${row} (ar_shift)` : 'that row'} was never computed since its token last changed`,
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
    let computedEverywhere = maskOf(this.L, () => true);
    let fullEverywhere = true;
    for (let l = 0; l < this.sc.numLayers; l++) {
      this.layer = l;
      this.dirtySince = this.lastFullRefresh;
      const refreshes = this.stmts.filter(
        (s): s is RefreshStmt => s.kind === 'refresh' && this.inScope(s.layers, l) && this.cond(s.when),
      );
      let extra = maskOf(this.L, () => false);
      for (const r of refreshes) extra = union(extra, this.set(r.set));
      const full = extra.every((x) => x === 1);
      fullEverywhere &&= full;
      const compute: ComputeStmt | undefined = this.ruleFor('compute', l);
      const R = full ? extra : union(compute ? this.set(compute.set) : maskOf(this.L, () => true), extra);

      const noInput = members(R).filter((i) => avail[i] !== 1);
      if (noInput.length > 0) {
        this.fail(
          compute?.span ?? this.typed.plan.nameSpan,
          `${describePositions(c, noInput)} are computed ${when(c, l)}, but their input (the output of layer ${l - 1}) is neither computed nor cached`,
          [`help: cache it, e.g. \`cache hidden of all\`, or compute those rows on layer ${l - 1} too`],
        );
      }
      if (prevR) this.noteStaleInputs(R, prevR, l - 1, fresh);

      const needed = this.keysRead(R, l, full, fresh);
      const uncovered: number[] = [];
      const kv = this.kv[l] as Int32Array;
      for (const k of members(needed)) {
        if (R[k] === 1) continue;
        const w = kv[k] ?? -1;
        if (w < c.tokenSince(k)) uncovered.push(k);
        else if (l > 0 && w < fresh(k)) this.approx.staleKv.add(rowClass(c, k));
      }
      if (uncovered.length > 0) {
        const attend = this.ruleFor('attend', l);
        const neverWritten = uncovered.filter((k) => (kv[k] ?? -1) < 0);
        const why =
          neverWritten.length === uncovered.length
            ? 'nor ever cached'
            : 'nor cached since their token last changed';
        this.fail(
          attend?.span ?? compute?.span ?? this.typed.plan.nameSpan,
          `keys at ${describePositions(c, uncovered)} are read ${when(c, l)} but are neither computed in this step ${why}`,
          [
            ...this.coverNotes(uncovered, l),
            t === 0 && neverWritten.length === uncovered.length
              ? 'help: nothing is cached before the first step: add `refresh all when block_start` (or `when step == 0`)'
              : 'help: compute those rows in this step, or cache their K/V after they are computed (`cache kv of ...`)',
          ],
        );
      }
      this.write(R, l, t);
      avail = this.outputs(R, avail, l);
      prevR = R;
      computedEverywhere = maskOf(this.L, (i) => computedEverywhere[i] === 1 && R[i] === 1);
      if (l === this.sc.numLayers - 1) for (const i of members(R)) this.logitsStep[i] = t;
    }
    if (fullEverywhere) this.lastFullRefresh = t;
    this.endOfStep = true;
    this.choose(computedEverywhere);
    this.endOfStep = false;
  }

  /**
   * Whether a key set picks keys by score or count. The sample canvas may be too small for such a
   * pick to drop anything, yet on a real canvas it does, so it makes the plan approximate.
   */
  private selects(e: Expr): boolean {
    return refersTo(e, (x) => {
      if (x.kind === 'call') return selectingFunctions.has(x.callee.name);
      // A filter by a score (`generated[position > 40]`) drops keys on some canvas even when the
      // sample canvases happen to keep them all.
      if (x.kind === 'filter') return true;
      if (x.kind !== 'name') return false;
      const b = this.typed.bindings.get(x.name);
      return b?.kind === 'select' || (b?.kind === 'let' && this.selects(b.expr));
    });
  }

  /** The keys read from outside R this layer, after split segments and reused partials. */
  private keysRead(R: Mask, l: number, full: boolean, fresh: (i: number) => number): Mask {
    const c = this.canvas;
    const visible = this.visibleKeys(R);
    const attend: AttendStmt | undefined = this.ruleFor('attend', l);
    if (!attend || attend.keys.kind === 'keys') {
      if (full || !attend || attend.keys.kind !== 'keys') return visible;
      const keys = this.set(attend.keys.set);
      const dropped = members(visible).filter((i) => keys[i] !== 1);
      if (dropped.length > 0 || this.selects(attend.keys.set))
        this.approx.sparse.add(printExpr(attend.keys.set));
      return maskOf(this.L, (i) => keys[i] === 1 && visible[i] === 1);
    }
    let needed = maskOf(this.L, () => false);
    let attended = maskOf(this.L, () => false);
    const segments = attend.keys.segments;
    const set = (e: Expr) => this.set(e);
    this.quietSelections = full;
    const { keys: keysOf, reusable } = full
      ? fullSegmentKeys(segments, set, this.L)
      : { keys: segmentKeys(segments, set), reusable: undefined };
    this.quietSelections = false;
    this.checkDisjoint(segments, keysOf, l);
    for (const g of segments) {
      const keys = keysOf.get(g.name) as Mask;
      attended = union(attended, keys);
      const id = `${attend.span.start.offset}:${g.name}:${l}`;
      if (full) {
        if (reusable?.has(g.name))
          this.partials.set(id, { step: c.step, rows: maskOf(this.L, () => true), keys });
        else this.partials.delete(id);
        continue;
      }
      if (!g.reusedUntil) {
        needed = union(needed, keys);
        continue;
      }
      const p = this.partials.get(id);
      this.dirtySince = p?.step ?? this.lastFullRefresh;
      const recompute = !p || this.cond(g.reusedUntil);
      this.dirtySince = this.lastFullRefresh;
      if (recompute) {
        this.partials.set(id, { step: c.step, rows: R, keys });
        needed = union(needed, keys);
        continue;
      }
      const newRows = members(R).filter((i) => p.rows[i] !== 1);
      if (newRows.length > 0 || !sameSet(keys, p.keys)) {
        const what =
          newRows.length > 0
            ? `query ${describePositions(c, newRows)}, which it was never computed for`
            : `keys \`${printExpr(g.keys)}\` that changed since it was computed at step ${p.step}`;
        this.fail(g.span, `the partial of segment '${g.name}' is reused ${when(c, l)} for ${what}`, [
          'help: recompute it when its rows or keys change, e.g. `reused until ... or block_start`',
        ]);
        continue;
      }
      const changed = members(union(R, keys)).some((i) => fresh(i) > p.step);
      if (changed) this.approx.reusedPartials.add(g.name);
    }
    if (full) return visible;
    const dropped = members(visible).filter((i) => attended[i] !== 1);
    if (dropped.length > 0 || attend.keys.segments.some((g) => this.selects(g.keys)))
      this.approx.sparse.add(attend.keys.segments.map((g) => printExpr(g.keys)).join(' | '));
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
  private coverNotes(keys: readonly number[], l: number): string[] {
    const c = this.canvas;
    const rules = this.stmts.filter(
      (s): s is CacheStmt =>
        s.kind === 'cache' && s.kinds.some((k) => k.name === 'kv') && this.inScope(s.layers, l),
    );
    const rule = (r: CacheStmt) =>
      `\`cache ${r.kinds.map((k) => k.name).join(', ')} of ${printExpr(r.set)}${r.delay ? ` delay ${printExpr(r.delay)}` : ''}\` (line ${r.span.start.line})`;
    if (rules.length === 0) return [`note: no \`cache kv\` rule applies to layer ${l}`];
    const delayed = rules.filter((r) =>
      keys.some((k) => ((this.delayed.get(r)?.[l] as Int32Array | undefined)?.[k] ?? -1) >= c.tokenSince(k)),
    );
    if (delayed.length > 0)
      return delayed.map(
        (r) => `note: ${rule(r)} skipped them when they were last computed: they were younger than its delay`,
      );
    const covering = rules.filter((r) => {
      const S = this.set(r.set);
      return keys.every((k) => S[k] === 1);
    });
    return covering.length > 0
      ? covering.map(
          (r) =>
            `note: ${rule(r)} covers them, but they were not computed since their token last changed, so it wrote nothing valid`,
        )
      : [
          `note: ${rules.length === 1 ? 'the only K/V cache rule on this layer' : 'the K/V cache rules on this layer'}, ${rules.map(rule).join(' and ')}, ${rules.length === 1 ? 'does' : 'do'} not hold them`,
        ];
  }

  private write(R: Mask, l: number, t: number): void {
    const c = this.canvas;
    for (const s of this.stmts) {
      if (s.kind !== 'cache' || !this.inScope(s.layers, l)) continue;
      const rule: CacheStmt = s;
      const S = this.set(rule.set);
      const delay = rule.delay ? (evaluate(rule.delay, this.env()) as number) : 0;
      for (const i of members(R)) {
        if (S[i] === 1 && !c.isPrompt(i) && c.age(i) < delay) this.delayedAt(rule, l)[i] = t;
        if (S[i] !== 1 || (!c.isPrompt(i) && c.age(i) < delay)) continue;
        for (const k of rule.kinds) {
          const table = { kv: this.kv, hidden: this.hidden, attn: this.attn, ffn: this.ffn }[k.name];
          const row = table?.[l];
          if (row) row[i] = t;
        }
      }
    }
  }

  private delayedAt(rule: CacheStmt, l: number): Int32Array {
    let perLayer = this.delayed.get(rule);
    if (!perLayer) {
      perLayer = Array.from({ length: this.sc.numLayers }, () => new Int32Array(this.L).fill(-1));
      this.delayed.set(rule, perLayer);
    }
    return perLayer[l] as Int32Array;
  }

  /** Rows whose layer-l output exists: computed, or served from a valid hidden/feature cache. */
  private outputs(R: Mask, avail: Mask, l: number): Mask {
    const c = this.canvas;
    const valid = (table: Int32Array[], i: number) => ((table[l] as Int32Array)[i] ?? -1) >= c.tokenSince(i);
    return maskOf(
      this.L,
      (i) =>
        R[i] === 1 || valid(this.hidden, i) || (avail[i] === 1 && valid(this.attn, i) && valid(this.ffn, i)),
    );
  }

  private noteStaleInputs(R: Mask, prevR: Mask, l: number, fresh: (i: number) => number): void {
    const c = this.canvas;
    for (const i of members(R)) {
      if (prevR[i] === 1) continue;
      const h = (this.hidden[l] as Int32Array)[i] ?? -1;
      if (h >= c.tokenSince(i)) {
        if (h < fresh(i)) this.approx.staleHidden.add(rowClass(c, i));
      } else if (
        ((this.attn[l] as Int32Array)[i] ?? -1) < fresh(i) ||
        ((this.ffn[l] as Int32Array)[i] ?? -1) < fresh(i)
      ) {
        this.approx.staleFeatures.add(rowClass(c, i));
      }
    }
  }

  /** Selections are chosen from this step's forward and become visible from the next step. */
  /** `attn_similarity(l)` read on a layer that runs before layer l has been measured. */
  private similarityTooEarly(l: number): void {
    const root = this.evaluating;
    let call: Expr | undefined;
    const visit = (e: Expr): void => {
      if (!call && e.kind === 'call' && e.callee.name === 'attn_similarity') call = e;
      forEachChild(e, visit);
    };
    if (root) visit(root);
    this.fail(
      call?.span ?? root?.span ?? this.typed.plan.nameSpan,
      `attn_similarity(${l}) is known once layer ${l} has run, but it is read ${when(this.canvas, this.layer)}, before that`,
      [`help: apply the rule only to the layers after it, e.g. \`on layers > ${l}\``],
    );
  }

  private choose(computed: Mask): void {
    for (const s of this.stmts) {
      if (s.kind !== 'select' || !this.cond(s.at)) continue;
      this.selectContext = { rows: computed, stmt: s };
      const value = this.set(s.set);
      this.selectContext = undefined;
      this.selections.set(s.name, value);
    }
  }
}

/**
 * Scenarios of the bounded check: two seeds, both outcomes of data-dependent conditions, commit
 * counts from the stand-in scores and the slowest ones, and a short canvas besides the long one
 * (a commit schedule such as `steps(n)` spreads differently over them, and so does `dirty`).
 */
export function scenarios(blockLen: number | undefined, numLayers: number): Scenario[] {
  const block = blockLen ?? 24;
  const blocks = blockLen === undefined ? 1 : block <= 8 ? 4 : block <= 64 ? 3 : 2;
  const long = { promptLen: 6, genLen: block * blocks, blockLen: block, numLayers };
  const shortGen = blockLen === undefined ? 5 : block + 1;
  const short = { promptLen: 2, genLen: shortGen, blockLen: block, numLayers };
  const datas = ['never', 'always'] as const;
  return [
    ...[1, 2].flatMap((seed) => datas.map((data) => ({ ...long, seed, data, commits: 'scores' as const }))),
    ...datas.map((data) => ({ ...long, seed: 3, data, commits: 'one' as const })),
    ...datas.map((data) => ({ ...short, seed: 4, data, commits: 'one' as const })),
    ...datas.map((data) => ({ ...short, seed: 5, data, commits: 'scores' as const })),
  ];
}

export function simulatePlan(typed: TypedPlan, sc: Scenario, approx: Approximations): Diagnostic[] {
  const sim = new Simulation(typed, sc, approx);
  sim.run();
  return [...sim.errors.values()];
}
