// No input reaches a recursion limit (issue 21): an expression nests at most maxExpressionDepth
// levels, and a deeper one is a located error (exit 1) found before anything recursive runs, as
// the parser's error recovery, the checker and the evaluator all recurse on expressions.
import { writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { maxExpressionDepth, parsePlanText } from '../../src/dsl/front.ts';
import { typecheckPlan } from '../../src/dsl/typecheck.ts';
import { fuzzRuns } from '../fuzz/runs.ts';
import { runCli, tempFiles } from '../support/cli.ts';

const dir = tempFiles({});
afterAll(() => dir.cleanup());
const path = dir.path('plan.kvp');

/** Runs `kvplan check` on the text or bytes, timed, with the temporary path shown as plan.kvp. */
async function check(content: string | Uint8Array) {
  writeFileSync(path, content);
  const t0 = performance.now();
  const r = await runCli(['check', path]);
  return { code: r.code, ms: performance.now() - t0, stderr: r.stderr.replaceAll(path, 'plan.kvp') };
}

/** A small plan, quick to simulate, with `expr` as its key set on line 6, column 10. */
const withKeys = (expr: string) =>
  [
    'plan deep(block: int = 4 in [1, 8]) {',
    '  blocks block',
    '  refresh all when block_start',
    '  compute current_block',
    '  cache kv of all',
    `  attend ${expr}`,
    '  decode steps(2) in current_block',
    '}',
    '',
  ].join('\n');

const chain = (n: number, op = '|') => Array.from({ length: n }, () => 'current_block').join(` ${op} `);
const nest = (n: number, open: string, close: string, inner = 'current_block') =>
  open.repeat(n) + inner + close.repeat(n);
const limit = maxExpressionDepth;
const tooDeep = (line: number, col: number, nesting: number) =>
  `plan.kvp:${line}:${col}: error: expression too deep: nesting ${nesting} exceeds the limit of ${limit}`;

describe('deep expressions are a located error', () => {
  test.each([
    // The caret is under the first level past the limit: a bracket, a `not`, a `-`, or the
    // operator node that holds the first terms of a chain.
    ['a union of 3000 terms', chain(3000), tooDeep(6, 10, 2999)],
    ['500 nested parentheses', nest(500, '(', ')'), tooDeep(6, 10 + limit, 500)],
    ['3000 postfix filters', `all${'[age > 1]'.repeat(3000)}`, tooDeep(6, 10, 3001)],
    ['3000 nested filters', nest(3000, 'all[', ']', 'age > 1'), tooDeep(6, 13 + 4 * limit, 3000)],
    ['1000 nested calls', nest(1000, 'window(', ', 1)'), tooDeep(6, 16 + 7 * limit, 1000)],
    ['3000 negations', `current_block[${'not '.repeat(3000)}age > 1]`, tooDeep(6, 20 + 4 * limit, 3001)],
    ['3000 unary minuses', `topk(all, ${'-'.repeat(3000)}age, 2)`, tooDeep(6, 19 + limit, 3001)],
    // Still open at the decode rule, whose call opens one more.
    ['1000 parentheses never closed', '('.repeat(1000), tooDeep(6, 10 + limit, 1001)],
  ])('%s', async (_, expr, message) => {
    const r = await check(withKeys(expr));
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(message);
    expect(r.ms).toBeLessThan(2000);
  });

  test('up to the limit is accepted, one more level is not', async () => {
    const accepted = [
      chain(limit + 1),
      chain(limit + 1, '&'),
      nest(limit, '(', ')'),
      nest(limit, 'window(', ', 1)'),
      `all${'[age > 1]'.repeat(limit - 1)}`,
      // Grouping keeps a long chain shallow: 64 terms, 6 levels.
      Array.from({ length: 6 }).reduce<string>((e) => `(${e}) | (${e})`, 'current_block'),
    ];
    for (const expr of accepted) expect((await check(withKeys(expr))).code).toBe(0);
    const rejected = [
      chain(limit + 2),
      nest(limit + 1, '(', ')'),
      nest(limit + 1, 'window(', ', 1)'),
      `all${'[age > 1]'.repeat(limit)}`,
    ];
    for (const expr of rejected)
      expect((await check(withKeys(expr))).stderr).toContain('expression too deep');
  });

  test('the message, with its caret under the first level past the limit', async () => {
    expect((await check(withKeys(nest(limit + 1, '(', ')')))).stderr).toMatchInlineSnapshot(`
      "plan.kvp:6:34: error: expression too deep: nesting 25 exceeds the limit of 24
        |
      6 |   attend (((((((((((((((((((((((((current_block)))))))))))))))))))))))))
        |                                  ^
      "
    `);
  });

  test('a name defined by let or select counts as deep as its definition, and is reported once', async () => {
    const lets = Array.from(
      { length: 40 },
      (_, i) => `  let s${i} = ${i === 0 ? 'all' : `s${i - 1}`} | prompt`,
    );
    const text = withKeys('s39').replace('  attend', `${lets.join('\n')}\n  attend`);
    const r = await check(text);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatchInlineSnapshot(`
      "plan.kvp:30:13: error: expression too deep: nesting 25 exceeds the limit of 24
         |
      30 |   let s24 = s23 | prompt
         |             ^^^
         = note: \`s23\` counts as deep as its definition at line 29
      "
    `);
  });

  // The front end and the type checker; the simulation bounds its own work (check-bounded.test.ts).
  test('a 1 MiB plan is parsed and type-checked within 2 s: 64,000 terms, 29,000 clashing rules', () => {
    const union = withKeys(chain(64_000));
    const rules = withKeys('all').replace(
      '  compute current_block\n',
      '  compute current_block on layer 0\n'.repeat(29_000),
    );
    for (const text of [union, rules]) expect(text.length).toBeLessThan(1 << 20);
    let t0 = performance.now();
    expect(parsePlanText(union).diagnostics[0]?.message).toBe(
      `expression too deep: nesting 63999 exceeds the limit of ${limit}`,
    );
    expect(performance.now() - t0).toBeLessThan(2000);
    t0 = performance.now();
    const plan = parsePlanText(rules).file?.plans[0];
    const clashes = plan ? typecheckPlan(plan, new Map()).diagnostics : [];
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(clashes).toHaveLength(29_000 - 1);
    expect(clashes[0]?.message).toMatch(/^contradictory rules: .* at line 4 both apply to layer 0$/);
  });
});

/** An expression with the two nestings the limit bounds (docs/language.md section 2). */
interface Nested {
  readonly text: string;
  /** How tightly it binds: 9 postfix and atoms, 8 unary minus, 6 `-`, 5 `&`, 4 `|`, 2 `not`. */
  readonly prec: number;
  /** The most brackets and pending prefix operators open at one of its tokens. */
  readonly open: number;
  /** The most operators, calls and filters on one path of its tree. */
  readonly tree: number;
}

const precOf: Record<string, number> = { '-': 6, '&': 5, '|': 4 };
const atom = (text: string): Nested => ({ text, prec: 9, open: 0, tree: 0 });
const paren = (e: Nested): Nested => ({ text: `(${e.text})`, prec: 9, open: e.open + 1, tree: e.tree });
/** `e` as an operand that must bind at least as tightly as `prec`. */
const operand = (e: Nested, prec: number): Nested => (e.prec < prec ? paren(e) : e);
const binary = (l: Nested, op: string, r: Nested): Nested => {
  const p = precOf[op] as number;
  const [a, b] = [operand(l, p), operand(r, p + 1)];
  return {
    text: `${a.text} ${op} ${b.text}`,
    prec: p,
    open: Math.max(a.open, b.open),
    tree: 1 + Math.max(a.tree, b.tree),
  };
};

type Wrap =
  | { readonly kind: 'paren' | 'filter' | 'call' | 'neg' | 'not' }
  | { readonly kind: 'op'; readonly op: string; readonly other: string; readonly left: boolean };

function wrap(e: Nested, w: Wrap): Nested {
  switch (w.kind) {
    case 'paren':
      return paren(e);
    case 'op':
      return w.left ? binary(e, w.op, atom(w.other)) : binary(atom(w.other), w.op, e);
    case 'filter': {
      const set = operand(e, 9);
      return {
        text: `${set.text}[age > 1]`,
        prec: 9,
        open: Math.max(set.open, 1),
        tree: 1 + Math.max(set.tree, 1),
      };
    }
    case 'call':
      return { text: `window(${e.text}, 1)`, prec: 9, open: e.open + 1, tree: e.tree + 1 };
    case 'neg': {
      const x = operand(e, 8);
      return { text: `-${x.text}`, prec: 8, open: x.open + 1, tree: x.tree + 1 };
    }
    case 'not':
      return { text: `not ${e.text}`, prec: 2, open: e.open + 1, tree: e.tree + 1 };
  }
}

const setName = fc.constantFrom('current_block', 'prompt', 'masked', 'decoded', 'all', 'before_block');
const setOp = fc.constantFrom('|', '&', '-');
/** A long, shallow start: up to 200 names grouped pairwise with parentheses. */
const grouped = fc
  .array(fc.tuple(setName, setOp), { minLength: 1, maxLength: 200, size: 'max' })
  .map((terms) => {
    let level = terms.map(([name, op]) => ({ e: atom(name), op }));
    while (level.length > 1) {
      const next: typeof level = [];
      for (let i = 0; i < level.length; i += 2) {
        const [l, r] = [level[i], level[i + 1]];
        if (l) next.push(r ? { e: binary(l.e, l.op, r.e), op: r.op } : l);
      }
      level = next;
    }
    return level[0]?.e ?? atom('all');
  });
const wrapper: fc.Arbitrary<Wrap> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('op' as const), op: setOp, other: setName, left: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.constantFrom<Wrap>({ kind: 'paren' }, { kind: 'filter' }, { kind: 'call' }) },
  { weight: 1, arbitrary: fc.constantFrom<Wrap>({ kind: 'neg' }, { kind: 'not' }) },
);
/** Mostly around the limit, sometimes far past it. */
const deepExpression = fc
  .tuple(
    fc.oneof(setName.map(atom), grouped),
    fc.oneof(
      { weight: 4, arbitrary: fc.array(wrapper, { maxLength: 3 * limit, size: 'max' }) },
      { weight: 1, arbitrary: fc.array(wrapper, { maxLength: 2000, size: 'max' }) },
    ),
  )
  .map(([start, wraps]) => wraps.reduce(wrap, start));

describe('on random input, check never fails internally and answers within 2 s', () => {
  const answers = (r: { code: number; ms: number }) => {
    expect([0, 1]).toContain(r.code);
    expect(r.ms).toBeLessThan(2000);
  };

  test('random bytes and text', async () => {
    const anything = fc.oneof(
      fc.uint8Array({ maxLength: 4096 }),
      fc.string({ unit: 'binary', maxLength: 2000 }),
      fc
        .array(fc.constantFrom('(', ')', '[', ']', 'not ', '-', 'all', ' | ', ', ', 'window('), {
          maxLength: 3000,
        })
        .map((parts) => withKeys(parts.join(''))),
    );
    for (const { seed, numRuns } of fuzzRuns(150))
      await fc.assert(
        fc.asyncProperty(anything, async (content) => answers(await check(content))),
        { seed, numRuns },
      );
  });

  test('random deep and long expressions in a plan: too deep exactly when past the limit', async () => {
    const seen = { within: 0, past: 0 };
    for (const { seed, numRuns } of fuzzRuns(80))
      await fc.assert(
        fc.asyncProperty(deepExpression, async (e) => {
          const r = await check(withKeys(e.text));
          answers(r);
          const within = e.open <= limit && e.tree <= limit;
          if (within) seen.within++;
          else seen.past++;
          expect(r.stderr.includes('expression too deep')).toBe(!within);
        }),
        { seed, numRuns },
      );
    expect(seen.within).toBeGreaterThanOrEqual(10);
    expect(seen.past).toBeGreaterThanOrEqual(10);
  });
});
