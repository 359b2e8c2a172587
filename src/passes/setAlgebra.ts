/**
 * `set-algebra`: simplifies the token-set expressions the inspector evaluates every step (the
 * `compute`, `attend`, `cache` and `refresh` sets of each layer's rules), so that the host does less
 * work per layer and dumps read as the plan means. Only set-typed trees of names and `| & -` are
 * rewritten; calls and filters keep their shape, their set arguments are simplified recursively.
 *
 * Rules, applied bottom-up to a fixpoint (`≡` is structural equality, spans ignored):
 * - unions are flattened; `none` members dropped; a member `all` makes the union `all`; repeated
 *   members dropped (the first occurrence keeps its place): `A | A` → A, `A | none` → A.
 * - intersections likewise: `all` members dropped, a member `none` makes it `none`, repeats dropped.
 * - differences: `A - A` → none, `A - none` → A, `none - A` → none, `A - all` → none, and members of
 *   a union on the left that also occur in the union on the right go: `(A | B) - B` → `A - B`.
 *
 * Builtin names cannot be shadowed (the checker rejects it), so `all` and `none` mean themselves.
 * Evaluation is deterministic given the token state, so dropping a repeated member is sound even
 * when it is a call (`topk(...)`).
 */
import type { AttendStmt, Binary, CacheStmt, ComputeStmt, Expr, NameRef, RefreshStmt } from '../dsl/ast.ts';
import { builtins } from '../dsl/builtins.ts';
import { printExpr } from '../dsl/printer.ts';
import type { LayerRules } from '../dsl/semantics/layerRules.ts';
import type { Pass, PipelineState } from './state.ts';

type SetOp = '|' | '&' | '-';
const isSetOp = (op: string): op is SetOp => op === '|' || op === '&' || op === '-';

const key = (e: Expr): string => printExpr(e);
const isName = (e: Expr, name: string): boolean => e.kind === 'name' && e.name === name;
const named = (name: string, like: Expr): NameRef => ({ kind: 'name', name, span: like.span });

/** The members of a chain of one operator (`a | b | c` → [a, b, c]), in order. */
function members(e: Expr, op: '|' | '&'): Expr[] {
  return e.kind === 'binary' && e.op === op ? [...members(e.left, op), ...members(e.right, op)] : [e];
}

/** A left-associated chain; `like` gives the span of the new nodes. Members must be non-empty. */
function chain(ms: readonly Expr[], op: '|' | '&', like: Expr): Expr {
  const [first, ...rest] = ms;
  if (!first) throw new Error('set-algebra: empty chain');
  return rest.reduce<Expr>((l, r) => ({ kind: 'binary', op, left: l, right: r, span: like.span }), first);
}

function dedupe(ms: readonly Expr[]): Expr[] {
  const seen = new Set<string>();
  return ms.filter((m) => {
    const k = key(m);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** One round of the root rules on a node whose operands are already simplified. */
function rewriteRoot(e: Binary): Expr {
  if (e.op === '|' || e.op === '&') {
    const absorbing = e.op === '|' ? 'all' : 'none';
    const neutral = e.op === '|' ? 'none' : 'all';
    const ms = members(e, e.op);
    if (ms.some((m) => isName(m, absorbing))) return named(absorbing, e);
    const kept = dedupe(ms.filter((m) => !isName(m, neutral)));
    if (kept.length === 0) return named(neutral, e);
    return chain(kept, e.op, e);
  }
  // Difference.
  const { left, right } = e;
  if (isName(left, 'none') || isName(right, 'all') || key(left) === key(right)) return named('none', e);
  if (isName(right, 'none')) return left;
  const taken = new Set(members(right, '|').map(key));
  const ls = members(left, '|');
  const kept = ls.filter((m) => !taken.has(key(m)));
  if (kept.length === 0) return named('none', e);
  if (kept.length < ls.length) return { ...e, left: chain(kept, '|', left) };
  return e;
}

/** Simplifies the set arguments of a call (by the builtin's signature); the call keeps its shape. */
function simplifyCall(e: Extract<Expr, { kind: 'call' }>): Expr {
  const b = builtins[e.callee.name];
  if (b?.kind !== 'function') return e;
  const args = e.args.map((a, i) => (b.args[i]?.type === 'set' ? simplifySet(a) : a));
  return args.every((a, i) => a === e.args[i]) ? e : { ...e, args };
}

function simplifyOnce(e: Expr): Expr {
  switch (e.kind) {
    case 'binary': {
      if (!isSetOp(e.op)) return e;
      const left = simplifySet(e.left);
      const right = simplifySet(e.right);
      const node = left === e.left && right === e.right ? e : { ...e, left, right };
      return rewriteRoot(node);
    }
    case 'call':
      return simplifyCall(e);
    case 'filter': {
      const set = simplifySet(e.set);
      return set === e.set ? e : { ...e, set };
    }
    default:
      return e;
  }
}

/**
 * Simplifies a set-typed expression to a fixpoint of the rules above. Returns `e` itself when
 * nothing applies; otherwise new nodes (spans taken from the nodes they replace).
 */
export function simplifySet(e: Expr): Expr {
  let cur = e;
  for (let round = 0; round < 64; round++) {
    const next = simplifyOnce(cur);
    if (next === cur || key(next) === key(cur)) return cur;
    cur = next;
  }
  return cur;
}

type SetStmt = ComputeStmt | AttendStmt | CacheStmt | RefreshStmt;

function simplifyStmt<S extends SetStmt>(s: S): S {
  switch (s.kind) {
    case 'compute':
    case 'cache':
    case 'refresh': {
      const set = simplifySet(s.set);
      return set === s.set ? s : { ...s, set };
    }
    case 'attend': {
      if (s.keys.kind === 'keys') {
        const set = simplifySet(s.keys.set);
        return set === s.keys.set ? s : { ...s, keys: { ...s.keys, set } };
      }
      const split = s.keys;
      const segments = split.segments.map((g) => {
        const keys = simplifySet(g.keys);
        return keys === g.keys ? g : { ...g, keys };
      });
      return segments.every((g, i) => g === split.segments[i]) ? s : { ...s, keys: { ...split, segments } };
    }
  }
  return s;
}

/** The layers' rules with simplified sets; a statement shared by several layers stays shared. */
export function simplifyLayers(layers: readonly LayerRules[]): readonly LayerRules[] {
  const memo = new Map<SetStmt, SetStmt>();
  const stmt = <S extends SetStmt>(s: S): S => {
    let t = memo.get(s);
    if (!t) {
      t = simplifyStmt(s);
      memo.set(s, t);
    }
    return t as S;
  };
  const out = layers.map((r): LayerRules => {
    const compute = r.compute && stmt(r.compute);
    const attend = r.attend && stmt(r.attend);
    const refreshes = r.refreshes.map(stmt);
    const caches = r.caches.map((c) => {
      const rule = stmt(c.rule);
      return rule === c.rule ? c : { rule, id: c.id };
    });
    const same =
      compute === r.compute &&
      attend === r.attend &&
      refreshes.every((s, i) => s === r.refreshes[i]) &&
      caches.every((c, i) => c === r.caches[i]);
    return same ? r : { ...r, compute, attend, refreshes, caches };
  });
  return out.every((r, i) => r === layers[i]) ? layers : out;
}

export const setAlgebraPass: Pass = {
  name: 'set-algebra',
  description: "simplifies the layers' token-set expressions (A | A, (A | B) - B, A & all, …)",
  run: (state: PipelineState): PipelineState => {
    const layers = simplifyLayers(state.lowered.layers);
    return layers === state.lowered.layers ? state : { ...state, lowered: { ...state.lowered, layers } };
  },
};
