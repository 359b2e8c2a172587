import type { BinaryOp, Expr, NumberLit, Plan, PlanFile, Stmt } from '../../src/dsl/ast.ts';
import { parsePlanText } from '../../src/dsl/front.ts';
import type { Span } from '../../src/dsl/source.ts';

/** A placeholder span for hand-built ASTs; `stripSpans` removes it before any comparison. */
export const S: Span = { start: { offset: 0, line: 1, col: 1 }, end: { offset: 0, line: 1, col: 1 } };

/** A deep copy without `span` / `nameSpan` keys, so ASTs compare by structure alone. */
export function stripSpans(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripSpans);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'span' || k === 'nameSpan' || v === undefined) continue;
      out[k] = stripSpans(v);
    }
    return out;
  }
  return value;
}

/** Parses text that must be well-formed; fails with the diagnostics otherwise. */
export function parseOk(text: string): PlanFile {
  const r = parsePlanText(text);
  if (!r.file || r.diagnostics.length > 0) {
    const msgs = r.diagnostics.map((d) => `${d.span.start.line}:${d.span.start.col} ${d.message}`);
    throw new Error(`expected a clean parse, got:\n${msgs.join('\n')}\n--- text ---\n${text}`);
  }
  return r.file;
}

/** The only plan of a parsed file. */
export function onlyPlan(text: string): Plan {
  const file = parseOk(text);
  if (file.plans.length !== 1) throw new Error(`expected one plan, got ${file.plans.length}`);
  return file.plans[0] as Plan;
}

/** The only statement of a one-statement plan `plan p() { <stmt> }`. */
export function onlyStmt(stmt: string): Stmt {
  const plan = onlyPlan(`plan p() {\n  ${stmt}\n}\n`);
  if (plan.body.length !== 1) throw new Error(`expected one statement, got ${plan.body.length}`);
  return plan.body[0] as Stmt;
}

/** The expression of `let x = <expr>`. */
export function expr(text: string): Expr {
  const s = onlyStmt(`let x = ${text}`);
  if (s.kind !== 'let') throw new Error('not a let');
  return s.value;
}

// Builders for hand-made expressions.
export const name = (n: string): Expr => ({ kind: 'name', name: n, span: S });
export const int = (value: number): NumberLit => ({ kind: 'number', value, isInt: true, span: S });
export const float = (value: number): NumberLit => ({ kind: 'number', value, isInt: false, span: S });
export const bin = (op: BinaryOp, left: Expr, right: Expr): Expr => ({
  kind: 'binary',
  op,
  left,
  right,
  span: S,
});
export const neg = (operand: Expr): Expr => ({ kind: 'unary', op: 'neg', operand, span: S });
export const not = (operand: Expr): Expr => ({ kind: 'unary', op: 'not', operand, span: S });
export const filter = (set: Expr, predicate: Expr): Expr => ({ kind: 'filter', set, predicate, span: S });
export const call = (callee: string, ...args: Expr[]): Expr => ({
  kind: 'call',
  callee: { kind: 'name', name: callee, span: S },
  args,
  span: S,
});

/**
 * A compact, span-free rendering of an expression tree with every node parenthesised, e.g.
 * `(| a (& b (- c d)))`; precedence tests compare against it.
 */
export function sexpr(e: Expr): string {
  switch (e.kind) {
    case 'number':
      return e.isInt ? String(e.value) : `${e.value}f`;
    case 'bool':
      return String(e.value);
    case 'name':
      return e.name;
    case 'call':
      return `(call ${e.callee.name}${e.args.map((a) => ` ${sexpr(a)}`).join('')})`;
    case 'filter':
      return `(filter ${sexpr(e.set)} ${sexpr(e.predicate)})`;
    case 'unary':
      return `(${e.op} ${sexpr(e.operand)})`;
    case 'binary':
      return `(${e.op} ${sexpr(e.left)} ${sexpr(e.right)})`;
  }
}
