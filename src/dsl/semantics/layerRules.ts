import type { AttendStmt, CacheStmt, ComputeStmt, Expr, RefreshStmt, Segment } from '../ast.ts';
import { forEachChild, forEachStmtExpr, layerInScope, type TypedPlan } from '../typecheck.ts';
import { constantOf } from './constant.ts';

/** The rules of a plan that apply to one layer: what the lowering and the inspector both follow. */
export interface LayerRules {
  readonly layer: number;
  readonly compute: ComputeStmt | undefined;
  readonly attend: AttendStmt | undefined;
  readonly refreshes: readonly RefreshStmt[];
  /** Cache rules in scope, with their index in the plan (index lists are named after it). */
  readonly caches: readonly { readonly rule: CacheStmt; readonly id: number }[];
  readonly kinds: ReadonlySet<string>;
  /** The attend's key set reads a `per kv_head` selection: each KV head attends to its own keys. */
  readonly perKvHead: boolean;
}

export const segmentsOf = (a: AttendStmt | undefined): readonly Segment[] =>
  a?.keys.kind === 'split' ? a.keys.segments : [];
export const reusedSegments = (r: LayerRules): readonly Segment[] =>
  segmentsOf(r.attend).filter((s) => s.reusedUntil);

/** The scoped rule covering the layer if any, else the unscoped one (the checker forbids overlaps). */
function ruleFor<S extends ComputeStmt | AttendStmt>(
  rules: readonly S[],
  inScope: (s: S) => boolean,
): S | undefined {
  return rules.find((r) => r.layers && inScope(r)) ?? rules.find((r) => !r.layers);
}

export function layerRules(typed: TypedPlan, layers: number): LayerRules[] {
  const body = typed.plan.body;
  const value = (e: Expr) => constantOf(typed, e);
  return Array.from({ length: layers }, (_, layer) => {
    const scoped = <S extends { layers?: ComputeStmt['layers'] }>(s: S) =>
      layerInScope(s.layers, layer, value);
    const caches = body.flatMap((s, id) => (s.kind === 'cache' && scoped(s) ? [{ rule: s, id }] : []));
    const attend = ruleFor(
      body.filter((s): s is AttendStmt => s.kind === 'attend'),
      scoped,
    );
    return {
      layer,
      compute: ruleFor(
        body.filter((s): s is ComputeStmt => s.kind === 'compute'),
        scoped,
      ),
      attend,
      perKvHead: attend?.keys.kind === 'keys' && readsPerKvHead(typed, attend.keys.set),
      refreshes: body.filter((s): s is RefreshStmt => s.kind === 'refresh' && scoped(s)),
      caches,
      kinds: new Set(caches.flatMap((c) => c.rule.kinds.map((k) => k.name))),
    };
  });
}

/** Whether an expression reads a `per kv_head` selection, directly or through `let`s. */
export function readsPerKvHead(typed: TypedPlan, e: Expr, seen = new Set<string>()): boolean {
  if (e.kind === 'name') {
    if (seen.has(e.name)) return false;
    seen.add(e.name);
    const b = typed.bindings.get(e.name);
    if (b?.kind === 'select') return b.stmt.per !== undefined;
    return b?.kind === 'let' && readsPerKvHead(typed, b.expr, seen);
  }
  let found = false;
  forEachChild(e, (c) => {
    found ||= readsPerKvHead(typed, c, seen);
  });
  return found;
}

/** Whether the plan attends under the block-causal mask (a property of the model it targets). */
export const isBlockCausal = (typed: TypedPlan): boolean =>
  typed.plan.body.some((s) => s.kind === 'attend' && s.mask?.name === 'block_causal');

/**
 * The deepest layer a plan names (a layer-scope bound, the layer an `attn_similarity` probes or a
 * `measured_at` pins), or -1. Layer-scope bounds are constants; a probe layer may be a parameter, never token state.
 */
export function deepestNamedLayer(typed: TypedPlan): number {
  let top = -1;
  const visit = (e: Expr): void => {
    if (e.kind === 'call' && e.callee.name === 'attn_similarity' && e.args[0])
      top = Math.max(top, constantOf(typed, e.args[0]));
    if (e.kind === 'call' && e.callee.name === 'measured_at' && e.args[1])
      top = Math.max(top, constantOf(typed, e.args[1]));
    forEachChild(e, visit);
  };
  for (const s of typed.plan.body) {
    if ('layers' in s && s.layers) {
      const bounds = s.layers.kind === 'cmp' ? [s.layers.bound] : [s.layers.lo, s.layers.hi];
      for (const b of bounds) top = Math.max(top, constantOf(typed, b));
    }
    forEachStmtExpr(s, visit);
  }
  return top;
}
