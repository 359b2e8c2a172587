// The checker's cost is bounded in the size of the plan text too (issue 21): lets are evaluated
// once per expression that reads them, a plan's terms weigh on the simulation budget, and a plan
// past the plan-size limits is a located error, so that no plan of up to 1 MiB takes 2 s.
import { describe, expect, test } from 'vitest';
import { type CheckResult, checkSource } from '../../src/dsl/check.ts';
import { formatDiagnostics } from '../../src/dsl/diagnostics.ts';
import { maxStatements, maxTerms } from '../../src/dsl/typecheck.ts';

const maxInput = 1 << 20;

/** A plan over blocks of 32 that takes every step a block allows, with `body` after its refresh. */
const planWith = (body: readonly string[]): string =>
  [
    'plan big(block: int = 32 in [1, 4096]) {',
    '  blocks block',
    '  refresh all when block_start',
    ...body.map((s) => `  ${s}`),
    '  decode steps(block) in current_block',
    '}',
    '',
  ].join('\n');

const sets = ['current_block', 'prompt', 'before_block', 'after_block', 'decoded', 'masked'];
/** A union of n names grouped in halves, so that it nests only log2(n) levels. */
const grouped = (n: number, lo = 0): string =>
  n === 1
    ? (sets[lo % sets.length] as string)
    : `(${grouped(n >> 1, lo)} | ${grouped(n - (n >> 1), lo + (n >> 1))})`;
const repeated = (n: number, stmt: (k: number) => string) => Array.from({ length: n }, (_, k) => stmt(k));

/** `let a1 = current_block | prompt`, each next let the union of the one before with itself. */
const letChain = (n: number) => [
  'let a1 = current_block | prompt',
  ...repeated(n - 1, (k) => `let a${k + 2} = a${k + 1} | a${k + 1}`),
];

function timedCheck(text: string): CheckResult & { ms: number; printed: string[] } {
  expect(text.length).toBeLessThanOrEqual(maxInput);
  const file = { path: 'plan.kvp', text };
  const t0 = performance.now();
  const r = checkSource(file);
  const ms = performance.now() - t0;
  return { ...r, ms, printed: formatDiagnostics(file, r.diagnostics) };
}

const errors = (r: CheckResult) => r.diagnostics.filter((d) => d.severity === 'error');
/** The first line of the body statement with index `k` (0-based) of `planWith`. */
const lineOf = (k: number) => 4 + k;

describe('plans past the plan-size limits are a located error', () => {
  test.each([
    ['27,000 compute rules on different layers', repeated(27_000, (k) => `compute all on layer ${k}`)],
    ['58,000 cache statements', ['compute all', ...repeated(57_999, () => 'cache kv of all')]],
    [
      '31,000 refresh statements',
      ['compute current_block', 'cache kv of all', ...repeated(31_000, () => 'refresh all when block_start')],
    ],
  ])('%s', (_, body) => {
    const r = timedCheck(planWith(body));
    expect(r.ms).toBeLessThan(2000);
    expect(r.plans).toEqual([]);
    // The refresh before the body is the plan's second statement.
    const extra = maxStatements - 2;
    expect(r.printed).toHaveLength(1);
    expect(r.printed[0]).toMatch(
      new RegExp(
        `^plan\\.kvp:${lineOf(extra)}:3: error: plan 'big' has more than ${maxStatements} statements, the limit of a plan\\n`,
      ),
    );
  });

  test.each([4096, 30_000])('a grouped union of %i names', (n) => {
    const r = timedCheck(planWith(['compute all', 'cache kv of all', `attend ${grouped(n)}`]));
    expect(r.ms).toBeLessThan(2000);
    expect(r.plans).toEqual([]);
    expect(r.printed).toHaveLength(1);
    expect(r.printed[0]).toMatch(
      new RegExp(
        `^plan\\.kvp:${lineOf(2)}:3: error: plan 'big' has more than ${maxTerms} expression terms up to here, the limit of a plan\\n`,
      ),
    );
    expect(r.printed[0]).toContain(
      "= note: a let's expression counts again in each expression that reads it",
    );
  });

  test('a let read by many statements counts in each of them', () => {
    const big = grouped(1000);
    const r = timedCheck(
      planWith([`let big = ${big}`, 'compute all', ...repeated(4, () => 'cache kv of big')]),
    );
    expect(errors(r).map((d) => d.span.start.line)).toEqual([lineOf(3)]);
    expect(errors(r)[0]?.message).toContain(`more than ${maxTerms} expression terms`);
  });
});

describe('plans within the limits are checked in under 2 s', () => {
  test.each([
    ['a grouped union of 512 names', ['compute all', 'cache kv of all', `attend ${grouped(512)}`]],
    ['a grouped union of 2,000 names', ['compute all', 'cache kv of all', `attend ${grouped(2000)}`]],
    [
      '250 compute rules on different layers',
      ['cache kv of all', ...repeated(250, (k) => `compute all on layer ${k}`)],
    ],
    ['250 cache statements', ['compute all', ...repeated(250, () => 'cache kv of all')]],
    [
      '250 refresh statements',
      ['compute current_block', 'cache kv of all', ...repeated(250, () => 'refresh all when block_start')],
    ],
  ])('%s', (_, body) => {
    const r = timedCheck(planWith(body));
    expect(r.ms).toBeLessThan(2000);
    expect(errors(r)).toEqual([]);
    expect(r.plans).toHaveLength(1);
  });
});

describe('lets that read each other twice are evaluated once per expression', () => {
  const small = timedCheck(planWith(['compute all', 'cache kv of all', 'attend current_block | prompt']));
  /** The classification, with the chain's last let written out as the set it stands for. */
  const verdict = (r: CheckResult, n: number) => {
    const c = r.plans[0]?.classification;
    return c?.exact === false ? c.premise.replace(`\`a${n}\``, '`current_block | prompt`') : c;
  };

  // 24 is the most the expression-depth limit lets a chain of lets reach.
  test.each([22, 24])('a chain of %i lets comes to the verdict of the plan it stands for', (n) => {
    const r = timedCheck(planWith([...letChain(n), 'compute all', 'cache kv of all', `attend a${n}`]));
    expect(r.ms).toBeLessThan(2000);
    expect(errors(r)).toEqual([]);
    expect(verdict(r, n)).toEqual(verdict(small, n));
  });

  test('the typechecker follows each let once: in the decode candidates and constant arguments', () => {
    const n = 22;
    const body = [
      ...letChain(n),
      'let c1 = 1',
      ...repeated(n - 1, (k) => `let c${k + 2} = c${k + 1} * c${k + 1}`),
      'compute all',
      'cache kv of all',
      `attend a${n}`,
    ];
    const text = planWith(body).replace(
      'decode steps(block) in current_block',
      `decode steps(c${n}) in a${n}`,
    );
    const r = timedCheck(text);
    expect(r.ms).toBeLessThan(2000);
    const same = timedCheck(
      planWith(['compute all', 'cache kv of all', 'attend current_block | prompt']).replace(
        'decode steps(block) in current_block',
        'decode steps(1) in current_block | prompt',
      ),
    );
    expect(r.printed.filter((d) => !d.includes(': note:'))).toEqual(
      same.printed.filter((d) => !d.includes(': note:')),
    );
    expect(verdict(r, n)).toEqual(verdict(same, n));
  });
});
