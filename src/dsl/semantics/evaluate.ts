import type { Expr } from '../ast.ts';
import { builtins } from '../builtins.ts';
import { arithmetic, type Binding } from '../typecheck.ts';
import type { Canvas } from './canvas.ts';

/** A token set or per-token predicate (1 = member) over the canvas. */
export type Mask = Uint8Array;
export type RuntimeValue = Mask | Float64Array | number | boolean;

/** What expression evaluation needs beyond the canvas; the simulator and the inspector provide it. */
export interface EvalHooks {
  /** A per-token score that comes from the model (confidence, rollout, attention_mass, …). */
  modelScore(name: string, queries: Mask | undefined, canvas: Canvas): Float64Array;
  /** The current value of a `select`ed set. */
  selection(name: string): Mask;
  targets(next: boolean): Mask;
  /** Positions with no valid K/V cache entry at the layer being decided. */
  uncached(): Mask;
  dirty(set: Mask): number;
  attnSimilarity(layer: number): number;
  /** Whether a layer below the one being decided (after the forward: any layer) drifted below gamma. */
  afterDrift(gamma: number): boolean;
  /** The value of `measured_at(score, layer)`: the score as measured when that layer was decided. */
  measuredAt(call: Extract<Expr, { kind: 'call' }>): Float64Array;
  /** Called for every score applied to a set, so that callers can check what the score needs. */
  scoreUse?(score: Expr, over: Mask): void;
}

export interface EvalEnv {
  readonly canvas: Canvas;
  readonly bindings: ReadonlyMap<string, Binding>;
  readonly hooks: EvalHooks;
  /**
   * Values of canvas-pure expressions (see `canvasPure`) already computed on this token state:
   * whoever passes it starts a new one when the state changes (`Canvas.state`).
   */
  readonly memo?: Map<Expr, RuntimeValue>;
}

export const maskOf = (n: number, f: (i: number) => boolean): Mask => {
  const m = new Uint8Array(n);
  for (let i = 0; i < n; i++) m[i] = f(i) ? 1 : 0;
  return m;
};
export const count = (m: Mask): number => m.reduce((a, b) => a + b, 0);
export const members = (m: Mask): number[] => {
  const out: number[] = [];
  for (let i = 0; i < m.length; i++) if (m[i]) out.push(i);
  return out;
};
/** `members` as an index list: counted first, so that no intermediate array is built (per layer). */
export function positionsOf(m: Mask): Int32Array {
  let n = 0;
  for (let i = 0; i < m.length; i++) if (m[i]) n++;
  const out = new Int32Array(n);
  for (let i = 0, k = 0; k < n; i++) if (m[i]) out[k++] = i;
  return out;
}

/** Positions from `start` up to `end`: the sets made of whole blocks are ranges of the canvas. */
const range = (n: number, start: number, end: number): Mask => new Uint8Array(n).fill(1, start, end);

function baseSet(name: string, c: Canvas): Mask | undefined {
  const n = c.length;
  const [start, end] = c.blockRange(c.block);
  switch (name) {
    case 'all':
      return range(n, 0, n);
    case 'none':
      return range(n, 0, 0);
    case 'prompt':
      return range(n, 0, c.promptLen);
    case 'generated':
      return range(n, c.promptLen, n);
    case 'masked':
      return maskOf(n, (i) => c.isMasked(i));
    case 'decoded':
      return maskOf(n, (i) => !c.isPrompt(i) && !c.isMasked(i));
    case 'newly_decoded':
      return maskOf(n, (i) => !c.isPrompt(i) && !c.isMasked(i) && c.age(i) === 1);
    case 'current_block':
      return range(n, start, end);
    case 'before_block':
      return range(n, c.promptLen, start);
    case 'after_block':
      return range(n, end, n);
    default:
      return undefined;
  }
}

/**
 * Whether selecting by this score prefers low values: `entropy`, a `let` naming it, and `maxpool`
 * of it. A score built with arithmetic or negation ranks highest first, whatever it is built
 * from, so that its author states the direction: `-entropy` prefers low entropy.
 */
export function lowIsBetter(score: Expr, bindings?: ReadonlyMap<string, Binding>): boolean {
  if (score.kind === 'name') {
    const bound = bindings?.get(score.name);
    if (bound?.kind === 'let') return lowIsBetter(bound.expr, bindings);
    const b = builtins[score.name];
    return b?.kind === 'value' && b.lowIsBetter === true;
  }
  if (score.kind === 'call' && score.callee.name === 'maxpool' && score.args[0])
    return lowIsBetter(score.args[0], bindings);
  return false;
}

/** Members of `set` ordered best score first; ties go to the lower position, so results are deterministic. */
export function rankMembers(set: Mask, score: Float64Array, low: boolean): number[] {
  return members(set).sort((a, b) => {
    const d = low ? (score[a] ?? 0) - (score[b] ?? 0) : (score[b] ?? 0) - (score[a] ?? 0);
    return d !== 0 ? d : a - b;
  });
}

/**
 * The value of `e` on the current state. Each `let` it reads is evaluated once, however often it
 * is read: lets that read each other twice (`let a2 = a1 | a1`) would otherwise double the work
 * at every level. The state does not change while one expression is evaluated, so the value of a
 * `let` is the same at each of its reads.
 */
export function evaluate(e: Expr, env: EvalEnv): RuntimeValue {
  return evaluateWith(e, env, new Map());
}

/** Values are never written to after they are made, so a memoised one may be read again. */
type LetValues = Map<string, RuntimeValue>;

/** The builtin sets of positions (`baseSet`). */
export const canvasSets = [
  'all',
  'none',
  'prompt',
  'generated',
  'masked',
  'decoded',
  'newly_decoded',
  'current_block',
  'before_block',
  'after_block',
] as const;

/** Names whose value is a function of the token state alone (no model, cache, selection or hook). */
const canvasNames = new Set<string>([
  ...canvasSets,
  'age',
  'position',
  'step',
  'block_step',
  'block_index',
  'block_start',
]);
/** Calls that compute from their arguments alone. */
const canvasCalls = new Set(['window', 'leftmost', 'shift', 'every', 'count']);
const pureOf = new WeakMap<Expr, boolean>();

/**
 * Whether `e` is a function of the token state alone: parameters, the canvas sets and numbers, and
 * set algebra over them, through lets. Its value cannot change while the state does not (it reads
 * no score, cache, selection or hook), so it may be evaluated once per state, however many layers
 * ask.
 */
export function canvasPure(e: Expr, bindings: ReadonlyMap<string, Binding>): boolean {
  const known = pureOf.get(e);
  if (known !== undefined) return known;
  const pure = (x: Expr) => canvasPure(x, bindings);
  let v: boolean;
  switch (e.kind) {
    case 'number':
    case 'bool':
      v = true;
      break;
    case 'name': {
      const b = bindings.get(e.name);
      v = b?.kind === 'param' || (b?.kind === 'let' ? pure(b.expr) : !b && canvasNames.has(e.name));
      break;
    }
    case 'filter':
      v = pure(e.predicate) && pure(e.set);
      break;
    case 'unary':
      v = pure(e.operand);
      break;
    case 'binary':
      v = pure(e.left) && pure(e.right);
      break;
    case 'call':
      v = canvasCalls.has(e.callee.name) && e.args.every(pure);
      break;
  }
  pureOf.set(e, v);
  return v;
}

function evaluateWith(e: Expr, env: EvalEnv, lets: LetValues): RuntimeValue {
  const memo = env.memo;
  if (!memo || e.kind === 'number' || e.kind === 'bool' || !canvasPure(e, env.bindings))
    return evaluateNode(e, env, lets);
  const known = memo.get(e);
  if (known !== undefined) return known;
  const v = evaluateNode(e, env, lets);
  memo.set(e, v);
  return v;
}

function evaluateNode(e: Expr, env: EvalEnv, lets: LetValues): RuntimeValue {
  const c = env.canvas;
  const n = c.length;
  const of = (x: Expr) => evaluateWith(x, env, lets);
  switch (e.kind) {
    case 'number':
    case 'bool':
      return e.value;
    case 'name': {
      const b = env.bindings.get(e.name);
      if (b?.kind === 'param') return b.value;
      if (b?.kind === 'let') {
        const known = lets.get(e.name);
        if (known !== undefined) return known;
        const v = of(b.expr);
        lets.set(e.name, v);
        return v;
      }
      if (b?.kind === 'select') return env.hooks.selection(e.name);
      return evalBuiltinName(e.name, env);
    }
    case 'filter': {
      // A step condition first: while it does not hold, the set is not read at all (a selection
      // filtered to the steps after it is chosen is not read before).
      const p = of(e.predicate);
      if (typeof p === 'boolean') return p ? of(e.set) : new Uint8Array(n);
      const s = of(e.set) as Mask;
      const m = p as Mask;
      return maskOf(n, (i) => s[i] === 1 && m[i] === 1);
    }
    case 'unary': {
      const v = of(e.operand);
      if (e.op === 'neg') return v instanceof Float64Array ? v.map((x) => -x) : -(v as number);
      return v instanceof Uint8Array ? maskOf(n, (i) => v[i] === 0) : !v;
    }
    case 'binary':
      return evalBinary(e.op, of(e.left), of(e.right), n, e.left, e.right);
    case 'call':
      return evalCall(e, env, lets);
  }
}

function evalBuiltinName(name: string, env: EvalEnv): RuntimeValue {
  const c = env.canvas;
  const set = baseSet(name, c);
  if (set) return set;
  switch (name) {
    case 'targets':
      return env.hooks.targets(false);
    case 'next_targets':
      return env.hooks.targets(true);
    case 'uncached':
      return env.hooks.uncached();
    case 'age':
      return Float64Array.from({ length: c.length }, (_, i) => c.age(i));
    case 'position':
      return Float64Array.from({ length: c.length }, (_, i) => i);
    case 'step':
      return c.step;
    case 'block_step':
      return c.blockStep;
    case 'block_index':
      return c.block;
    case 'block_start':
      return c.blockStep === 0;
    default:
      return env.hooks.modelScore(name, undefined, c);
  }
}

function evalBinary(
  op: string,
  l: RuntimeValue,
  r: RuntimeValue,
  n: number,
  le: Expr,
  re: Expr,
): RuntimeValue {
  if (l instanceof Uint8Array && r instanceof Uint8Array) {
    switch (op) {
      case '|':
      case 'or':
        return maskOf(n, (i) => l[i] === 1 || r[i] === 1);
      case '&':
      case 'and':
        return maskOf(n, (i) => l[i] === 1 && r[i] === 1);
      case '-':
        return maskOf(n, (i) => l[i] === 1 && r[i] === 0);
    }
  }
  if (l instanceof Float64Array || r instanceof Float64Array) {
    const at = (v: RuntimeValue, i: number) => (v instanceof Float64Array ? (v[i] ?? 0) : Number(v));
    if (scoreArithmetic.has(op)) {
      return Float64Array.from({ length: n }, (_, i) => finite(arithmetic(op, at(l, i), at(r, i), false)));
    }
    return maskOf(n, (i) => arithmetic(op, at(l, i), at(r, i), false) === true);
  }
  if (op === 'and') return Boolean(l) && Boolean(r);
  if (op === 'or') return Boolean(l) || Boolean(r);
  const ints = Number.isInteger(l) && Number.isInteger(r) && isIntExpr(le) && isIntExpr(re);
  return arithmetic(op, Number(l), Number(r), ints) ?? 0;
}

const scoreArithmetic = new Set(['+', '-', '*', '/']);

// Rankings and thresholds must never see NaN or an infinity: a position divided by 0 (or that
// overflows) scores 0, as a scalar division by 0 does.
const finite = (v: number | boolean | undefined): number =>
  typeof v === 'number' && Number.isFinite(v) ? v : 0;

// Floor division applies when both operands are integer-typed; literals say so by their spelling.
const isIntExpr = (e: Expr): boolean => e.kind !== 'number' || e.isInt;

function evalCall(e: Extract<Expr, { kind: 'call' }>, env: EvalEnv, lets: LetValues): RuntimeValue {
  const c = env.canvas;
  const n = c.length;
  const arg = (i: number) => evaluateWith(e.args[i] as Expr, env, lets);
  const setArg = (i: number) => arg(i) as Mask;
  const num = (i: number) => arg(i) as number;
  const scored = (setIndex: number, scoreIndex: number): number[] => {
    const set = setArg(setIndex);
    const scoreExpr = e.args[scoreIndex] as Expr;
    env.hooks.scoreUse?.(scoreExpr, set);
    return rankMembers(set, arg(scoreIndex) as Float64Array, lowIsBetter(scoreExpr, env.bindings));
  };
  const pick = (chosen: number[]) => {
    const m = new Uint8Array(n);
    for (const i of chosen) m[i] = 1;
    return m;
  };
  switch (e.callee.name) {
    case 'window': {
      const s = setArg(0);
      const w = num(1);
      const m = new Uint8Array(n);
      s.forEach((x, i) => {
        if (x) for (let j = Math.max(0, i - w); j <= Math.min(n - 1, i + w); j++) m[j] = 1;
      });
      return m;
    }
    case 'leftmost':
      return pick(members(setArg(0)).slice(0, num(1)));
    case 'shift': {
      const s = setArg(0);
      const d = num(1);
      return maskOf(n, (i) => i - d >= 0 && i - d < n && s[i - d] === 1);
    }
    case 'topk':
      return pick(scored(0, 1).slice(0, num(2)));
    case 'keep': {
      const ranked = scored(0, 1);
      return pick(ranked.slice(0, Math.ceil(num(2) * ranked.length)));
    }
    case 'topp': {
      const ranked = scored(0, 1);
      const score = arg(1) as Float64Array;
      const total = ranked.reduce((a, i) => a + Math.max(0, score[i] ?? 0), 0);
      const chosen: number[] = [];
      let mass = 0;
      for (const i of ranked) {
        if (chosen.length > 0 && mass >= num(2) * total) break;
        chosen.push(i);
        mass += Math.max(0, score[i] ?? 0);
      }
      return pick(chosen);
    }
    case 'maxpool': {
      const s = arg(0) as Float64Array;
      const r = Math.floor(num(1) / 2);
      return Float64Array.from({ length: n }, (_, i) => {
        let best = Number.NEGATIVE_INFINITY;
        for (let j = Math.max(0, i - r); j <= Math.min(n - 1, i + r); j++) best = Math.max(best, s[j] ?? 0);
        return best;
      });
    }
    case 'certainty': {
      const sigma = num(0);
      const conf = env.hooks.modelScore('confidence', undefined, c);
      const reach = Math.min(Math.ceil(3 * sigma), n);
      // The weights by distance and the decoded positions, once: a wide sigma reaches every
      // position of the canvas from every position.
      const gauss = Float64Array.from({ length: reach + 1 }, (_, k) =>
        Math.exp(-(k ** 2) / (2 * sigma * sigma)),
      );
      const known = maskOf(n, (j) => !c.isMasked(j));
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        let w = 0;
        let d = 0;
        for (let j = Math.max(0, i - reach); j <= Math.min(n - 1, i + reach); j++) {
          if (j === i) continue;
          const g = gauss[i > j ? i - j : j - i] as number;
          w += g;
          if (known[j] === 1) d += g;
        }
        out[i] = (conf[i] ?? 0) * (w > 0 ? d / w : 0);
      }
      return out;
    }
    case 'attention_mass':
    case 'query_key':
      return env.hooks.modelScore(e.callee.name, setArg(0), c);
    case 'every':
      return c.step % num(0) === 0;
    case 'count':
      return count(setArg(0));
    case 'dirty':
      return env.hooks.dirty(setArg(0));
    case 'attn_similarity':
      return env.hooks.attnSimilarity(num(0));
    case 'after_drift':
      return env.hooks.afterDrift(num(0));
    case 'measured_at':
      return env.hooks.measuredAt(e);
    default:
      throw new Error(`no evaluation rule for '${e.callee.name}'`);
  }
}
