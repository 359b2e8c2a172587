import type { Expr, LayerScope, NameRef, NumberLit, Param, Plan, Stmt } from '../ast.ts';
import { forEachChild, forEachStmtExpr, type TypedPlan, typecheckPlan } from '../typecheck.ts';

/**
 * Literal sizes the semantic simulation may scale as it scales parameters (section 7.20 of
 * docs/language.md): a literal block length (`blocks 4096`), step count (`steps(4096)`), layer
 * bound (`on layers >= 10000`) or probed layer (`attn_similarity(9999)`) becomes a parameter of its
 * own, named after its place (`literal 9:10`), a name no plan can write. Literals inside
 * arithmetic, comparisons and `every` stay literals: they are the floors that keep the plan's
 * relations (`block_step < 2`).
 */
export interface LiftedPlan {
  readonly typed: TypedPlan;
  /** The parameters that stand for literals, and the literal each replaced. */
  readonly literals: ReadonlyMap<string, NumberLit>;
}

const intLiteral = (e: Expr | undefined): e is NumberLit => e?.kind === 'number' && e.isInt;

/** The int literals the simulation may scale, each where it stands. */
function liftable(plan: Plan): NumberLit[] {
  const found: NumberLit[] = [];
  const take = (e: Expr | undefined) => {
    if (intLiteral(e)) found.push(e);
  };
  const probes = (e: Expr): void => {
    if (e.kind === 'call' && e.callee.name === 'attn_similarity') take(e.args[0]);
    forEachChild(e, probes);
  };
  const scope = (l: LayerScope | undefined) => {
    if (l?.kind === 'cmp') take(l.bound);
    else if (l) for (const b of [l.lo, l.hi]) take(b);
  };
  for (const s of plan.body) {
    if (s.kind === 'blocks') take(s.length);
    if (s.kind === 'decode' && s.rule.callee.name === 'steps') take(s.rule.args[0]);
    if ('layers' in s) scope(s.layers);
    forEachStmtExpr(s, probes);
  }
  return found;
}

/** `e` with the nodes `by` maps replaced; untouched subtrees are shared. */
function substitute(e: Expr, by: ReadonlyMap<Expr, Expr>): Expr {
  const hit = by.get(e);
  if (hit) return hit;
  switch (e.kind) {
    case 'call':
      return { ...e, args: e.args.map((a) => substitute(a, by)) };
    case 'binary':
      return { ...e, left: substitute(e.left, by), right: substitute(e.right, by) };
    case 'unary':
      return { ...e, operand: substitute(e.operand, by) };
    case 'filter':
      return { ...e, set: substitute(e.set, by), predicate: substitute(e.predicate, by) };
    default:
      return e;
  }
}

function substituteScope(l: LayerScope | undefined, by: ReadonlyMap<Expr, Expr>): LayerScope | undefined {
  if (!l) return l;
  return l.kind === 'cmp'
    ? { ...l, bound: substitute(l.bound, by) }
    : { ...l, lo: substitute(l.lo, by), hi: substitute(l.hi, by) };
}

function substituteStmt(s: Stmt, by: ReadonlyMap<Expr, Expr>): Stmt {
  const sub = (e: Expr) => substitute(e, by);
  const opt = (e: Expr | undefined) => (e ? sub(e) : e);
  switch (s.kind) {
    case 'blocks':
      return { ...s, length: sub(s.length) };
    case 'compute':
      return { ...s, set: sub(s.set), layers: substituteScope(s.layers, by) };
    case 'attend': {
      const keys =
        s.keys.kind === 'keys'
          ? { ...s.keys, set: sub(s.keys.set) }
          : {
              ...s.keys,
              segments: s.keys.segments.map((g) => ({
                ...g,
                keys: sub(g.keys),
                reusedUntil: opt(g.reusedUntil),
              })),
            };
      return { ...s, keys, layers: substituteScope(s.layers, by) };
    }
    case 'cache':
      return { ...s, set: sub(s.set), delay: opt(s.delay), layers: substituteScope(s.layers, by) };
    case 'refresh':
      return { ...s, set: sub(s.set), when: sub(s.when), layers: substituteScope(s.layers, by) };
    case 'select':
      return { ...s, set: sub(s.set), at: sub(s.at) };
    case 'decode':
      return { ...s, rule: sub(s.rule) as typeof s.rule, by: opt(s.by), within: opt(s.within) };
    case 'let':
      return { ...s, value: sub(s.value) };
  }
}

/**
 * The plan with its scalable literals turned into parameters at their written values, typed with
 * the parameter values `typed` has (after `--set`); undefined when it has none, or when the lifted
 * plan does not type-check (it always should: a parameter stands where its value stood).
 */
export function liftLiterals(typed: TypedPlan): LiftedPlan | undefined {
  const plan = typed.plan;
  const found = liftable(plan);
  if (found.length === 0) return undefined;
  const by = new Map<Expr, NameRef>();
  const literals = new Map<string, NumberLit>();
  const params: Param[] = [];
  for (const lit of found) {
    const name = `literal ${lit.span.start.line}:${lit.span.start.col}`;
    by.set(lit, { kind: 'name', name, span: lit.span });
    literals.set(name, lit);
    params.push({
      kind: 'param',
      name,
      nameSpan: lit.span,
      declaredType: 'int',
      defaultValue: lit,
      range: undefined,
      span: lit.span,
    });
  }
  const lifted: Plan = {
    ...plan,
    params: [...plan.params, ...params],
    body: plan.body.map((s) => substituteStmt(s, by)),
  };
  const overrides = new Map<string, string>();
  for (const [name, b] of typed.bindings) if (b.kind === 'param') overrides.set(name, String(b.value));
  const again = typecheckPlan(lifted, overrides).typed;
  return again && { typed: again, literals };
}
