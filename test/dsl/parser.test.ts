import { describe, expect, it } from 'vitest';
import type { AttendStmt, CacheStmt, DecodeStmt, Expr, SelectStmt } from '../../src/dsl/ast.ts';
import { parsePlanText } from '../../src/dsl/front.ts';
import { expr, onlyPlan, onlyStmt, parseOk, sexpr, stripSpans } from '../support/ast.ts';

const at = (line: number, col: number) => expect.objectContaining({ line, col });

describe('plans and parameters', () => {
  it('parses an empty plan with its name and span', () => {
    const plan = onlyPlan('plan empty() {\n}\n');
    expect(plan.name).toBe('empty');
    expect(plan.params).toEqual([]);
    expect(plan.body).toEqual([]);
    expect(plan.span.start).toEqual({ offset: 0, line: 1, col: 1 });
    expect(plan.span.end).toEqual({ offset: 16, line: 2, col: 2 });
    expect(plan.nameSpan.start).toEqual(at(1, 6));
    expect(plan.nameSpan.end).toEqual(at(1, 11));
  });

  it('parses several plans in one file', () => {
    const file = parseOk('plan a() {}\nplan b() {}\n\nplan c() {}');
    expect(file.plans.map((p) => p.name)).toEqual(['a', 'b', 'c']);
    expect(file.plans[2]?.span.start).toEqual(at(4, 1));
  });

  it('parses parameter defaults, declared types and ranges, negative literals included', () => {
    const text =
      'plan p(block = 32, tau: float = 0.9 in [0.0, 1.0], on_: bool = true, d: int = -2 in [-8, -1], f = -1.5) {}';
    const plan = onlyPlan(text);
    expect(stripSpans(plan.params)).toEqual([
      { kind: 'param', name: 'block', defaultValue: { kind: 'number', value: 32, isInt: true } },
      {
        kind: 'param',
        name: 'tau',
        declaredType: 'float',
        defaultValue: { kind: 'number', value: 0.9, isInt: false },
        range: {
          lo: { kind: 'number', value: 0, isInt: false },
          hi: { kind: 'number', value: 1, isInt: false },
        },
      },
      { kind: 'param', name: 'on_', declaredType: 'bool', defaultValue: { kind: 'bool', value: true } },
      {
        kind: 'param',
        name: 'd',
        declaredType: 'int',
        defaultValue: { kind: 'number', value: -2, isInt: true },
        range: {
          lo: { kind: 'number', value: -8, isInt: true },
          hi: { kind: 'number', value: -1, isInt: true },
        },
      },
      { kind: 'param', name: 'f', defaultValue: { kind: 'number', value: -1.5, isInt: false } },
    ]);
    const d = plan.params[3];
    // The negative literal's span starts at the minus sign; the parameter's ends at the range's `]`.
    const col = (needle: string) => text.indexOf(needle) + 1;
    expect(d?.defaultValue.span.start).toEqual(at(1, col('-2 in')));
    expect(d?.defaultValue.span.end).toEqual(at(1, col('-2 in') + 2));
    expect(d?.span.start).toEqual(at(1, col('d: int')));
    expect(d?.span.end).toEqual(at(1, col(', f =')));
  });

  it('tells integer from float literals, exponents included', () => {
    const plan = onlyPlan('plan p(a = 1, b = 1.0, c = 1e3, d = 2.5E-2) {}');
    expect(plan.params.map((p) => stripSpans(p.defaultValue))).toEqual([
      { kind: 'number', value: 1, isInt: true },
      { kind: 'number', value: 1, isInt: false },
      { kind: 'number', value: 1000, isInt: false },
      { kind: 'number', value: 0.025, isInt: false },
    ]);
  });
});

describe('statements', () => {
  it('blocks', () => {
    const s = onlyStmt('blocks block * 2');
    expect(s.kind).toBe('blocks');
    if (s.kind !== 'blocks') return;
    expect(sexpr(s.length)).toBe('(* block 2)');
    expect(s.span.start).toEqual(at(2, 3));
    expect(s.span.end).toEqual(at(2, 19));
  });

  it('compute with each kind of layer scope', () => {
    const one = onlyStmt('compute current_block on layer 0');
    expect(stripSpans(one)).toMatchObject({
      kind: 'compute',
      set: { kind: 'name', name: 'current_block' },
      layers: { kind: 'cmp', op: '==', bound: { kind: 'number', value: 0 } },
    });
    expect(one.span.end).toEqual(at(2, 35));
    const from = onlyStmt('compute all on layers >= l + 1');
    expect(from.kind === 'compute' && from.layers).toMatchObject({ kind: 'cmp', op: '>=' });
    if (from.kind === 'compute' && from.layers?.kind === 'cmp')
      expect(sexpr(from.layers.bound)).toBe('(+ l 1)');
    const range = onlyStmt('compute all on layers 2..n - 1');
    expect(stripSpans(range)).toMatchObject({
      layers: {
        kind: 'range',
        lo: { kind: 'number', value: 2, isInt: true },
        hi: { kind: 'binary', op: '-', left: { name: 'n' }, right: { value: 1 } },
      },
    });
    for (const op of ['==', '!=', '<', '<=', '>', '>='] as const) {
      const s = onlyStmt(`compute all on layers ${op} 3`);
      expect(s.kind === 'compute' && s.layers).toMatchObject({ kind: 'cmp', op });
    }
  });

  it('attend with a key set, a mask and a layer scope', () => {
    const s = onlyStmt('attend prompt | before_block mask block_causal on layers < 4') as AttendStmt;
    expect(s.kind).toBe('attend');
    expect(s.keys.kind).toBe('keys');
    if (s.keys.kind === 'keys') expect(sexpr(s.keys.set)).toBe('(| prompt before_block)');
    expect(s.mask?.name).toBe('block_causal');
    expect(s.mask?.span.start).toEqual(at(2, 37));
    expect(s.layers).toMatchObject({ kind: 'cmp', op: '<' });
  });

  it('attend split ... merge lse with a reused segment', () => {
    const s = onlyStmt(
      'attend split {\n    ext = prompt | before_block reused until dirty(current_block) >= r,\n    inn = current_block\n  } merge lse',
    ) as AttendStmt;
    expect(s.keys.kind).toBe('split');
    if (s.keys.kind !== 'split') return;
    const [ext, inn] = s.keys.segments;
    expect(ext?.name).toBe('ext');
    expect(sexpr(ext?.keys as Expr)).toBe('(| prompt before_block)');
    expect(sexpr(ext?.reusedUntil as Expr)).toBe('(>= (call dirty current_block) r)');
    expect(ext?.nameSpan.start).toEqual(at(3, 5));
    expect(inn?.name).toBe('inn');
    expect(inn?.reusedUntil).toBeUndefined();
    expect(inn?.span.start).toEqual(at(4, 5));
    // The statement ends at `lse`, three lines below `attend`.
    expect(s.span.start).toEqual(at(2, 3));
    expect(s.span.end).toEqual(at(5, 14));
  });

  it('cache with several kinds, a delay and a layer scope', () => {
    const s = onlyStmt('cache k, v of decoded[age >= 1] delay 1 on layers 0..3') as CacheStmt;
    expect(s.kinds.map((k) => k.name)).toEqual(['k', 'v']);
    expect(sexpr(s.set)).toBe('(filter decoded (>= age 1))');
    expect(sexpr(s.delay as Expr)).toBe('1');
    expect(s.layers?.kind).toBe('range');
  });

  it('refresh', () => {
    const s = onlyStmt('refresh all when block_start or every(8)');
    expect(s.kind).toBe('refresh');
    if (s.kind !== 'refresh') return;
    expect(sexpr(s.set)).toBe('all');
    expect(sexpr(s.when)).toBe('(or block_start (call every 8))');
    expect(s.layers).toBeUndefined();
  });

  it('select with per', () => {
    const s = onlyStmt(
      'select keep = topk(prompt | before_block, k) at block_start per kv_head',
    ) as SelectStmt;
    expect(s.name).toBe('keep');
    expect(s.nameSpan.start).toEqual(at(2, 10));
    expect(sexpr(s.set)).toBe('(call topk (| prompt before_block) k)');
    expect(sexpr(s.at)).toBe('block_start');
    expect(s.per?.name).toBe('kv_head');
  });

  it('decode with by, in and ar_shift, and without them', () => {
    const s = onlyStmt('decode threshold(tau) by confidence in current_block ar_shift') as DecodeStmt;
    expect(sexpr(s.rule)).toBe('(call threshold tau)');
    expect(sexpr(s.by as Expr)).toBe('confidence');
    expect(sexpr(s.within as Expr)).toBe('current_block');
    expect(s.arShift).toBe(true);
    expect(s.span.end).toEqual(at(2, 64));
    const bare = onlyStmt('decode topk(1)') as DecodeStmt;
    expect(bare.by).toBeUndefined();
    expect(bare.within).toBeUndefined();
    expect(bare.arShift).toBe(false);
  });

  it('let', () => {
    const s = onlyStmt('let ext = prompt | before_block');
    expect(stripSpans(s)).toMatchObject({ kind: 'let', name: 'ext', value: { kind: 'binary', op: '|' } });
  });
});

describe('expressions', () => {
  it.each([
    ['a | b & c - d', '(| a (& b (- c d)))'],
    ['a - b - c', '(- (- a b) c)'],
    ['a * b + c / d', '(+ (* a b) (/ c d))'],
    ['(a | b) & c', '(& (| a b) c)'],
    ['a < b | c', '(< a (| b c))'],
    ['not a and b or c', '(or (and (not a) b) c)'],
    ['a or b and c', '(or a (and b c))'],
    ['not a == b', '(not (== a b))'],
    ['-a[p]', '(neg (filter a p))'],
    ['-2 * x', '(* (neg 2) x)'],
    ['--x', '(neg (neg x))'],
    ['f()', '(call f)'],
    ['topk(prompt, 8)[age > 1][true]', '(filter (filter (call topk prompt 8) (> age 1)) true)'],
    ['masked[confidence >= 0.5 and not decoded]', '(filter masked (and (>= confidence 0.5f) (not decoded)))'],
    ['x != 1.25', '(!= x 1.25f)'],
  ])('%s', (text, tree) => {
    expect(sexpr(expr(text))).toBe(tree);
  });

  it('keeps negative literals in expressions as a negation of a non-negative literal', () => {
    expect(stripSpans(expr('-3'))).toEqual({
      kind: 'unary',
      op: 'neg',
      operand: { kind: 'number', value: 3, isInt: true },
    });
  });

  it('gives binary and filter nodes spans from their first to their last token', () => {
    const e = expr('a | b & c - d');
    // `let x = ` takes 8 columns after the 2-space indent.
    expect(e.span.start).toEqual(at(2, 11));
    expect(e.span.end).toEqual(at(2, 24));
    if (e.kind !== 'binary') throw new Error('not binary');
    expect(e.right.span.start).toEqual(at(2, 15));
    const f = expr('decoded[age > 1]');
    expect(f.span.end).toEqual(at(2, 27));
  });
});

describe('comments', () => {
  it('attaches leading, trailing, inner and file-trailing comments', () => {
    const file = parseOk(
      [
        '# about p',
        'plan p() {',
        '  // before compute',
        '  compute all  # trailing',
        '  # inner',
        '}',
        '# end of file',
      ].join('\n'),
    );
    const plan = file.plans[0];
    expect(plan?.leading.map((c) => c.text)).toEqual(['# about p']);
    expect(plan?.body[0]?.leading.map((c) => c.text)).toEqual(['// before compute']);
    expect(plan?.body[0]?.trailing?.text).toBe('# trailing');
    expect(plan?.body[0]?.trailing?.span.start).toEqual(at(4, 16));
    expect(plan?.inner.map((c) => c.text)).toEqual(['# inner']);
    expect(file.trailing.map((c) => c.text)).toEqual(['# end of file']);
  });
});

describe('errors', () => {
  const errorsOf = (text: string) =>
    parsePlanText(text).diagnostics.map((d) => ({
      line: d.span.start.line,
      col: d.span.start.col,
      severity: d.severity,
      message: d.message,
    }));

  it('reports every error of a file, in order, with positions', () => {
    const text = 'plan p() { compute a b\n let = 3\n cache kv of ; decode $ }\n';
    const r = parsePlanText(text);
    expect(r.file).toBeUndefined();
    const errs = errorsOf(text);
    expect(errs.map((e) => [e.line, e.col])).toEqual([
      [1, 22],
      [2, 6],
      [3, 14],
      [3, 16],
      [3, 23],
      [3, 25],
    ]);
    expect(errs.every((e) => e.severity === 'error')).toBe(true);
    expect(errs[0]?.message).toBe("expected '}' but found 'b'");
    expect(errs[1]?.message).toBe("expected a name but found '='");
    expect(errs[2]?.message).toBe("unexpected character ';'");
    expect(errs[4]?.message).toBe("unexpected character '$'");
  });

  it('reports lexer errors, naming characters outside ASCII by code point', () => {
    const errs = errorsOf('plan p() {\n  compute é\n}\n');
    expect(errs[0]).toEqual({
      line: 2,
      col: 11,
      severity: 'error',
      message: "unexpected character 'U+00E9'",
    });
  });

  it('rejects a keyword where a name is expected', () => {
    const errs = errorsOf('plan plan() {}');
    expect(errs[0]).toMatchObject({ line: 1, col: 6, message: "expected a name but found 'plan'" });
  });

  it('rejects a statement that is not one of the statement keywords', () => {
    const errs = errorsOf('plan p() {\n  x = 3\n}');
    expect(errs[0]).toMatchObject({ line: 2, col: 3 });
    expect(errs[0]?.message).toContain("found 'x'");
  });

  it('points an unexpected end of file at the end of the last token', () => {
    const errs = errorsOf('plan p() {\n  compute a\n');
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatchObject({ line: 2, col: 12, message: "expected '}' but found end of file" });
  });

  it('reports an error in each of two plans', () => {
    const errs = errorsOf('plan a(x = ) {}\nplan b() { blocks }\n');
    expect(errs.map((e) => e.line)).toEqual([1, 2]);
  });
});
