import fc from 'fast-check';
import type {
  BinaryOp,
  BoolLit,
  Call,
  Comment,
  Expr,
  KeySpec,
  LayerScope,
  NameRef,
  NumberLit,
  Param,
  Plan,
  PlanFile,
  Segment,
  Stmt,
} from '../../src/dsl/ast.ts';
import { isKeyword, keywords } from '../../src/dsl/lexer.ts';
import { S } from './ast.ts';

/** Every keyword of the language, taken from the lexer so that a new keyword is fuzzed too. */
export const keywordList: readonly string[] = Object.keys(keywords);

export const binaryOps: readonly BinaryOp[] = [
  '|',
  '&',
  '-',
  '+',
  '*',
  '/',
  '<',
  '<=',
  '>',
  '>=',
  '==',
  '!=',
  'and',
  'or',
];
const cmpOps = ['==', '!=', '<', '<=', '>', '>='] as const;

/** Identifiers that the lexer does not take for keywords (keyword prefixes such as `plan_x` included). */
export const identifier: fc.Arbitrary<string> = fc
  .oneof(
    fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,7}$/),
    fc.constantFrom(...keywordList).map((k) => `${k}_1`),
    fc.constantFrom('a', 'b', 'x', 'tau', 'block', 'current_block', 'prompt', 'all'),
  )
  .filter((s) => !isKeyword(s));

const nameRef: fc.Arbitrary<NameRef> = identifier.map((name) => ({ kind: 'name', name, span: S }));

const intLit = (sign: 1 | -1): fc.Arbitrary<NumberLit> =>
  fc
    .maxSafeNat()
    .filter((n) => sign === 1 || n !== 0)
    .map((n) => ({ kind: 'number', value: sign * n, isInt: true, span: S }));

// Any finite double; String() of a double parses back to the same double, and integral floats
// print with a `.0` so that they stay floats.
const floatLit = (sign: 1 | -1): fc.Arbitrary<NumberLit> =>
  fc
    .oneof(
      fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }),
      fc.integer({ min: 0, max: 10_000 }).map((n) => n / 100),
    )
    .filter((n) => Number.isFinite(n) && !Object.is(n, -0) && (sign === 1 || n !== 0))
    .map((n) => ({ kind: 'number', value: sign * n, isInt: false, span: S }));

/** Literals inside expressions are non-negative: `-x` is a unary node there. */
const exprNumber: fc.Arbitrary<NumberLit> = fc.oneof(intLit(1), floatLit(1));
/** Parameter defaults and range bounds may be negative literals. */
const signedNumber: fc.Arbitrary<NumberLit> = fc.oneof(intLit(1), floatLit(1), intLit(-1), floatLit(-1));
const boolLit: fc.Arbitrary<BoolLit> = fc.boolean().map((value) => ({ kind: 'bool', value, span: S }));

const { expr: exprArb, call: callArb } = fc.letrec<{ expr: Expr; call: Call }>((tie) => ({
  expr: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    exprNumber,
    boolLit,
    nameRef,
    tie('call'),
    fc.record({
      kind: fc.constant('binary' as const),
      op: fc.constantFrom(...binaryOps),
      left: tie('expr'),
      right: tie('expr'),
      span: fc.constant(S),
    }),
    fc.record({
      kind: fc.constant('unary' as const),
      op: fc.constantFrom('not' as const, 'neg' as const),
      operand: tie('expr'),
      span: fc.constant(S),
    }),
    fc.record({
      kind: fc.constant('filter' as const),
      set: tie('expr'),
      predicate: tie('expr'),
      span: fc.constant(S),
    }),
  ),
  call: fc.record({
    kind: fc.constant('call' as const),
    callee: nameRef,
    args: fc.array(tie('expr'), { maxLength: 3 }),
    span: fc.constant(S),
  }),
}));
export const expr: fc.Arbitrary<Expr> = exprArb as fc.Arbitrary<Expr>;
const call = callArb as fc.Arbitrary<Call>;

const layerScope: fc.Arbitrary<LayerScope> = fc.oneof(
  fc.record({
    kind: fc.constant('cmp' as const),
    op: fc.constantFrom(...cmpOps),
    bound: expr,
    span: fc.constant(S),
  }),
  fc.record({ kind: fc.constant('range' as const), lo: expr, hi: expr, span: fc.constant(S) }),
);
const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.option(arb, { nil: undefined, freq: 2 });

/** Comment text as the lexer keeps it: `#` or `//`, no line break, no trailing blanks. */
export const commentText: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('#', '//', '# ', '// '), fc.string({ maxLength: 20 }))
  .map(([mark, body]) => `${mark}${body.replace(/[\r\n]/g, ' ')}`.trimEnd());
const comment: fc.Arbitrary<Comment> = commentText.map((text) => ({ text, span: S }));
const comments = (withComments: boolean): fc.Arbitrary<Comment[]> =>
  withComments ? fc.array(comment, { maxLength: 2 }) : fc.constant([]);

const segment: fc.Arbitrary<Segment> = fc.record({
  name: identifier,
  nameSpan: fc.constant(S),
  keys: expr,
  reusedUntil: optional(expr),
  span: fc.constant(S),
});
const keySpec: fc.Arbitrary<KeySpec> = fc.oneof(
  expr.map((set): KeySpec => ({ kind: 'keys', set })),
  fc.array(segment, { minLength: 1, maxLength: 3 }).map(
    (segments): KeySpec => ({
      kind: 'split',
      segments,
      span: S,
    }),
  ),
);

const stmt = (withComments: boolean): fc.Arbitrary<Stmt> => {
  const base = {
    span: fc.constant(S),
    leading: comments(withComments),
    trailing: withComments ? optional(comment) : fc.constant(undefined),
  };
  return fc.oneof(
    fc.record({ kind: fc.constant('blocks' as const), length: expr, ...base }),
    fc.record({ kind: fc.constant('compute' as const), set: expr, layers: optional(layerScope), ...base }),
    fc.record({
      kind: fc.constant('attend' as const),
      keys: keySpec,
      mask: optional(nameRef),
      layers: optional(layerScope),
      ...base,
    }),
    fc.record({
      kind: fc.constant('cache' as const),
      kinds: fc.array(nameRef, { minLength: 1, maxLength: 3 }),
      set: expr,
      delay: optional(expr),
      layers: optional(layerScope),
      ...base,
    }),
    fc.record({
      kind: fc.constant('refresh' as const),
      set: expr,
      when: expr,
      layers: optional(layerScope),
      ...base,
    }),
    fc.record({
      kind: fc.constant('select' as const),
      name: identifier,
      nameSpan: fc.constant(S),
      set: expr,
      at: expr,
      per: optional(nameRef),
      ...base,
    }),
    fc.record({
      kind: fc.constant('decode' as const),
      rule: call,
      by: optional(expr),
      within: optional(expr),
      arShift: fc.boolean(),
      ...base,
    }),
    fc.record({
      kind: fc.constant('let' as const),
      name: identifier,
      nameSpan: fc.constant(S),
      value: expr,
      ...base,
    }),
  ) as fc.Arbitrary<Stmt>;
};

const param: fc.Arbitrary<Param> = fc.record({
  kind: fc.constant('param' as const),
  name: identifier,
  nameSpan: fc.constant(S),
  declaredType: optional(fc.constantFrom('int' as const, 'float' as const, 'bool' as const)),
  defaultValue: fc.oneof(signedNumber, boolLit),
  range: optional(fc.record({ lo: signedNumber, hi: signedNumber, span: fc.constant(S) })),
  span: fc.constant(S),
});

const plan = (withComments: boolean): fc.Arbitrary<Plan> =>
  fc.record({
    kind: fc.constant('plan' as const),
    name: identifier,
    nameSpan: fc.constant(S),
    params: fc.array(param, { maxLength: 4 }),
    body: fc.array(stmt(withComments), { maxLength: 6 }),
    leading: comments(withComments),
    inner: comments(withComments),
    span: fc.constant(S),
  });

/** Random well-formed plan files (syntactically; the checker may still reject them). */
export const planFile: fc.Arbitrary<PlanFile> = fc
  .boolean()
  .chain((withComments) =>
    fc.record({ plans: fc.array(plan(withComments), { maxLength: 3 }), trailing: comments(withComments) }),
  );
