import type { Comment, Expr, LayerScope, NumberLit, Param, Plan, PlanFile, Stmt } from './ast.ts';

// Binding strength of each operator; higher binds tighter. Mirrors the grammar in parser.ts.
const precedence: Record<string, number> = {
  or: 1,
  and: 2,
  not: 3,
  '<': 4,
  '<=': 4,
  '>': 4,
  '>=': 4,
  '==': 4,
  '!=': 4,
  '|': 5,
  '&': 6,
  '+': 7,
  '-': 7,
  '*': 8,
  '/': 8,
  neg: 9,
};
const ATOM = 10;
const isComparison = (op: string): boolean => precedence[op] === 4;

const exprPrecedence = (e: Expr): number => {
  if (e.kind === 'binary') return precedence[e.op] ?? ATOM;
  if (e.kind === 'unary') return precedence[e.op] ?? ATOM;
  if (e.kind === 'number' && e.value < 0) return precedence.neg ?? ATOM;
  return ATOM;
};

export function formatNumber(n: NumberLit): string {
  // BigInt spells every digit: String(1e21) would give `1e+21`, which reads back as a float.
  if (n.isInt) return BigInt(n.value).toString();
  return Number.isInteger(n.value) ? n.value.toFixed(1) : String(n.value);
}

export function printExpr(e: Expr): string {
  switch (e.kind) {
    case 'number':
      return formatNumber(e);
    case 'bool':
      return String(e.value);
    case 'name':
      return e.name;
    case 'call':
      return `${e.callee.name}(${e.args.map(printExpr).join(', ')})`;
    case 'filter':
      return `${wrap(e.set, ATOM - 1)}[${printExpr(e.predicate)}]`;
    case 'unary': {
      const p = precedence[e.op] ?? ATOM;
      return e.op === 'not' ? `not ${wrap(e.operand, p - 1)}` : `-${wrap(e.operand, p - 1)}`;
    }
    case 'binary': {
      const p = precedence[e.op] ?? ATOM;
      // Operators are left-associative and comparisons do not chain, so the right operand (and
      // a comparison's left operand) needs parentheses at equal precedence.
      const left = wrap(e.left, isComparison(e.op) ? p : p - 1);
      const right = wrap(e.right, p);
      return `${left} ${e.op} ${right}`;
    }
  }
}

/** Prints `e`, parenthesised when it binds no tighter than `floor`. */
function wrap(e: Expr, floor: number): string {
  const s = printExpr(e);
  return exprPrecedence(e) <= floor ? `(${s})` : s;
}

function printParam(p: Param): string {
  const type = p.declaredType ? `: ${p.declaredType}` : '';
  const def = p.defaultValue.kind === 'number' ? formatNumber(p.defaultValue) : String(p.defaultValue.value);
  const range = p.range ? ` in [${formatNumber(p.range.lo)}, ${formatNumber(p.range.hi)}]` : '';
  return `${p.name}${type} = ${def}${range}`;
}

// Layer bounds are parsed at `|` precedence (so that `..` and the comparison stay outside them).
const bound = (e: Expr): string => wrap(e, (precedence['|'] ?? ATOM) - 1);

function printLayers(l: LayerScope | undefined): string {
  if (!l) return '';
  if (l.kind === 'range') return ` on layers ${bound(l.lo)}..${bound(l.hi)}`;
  return l.op === '==' ? ` on layer ${printExpr(l.bound)}` : ` on layers ${l.op} ${bound(l.bound)}`;
}

function printStmtBody(s: Stmt, indent: string): string {
  switch (s.kind) {
    case 'blocks':
      return `blocks ${printExpr(s.length)}`;
    case 'compute':
      return `compute ${printExpr(s.set)}${printLayers(s.layers)}`;
    case 'attend': {
      const mask = s.mask ? ` mask ${s.mask.name}` : '';
      if (s.keys.kind === 'keys') return `attend ${printExpr(s.keys.set)}${mask}${printLayers(s.layers)}`;
      const segs = s.keys.segments.map((g) => {
        const reuse = g.reusedUntil ? ` reused until ${printExpr(g.reusedUntil)}` : '';
        return `${indent}  ${g.name} = ${printExpr(g.keys)}${reuse}`;
      });
      return `attend split {\n${segs.join(',\n')}\n${indent}} merge lse${mask}${printLayers(s.layers)}`;
    }
    case 'cache': {
      const delay = s.delay ? ` delay ${printExpr(s.delay)}` : '';
      return `cache ${s.kinds.map((k) => k.name).join(', ')} of ${printExpr(s.set)}${delay}${printLayers(s.layers)}`;
    }
    case 'refresh':
      return `refresh ${printExpr(s.set)} when ${printExpr(s.when)}${printLayers(s.layers)}`;
    case 'select':
      return `select ${s.name} = ${printExpr(s.set)} at ${printExpr(s.at)}${s.per ? ` per ${s.per.name}` : ''}`;
    case 'decode': {
      const by = s.by ? ` by ${printExpr(s.by)}` : '';
      const within = s.within ? ` in ${printExpr(s.within)}` : '';
      return `decode ${printExpr(s.rule)}${by}${within}${s.arShift ? ' ar_shift' : ''}`;
    }
    case 'let':
      return `let ${s.name} = ${printExpr(s.value)}`;
  }
}

const commentLines = (cs: readonly Comment[], indent: string): string[] =>
  cs.map((c) => `${indent}${c.text.trimEnd()}`);

export function printPlan(plan: Plan): string {
  const lines = [...commentLines(plan.leading, '')];
  lines.push(`plan ${plan.name}(${plan.params.map(printParam).join(', ')}) {`);
  for (const s of plan.body) {
    lines.push(...commentLines(s.leading, '  '));
    const trailing = s.trailing ? `  ${s.trailing.text.trimEnd()}` : '';
    lines.push(`  ${printStmtBody(s, '  ')}${trailing}`);
  }
  lines.push(...commentLines(plan.inner, '  '), '}');
  return lines.join('\n');
}

/** Canonical text of a plan file; `printFile(parse(printFile(f)))` equals `printFile(f)`. */
export function printFile(file: PlanFile): string {
  const parts = file.plans.map(printPlan);
  const tail = commentLines(file.trailing, '').join('\n');
  return `${[...parts, ...(tail ? [tail] : [])].join('\n\n')}\n`;
}
