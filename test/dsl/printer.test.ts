import { describe, expect, it } from 'vitest';
import type { Expr, PlanFile } from '../../src/dsl/ast.ts';
import { formatNumber, printExpr, printFile } from '../../src/dsl/printer.ts';
import { bin, call, expr, filter, float, int, name, neg, not, parseOk, S } from '../support/ast.ts';

const a = name('a');
const b = name('b');
const c = name('c');

/** Canonical text of `text`, which must parse. */
const fmt = (text: string): string => printFile(parseOk(text));

describe('printExpr: parentheses follow precedence and associativity', () => {
  it.each<[string, Expr, string]>([
    ['tighter right operand', bin('|', a, bin('&', b, c)), 'a | b & c'],
    ['looser left operand', bin('&', bin('|', a, b), c), '(a | b) & c'],
    ['left-associative chain', bin('-', bin('-', a, b), c), 'a - b - c'],
    ['right-nested same level', bin('-', a, bin('-', b, c)), 'a - (b - c)'],
    ['right-nested + under -', bin('-', a, bin('+', b, c)), 'a - (b + c)'],
    ['product in a sum', bin('+', bin('*', a, b), bin('/', b, c)), 'a * b + b / c'],
    ['sum in a product', bin('*', bin('+', a, b), c), '(a + b) * c'],
    ['comparisons do not chain (left)', bin('==', bin('<', a, b), c), '(a < b) == c'],
    ['comparisons do not chain (right)', bin('==', a, bin('<', b, c)), 'a == (b < c)'],
    ['union under comparison', bin('<', bin('|', a, b), c), 'a | b < c'],
    ['and under or', bin('or', bin('and', a, b), c), 'a and b or c'],
    ['or under and', bin('and', bin('or', a, b), c), '(a or b) and c'],
    ['not of and', not(bin('and', a, b)), 'not (a and b)'],
    ['not of comparison', not(bin('<', a, b)), 'not a < b'],
    ['not not', not(not(a)), 'not not a'],
    ['not under union', bin('|', not(a), b), '(not a) | b'],
    ['neg of sum', neg(bin('+', a, b)), '-(a + b)'],
    ['neg of product', neg(bin('*', a, b)), '-(a * b)'],
    ['neg of neg', neg(neg(a)), '--a'],
    ['minus of neg', bin('-', a, neg(b)), 'a - -b'],
    ['filter of neg', filter(neg(a), b), '(-a)[b]'],
    ['filter of union', filter(bin('|', a, b), bin('>', name('age'), int(1))), '(a | b)[age > 1]'],
    ['filter of call', filter(call('topk', a, int(3)), b), 'topk(a, 3)[b]'],
    ['call with no arguments', call('f'), 'f()'],
    ['arguments are never parenthesised', call('f', bin('or', a, b), neg(c)), 'f(a or b, -c)'],
    [
      'booleans',
      bin('and', { kind: 'bool', value: true, span: S }, not({ kind: 'bool', value: false, span: S })),
      'true and not false',
    ],
  ])('%s', (_label, e, text) => {
    expect(printExpr(e)).toBe(text);
  });

  it('drops redundant parentheses of the source and keeps needed ones', () => {
    expect(printExpr(expr('a | (b & c)'))).toBe('a | b & c');
    expect(printExpr(expr('((a))'))).toBe('a');
    expect(printExpr(expr('(a - b) - (c - d)'))).toBe('a - b - (c - d)');
    expect(printExpr(expr('-(a)[b]'))).toBe('-a[b]');
  });
});

describe('number formatting', () => {
  it('prints integral floats with .0 and integers without', () => {
    expect(formatNumber(float(1))).toBe('1.0');
    expect(formatNumber(float(0))).toBe('0.0');
    expect(formatNumber(float(-2))).toBe('-2.0');
    expect(formatNumber(int(1))).toBe('1');
    expect(formatNumber(int(-7))).toBe('-7');
    expect(formatNumber(float(0.25))).toBe('0.25');
  });

  it('normalises float spellings of the source', () => {
    expect(fmt('plan p(a = 1.0, b = 2.50, c = 1e3, d = 1.5E-7, e = 007) {}')).toBe(
      'plan p(a = 1.0, b = 2.5, c = 1000.0, d = 1.5e-7, e = 7) {\n}\n',
    );
  });
});

describe('printFile layout', () => {
  it('indents statements, lays out split segments one per line, and separates plans by a blank line', () => {
    const src = [
      'plan flashblock(block=4,dirty:int=2 in [1,4]){ blocks block compute current_block',
      'attend split { ext = prompt|before_block reused until dirty(current_block)>=dirty, inn = current_block } merge lse',
      'decode threshold(0.9)in current_block ar_shift }',
      'plan b(){}',
    ].join('\n');
    expect(fmt(src)).toBe(
      [
        'plan flashblock(block = 4, dirty: int = 2 in [1, 4]) {',
        '  blocks block',
        '  compute current_block',
        '  attend split {',
        '    ext = prompt | before_block reused until dirty(current_block) >= dirty,',
        '    inn = current_block',
        '  } merge lse',
        '  decode threshold(0.9) in current_block ar_shift',
        '}',
        '',
        'plan b() {',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('prints every optional clause', () => {
    const src =
      'plan p() { cache k,v of decoded delay 1 on layers 0..3\n attend all mask block_causal on layers >= 2\n compute all on layer 0\n refresh all when every(4) on layers != 1\n select s = topk(prompt, 8) at block_start per kv_head\n decode topk(1) by margin }';
    expect(fmt(src)).toBe(
      [
        'plan p() {',
        '  cache k, v of decoded delay 1 on layers 0..3',
        '  attend all mask block_causal on layers >= 2',
        '  compute all on layer 0',
        '  refresh all when every(4) on layers != 1',
        '  select s = topk(prompt, 8) at block_start per kv_head',
        '  decode topk(1) by margin',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('prints an empty file as a single newline', () => {
    const empty: PlanFile = { plans: [], trailing: [] };
    expect(printFile(empty)).toBe('\n');
  });
});

describe('comments', () => {
  it('keeps leading, trailing, inner and file-trailing comments in place', () => {
    const src = [
      '# The Fast-dLLM dual cache.',
      '// second line',
      'plan p(block = 32) {',
      '    # block structure',
      'blocks block   # trailing blanks are trimmed   ',
      '  compute current_block',
      '      # inner, before the brace',
      '}',
      '# after the last plan',
    ].join('\n');
    expect(fmt(src)).toBe(
      [
        '# The Fast-dLLM dual cache.',
        '// second line',
        'plan p(block = 32) {',
        '  # block structure',
        '  blocks block  # trailing blanks are trimmed',
        '  compute current_block',
        '  # inner, before the brace',
        '}',
        '',
        '# after the last plan',
        '',
      ].join('\n'),
    );
  });

  it('keeps a trailing comment after a multi-line split on its closing line', () => {
    const out = fmt('plan p() {\n  attend split { x = a, y = b } merge lse  # why\n}\n');
    expect(out).toContain('  } merge lse  # why\n');
  });

  it('keeps the comments of a file without plans', () => {
    expect(fmt('# only\n\n# comments\n')).toBe('# only\n# comments\n');
  });

  it('is idempotent', () => {
    const src = '# a\nplan p(x=1){ let y = (x) # t\n# i\n}\n# z';
    const once = fmt(src);
    expect(fmt(once)).toBe(once);
  });
});
