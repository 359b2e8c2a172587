/**
 * The decode-matched no-cache twin of a plan: what the plan would generate if its cache were
 * exact. It keeps everything that decides *which* tokens are committed and *how the model is
 * shaped* (the blocks, the decode rule with its score, window and AR shift, the structural
 * attention mask) and drops everything that only decides *what is recomputed* (compute sets,
 * key sets, caches, refreshes, selections). Plan minus twin is then the cache's effect alone, and
 * twin minus the one-token-per-step baseline the decode rule's effect alone (docs/eval.md).
 *
 * The twin is built as an AST, printed and checked like any plan the user wrote, so it is a
 * CheckedPlan that every backend runs; its parameter defaults are the original's resolved values
 * (`--set` overrides included), so the printed text alone reproduces it.
 */
import type { AttendStmt, BoolLit, ComputeStmt, Expr, NameRef, NumberLit, Param, Plan, Stmt } from './ast.ts';
import { type CheckedPlan, checkSource } from './check.ts';
import type { Diagnostic } from './diagnostics.ts';
import { printFile, printPlan } from './printer.ts';
import type { Span } from './source.ts';
import { forEachChild, forEachStmtExpr, type TypedPlan } from './typecheck.ts';

export type Derived =
  | { readonly ok: true; readonly checked: CheckedPlan; readonly text: string }
  | { readonly ok: false; readonly diagnostics: readonly Diagnostic[]; readonly text: string };

/** The model structure a plan states: the attention mask and the AR shift of its predictions. */
export interface Structure {
  readonly mask: NameRef | undefined;
  readonly arShift: boolean;
}

export function structureOf(typed: TypedPlan): Structure {
  const masked = typed.plan.body.find((s): s is AttendStmt => s.kind === 'attend' && s.mask !== undefined);
  return { mask: masked?.mask, arShift: typed.decode.arShift };
}

const name = (n: string, span: Span): NameRef => ({ kind: 'name', name: n, span });

/**
 * Names a set of statements reads, with the `let`s they read, transitively. A decode rule never
 * reads a selection (the checker rejects it: a selection is chosen after the decode reads it).
 */
function namesRead(typed: TypedPlan, roots: readonly Stmt[]): Set<string> {
  const seen = new Set<string>();
  const visit = (e: Expr): void => {
    if (e.kind === 'name' && !seen.has(e.name)) {
      seen.add(e.name);
      const b = typed.bindings.get(e.name);
      if (b?.kind === 'let') visit(b.expr);
    }
    forEachChild(e, visit);
  };
  for (const s of roots) forEachStmtExpr(s, visit);
  return seen;
}

/** A parameter whose default is its resolved value, so that the plan needs no `--set` to mean it. */
function resolvedParam(p: Param, value: number | boolean, float: boolean): Param {
  const lit: NumberLit | BoolLit =
    typeof value === 'boolean'
      ? { kind: 'bool', value, span: p.defaultValue.span }
      : { kind: 'number', value, isInt: !float, span: p.defaultValue.span };
  return { ...p, defaultValue: lit };
}

/** The plan with its parameters at their resolved values and every comment dropped. */
function resolved(
  checked: CheckedPlan,
  body: readonly Stmt[],
  planName: string,
  keep: (p: string) => boolean,
): Plan {
  const { plan, typed } = checked;
  const params = plan.params
    .filter((p) => keep(p.name))
    .map((p) => {
      const b = typed.bindings.get(p.name);
      const value = checked.params.get(p.name) ?? p.defaultValue.value;
      return resolvedParam(p, value, b?.kind === 'param' && b.type === 'float');
    });
  const bare = body.map((s) => ({ ...s, leading: [], trailing: undefined }));
  return { ...plan, name: planName, params, body: bare, leading: [], inner: [] };
}

/** The twin's statements: the decoding and the structure kept, every row computed, every key read. */
export function twinBody(typed: TypedPlan): Stmt[] {
  const { mask } = structureOf(typed);
  const kept: readonly Stmt[] = typed.plan.body.filter((s) => s.kind === 'blocks' || s.kind === 'decode');
  const read = namesRead(typed, kept);
  const body: Stmt[] = [];
  for (const s of typed.plan.body) {
    const defines = s.kind === 'let' && read.has(s.name);
    if (s.kind === 'decode') {
      const at = { span: s.span, leading: [], trailing: undefined };
      const all = name('all', s.span);
      body.push({ ...at, kind: 'compute', set: all, layers: undefined } satisfies ComputeStmt);
      body.push({
        ...at,
        kind: 'attend',
        keys: { kind: 'keys', set: all },
        mask,
        layers: undefined,
      } satisfies AttendStmt);
    }
    if (kept.includes(s) || defines) body.push(s);
  }
  return body;
}

/** Checks a derived plan like a file the user wrote; its path says where it came from. */
export function checkDerived(plan: Plan, origin: string): Derived {
  const text = printFile({ plans: [plan], trailing: [] });
  const r = checkSource({ path: origin, text });
  const checked = r.plans[0];
  return checked ? { ok: true, checked, text } : { ok: false, diagnostics: r.diagnostics, text };
}

/** The decode-matched no-cache twin of a checked plan, named `<plan>_twin`. */
export function decodeMatchedTwin(checked: CheckedPlan): Derived {
  const body = twinBody(checked.typed);
  const read = namesRead(checked.typed, body);
  const twin = resolved(checked, body, `${checked.plan.name}_twin`, (p) => read.has(p));
  const comment = {
    text: `# decode-matched no-cache twin of ${checked.plan.name} (kvplan eval --ablate)`,
    span: checked.plan.span,
  };
  return checkDerived({ ...twin, leading: [comment] }, `<twin of ${checked.plan.name}>`);
}

/**
 * What a plan runs as, independent of its name, comments and how its parameter values were given:
 * two plans with the same key generate the same tokens, so one run serves both.
 */
export const runKey = (checked: CheckedPlan): string =>
  printPlan(resolved(checked, checked.plan.body, '_', () => true));

/** `base` (a plan without mask or AR shift) with the model structure `like` states. */
export function withStructure(base: CheckedPlan, like: TypedPlan): Derived {
  const { mask, arShift } = structureOf(like);
  const body = base.plan.body.map((s): Stmt => {
    if (s.kind === 'attend') return { ...s, mask: s.mask ?? mask };
    if (s.kind === 'decode') return { ...s, arShift: s.arShift || arShift };
    return s;
  });
  return checkDerived(
    resolved(base, body, base.plan.name, () => true),
    `<${base.plan.name}>`,
  );
}
