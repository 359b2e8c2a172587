import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import type { Expr } from '../../src/dsl/ast.ts';
import { parsePlanText } from '../../src/dsl/front.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { type EvalEnv, evaluate, type Mask, members } from '../../src/dsl/semantics/evaluate.ts';
import { typecheckPlan } from '../../src/dsl/typecheck.ts';
import { type Type, typeWords } from '../../src/dsl/types.ts';

const types: readonly Type[] = ['set', 'score', 'pred', 'int', 'float', 'bool'];
const binaryOps = ['|', '&', '-', '+', '*', '/', '<', '<=', '>', '>=', '==', '!=', 'and', 'or'] as const;

// ---------------------------------------------------------------------------------------------
// The operator table of docs/language.md section 3, read as data.

type Form = { kind: 'binary'; op: string } | { kind: 'unary'; op: 'neg' | 'not' } | { kind: 'filter' };
const formKey = (f: Form): string => (f.kind === 'filter' ? 'filter' : `${f.kind} ${f.op}`);

/** `${form} ${operand types}` -> result type, for every row of the table, and the forms listed. */
function documentedOperators(): { results: Map<string, Type>; forms: Set<string> } {
  const doc = readFileSync(new URL('../../docs/language.md', import.meta.url), 'utf8');
  const section = doc.split('## 3. Types and operators')[1]?.split('## 4.')[0] ?? '';
  const table = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| ---'));
  const header = table.findIndex((l) => /^\| operator\s+\| operands/.test(l));
  expect(header, 'the operator table of section 3').toBeGreaterThanOrEqual(0);
  const rows = table.slice(header + 1).filter((l) => l.split(/(?<!\\)\|/).length === 6);
  const cells = (l: string) =>
    l
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((c) => c.trim().replaceAll('\\|', '|'));
  const typeList = (cell: string): Type[] =>
    cell.split('/').map((t) => {
      const name = t.trim().replaceAll('`', '') as Type;
      expect(types, `type '${t}' in the operator table`).toContain(name);
      return name;
    });
  const out = new Map<string, Type>();
  const listed = new Set<string>();
  let forms: Form[] = [];
  for (const row of rows) {
    const [opCell = '', operandCell = '', resultCell = ''] = cells(row);
    if (opCell !== '') {
      forms = [...opCell.matchAll(/`([^`]+)`/g)].map(([, code = '']) => {
        const binary = /^a (\S+) b$/.exec(code);
        if (binary?.[1]) return { kind: 'binary', op: binary[1] };
        if (code === '-a') return { kind: 'unary', op: 'neg' };
        if (code === 'not a') return { kind: 'unary', op: 'not' };
        expect(code, 'an operator form of the table').toBe('s[p]');
        return { kind: 'filter' };
      });
    }
    const operands = operandCell.split(',').map(typeList);
    const [result] = typeList(resultCell);
    const combos = operands.length === 1 ? (operands[0] ?? []).map((t) => [t]) : [];
    if (operands.length === 2)
      for (const l of operands[0] ?? []) for (const r of operands[1] ?? []) combos.push([l, r]);
    for (const form of forms) {
      listed.add(formKey(form));
      for (const combo of combos) {
        const key = `${formKey(form)} ${combo.join(' ')}`;
        expect(out.has(key), `${key} is listed once`).toBe(false);
        out.set(key, result as Type);
      }
    }
  }
  return { results: out, forms: listed };
}

// ---------------------------------------------------------------------------------------------
// The checker's verdict on an expression, end to end: parsed, and typed as the body of a `let`.

// One expression of each type that uses no operator except for `pred`, which has none without one.
const sample: Record<Type, string> = {
  set: 'masked',
  score: 'confidence',
  pred: '(confidence > 0.5)',
  int: 'block_step',
  float: '0.5',
  bool: 'block_start',
};
const wordsToType = new Map(Object.entries(typeWords).map(([t, w]) => [w, t as Type]));

function checkedType(expr: string): Type | undefined {
  const text = `plan t() {\n  let x = ${expr}\n  compute x\n  decode threshold(0.9)\n}\n`;
  const parsed = parsePlanText(text);
  expect(parsed.diagnostics, expr).toEqual([]);
  const plan = parsed.file?.plans[0];
  if (!plan) throw new Error(`no plan parsed from ${expr}`);
  const { diagnostics } = typecheckPlan(plan, new Map());
  if (diagnostics.some((d) => d.span.start.line === 2)) return undefined;
  const wrong = diagnostics.find((d) => d.message.startsWith('the compute set must be a token set'));
  if (!wrong) {
    expect(diagnostics, expr).toEqual([]);
    return 'set';
  }
  const words = /is (a [a-z -]+|an [a-z -]+)$/.exec(wrong.message)?.[1] ?? '';
  return wordsToType.get(words);
}

const exprOf = (form: Form, operands: readonly Type[]): string => {
  const [a = 'set', b = 'set'] = operands.map((t) => sample[t]);
  if (form.kind === 'filter') return `(${a})[${b}]`;
  if (form.kind === 'unary') return form.op === 'neg' ? `-(${a})` : `not (${a})`;
  return `(${a}) ${form.op} (${b})`;
};

describe('docs/language.md section 3 and the checker agree', () => {
  const { results: documented, forms: listed } = documentedOperators();
  const forms: Form[] = [
    ...binaryOps.map((op): Form => ({ kind: 'binary', op })),
    { kind: 'unary', op: 'neg' },
    { kind: 'unary', op: 'not' },
    { kind: 'filter' },
  ];
  const cases = forms.flatMap((form): { form: Form; operands: Type[] }[] =>
    form.kind === 'unary'
      ? types.map((t) => ({ form, operands: [t] }))
      : types.flatMap((l) => types.map((r) => ({ form, operands: [l, r] }))),
  );

  test('the table lists the operators the grammar has', () => {
    expect([...listed].sort()).toEqual(forms.map(formKey).sort());
  });

  test('every operator and operand types: accepted with the documented type, or rejected', () => {
    let accepted = 0;
    for (const { form, operands } of cases) {
      const key = `${formKey(form)} ${operands.join(' ')}`;
      const want = documented.get(key);
      expect(checkedType(exprOf(form, operands)), key).toBe(want);
      if (want) accepted++;
    }
    // The table's rows, expanded: any drift in either direction changes one of these.
    expect(accepted).toBe(documented.size);
  });
});

// ---------------------------------------------------------------------------------------------
// Evaluation of score arithmetic, negation and comparisons.

function envFor(
  text: string,
  scores: Record<string, number[]>,
): { env: EvalEnv; expr: (name: string) => Expr } {
  const parsed = parsePlanText(text);
  const plan = parsed.file?.plans[0];
  if (!plan) throw new Error(parsed.diagnostics.map((d) => d.message).join('\n'));
  const { typed, diagnostics } = typecheckPlan(plan, new Map());
  expect(diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  if (!typed) throw new Error('not typed');
  const canvas = new Canvas(2, 4, 4);
  const env: EvalEnv = {
    canvas,
    bindings: typed.bindings,
    hooks: {
      modelScore: (name) => Float64Array.from(scores[name] ?? []),
      selection: () => new Uint8Array(canvas.length),
      targets: () => new Uint8Array(canvas.length),
      uncached: () => new Uint8Array(canvas.length),
      dirty: () => 0,
      attnSimilarity: () => 0,
      afterDrift: () => false,
      measuredAt: () => new Float64Array(0),
    },
  };
  const expr = (name: string) => {
    const b = typed.bindings.get(name);
    if (b?.kind !== 'let') throw new Error(`no let ${name}`);
    return b.expr;
  };
  return { env, expr };
}

describe('score arithmetic evaluates per position', () => {
  const confidence = [0.9, 0.8, 0.5, 0.7, 0.7, 0.2];
  const margin = [0.1, 0.0, 0.5, 0.0, 0.2, 0.4];
  const entropy = [0.3, 0.9, 0.1, 0.5, 0.2, 0.8];
  const lets = [
    'let sum = confidence + margin',
    'let dpad = confidence - 0.25 * position',
    'let ratio = confidence / margin',
    'let scaled = 2 * confidence',
    'let neg = -entropy',
    'let cmp = margin < confidence',
    'let eq = (block_step == 0) == block_start',
    'let firsts = topk(all, dpad, 2)',
    'let low = topk(all, entropy, 2)',
    'let negTop = topk(all, -entropy, 2)',
    'let named = entropy',
    'let lowNamed = topk(all, named, 2)',
  ];
  const text = `plan t() {\n${lets.map((l) => `  ${l}\n`).join('')}  decode threshold(0.9)\n}\n`;
  const { env, expr } = envFor(text, { confidence, margin, entropy });
  const value = (name: string) => evaluate(expr(name), env);
  const rounded = (v: unknown) => Array.from(v as Float64Array, (x) => Math.round(x * 1e9) / 1e9);

  test('+, - and * with scores and numbers, in either order', () => {
    expect(rounded(value('sum'))).toEqual([1, 0.8, 1, 0.7, 0.9, 0.6]);
    expect(rounded(value('dpad'))).toEqual([0.9, 0.55, 0, -0.05, -0.3, -1.05]);
    expect(rounded(value('scaled'))).toEqual([1.8, 1.6, 1, 1.4, 1.4, 0.4]);
  });
  test('division is 0 wherever the divisor is 0, never NaN or infinite', () => {
    expect(rounded(value('ratio'))).toEqual([9, 0, 1, 0, 3.5, 0.5]);
  });
  test('negation of a score, and score-vs-score comparison as a predicate', () => {
    expect(rounded(value('neg'))).toEqual(entropy.map((x) => -x));
    expect(Array.from(value('cmp') as Mask)).toEqual([1, 1, 0, 1, 1, 0]);
  });
  test('bool == bool is a step condition', () => {
    expect(value('eq')).toBe(true);
  });
  test('a score built with arithmetic ranks highest first: DPad prefers early confident rows', () => {
    expect(members(value('firsts') as Mask)).toEqual([0, 1]);
  });
  test('entropy, and a let naming it, rank lowest first; -entropy ranks highest first, the same rows', () => {
    expect(members(value('low') as Mask)).toEqual([2, 4]);
    expect(members(value('lowNamed') as Mask)).toEqual([2, 4]);
    expect(members(value('negTop') as Mask)).toEqual([2, 4]);
  });
});
