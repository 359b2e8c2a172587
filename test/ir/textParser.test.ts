import { describe, expect, it } from 'vitest';
import { printProgram, printPrograms } from '../../src/ir/printer.ts';
import { formatParseError, parseProgram, parsePrograms } from '../../src/ir/textParser.ts';
import { smallProgram } from './fixtures.ts';

const errs = (text: string) => parseProgram(text).errors.map(formatParseError);

const ok = `program p {
  resource kv.k.0: f32[L,2,8] kv
  stage s {
    in %0: index[#rows] = index rows
    %1: f32[L,2,8] = cache_read {resource = "kv.k.0"}
    %2: f32[#rows,2,8] = gather %1, %0
    cache_write %0, %2 {resource = "kv.k.0"}
    out k = %2
  }
}
`;

describe('parseProgram', () => {
  it('parses the text form into values with the printed ids and types', () => {
    const r = parseProgram(ok);
    expect(r.errors).toEqual([]);
    const s = r.program?.stages[0];
    expect(s?.inputs).toEqual([
      { name: 'rows', role: 'index', value: { id: 0, type: { kind: 'index', size: '#rows' } } },
    ]);
    expect(s?.body[1]?.results[0]).toEqual({
      id: 2,
      type: { kind: 'tensor', dtype: 'f32', shape: ['#rows', 2, 8] },
    });
    // An operand is the very value its definition created.
    expect(s?.body[1]?.args[1]).toBe(s?.inputs[0]?.value);
    expect(s?.outputs[0]?.value).toBe(s?.body[1]?.results[0]);
    expect(r.program && printProgram(r.program)).toBe(ok);
  });

  it('tells a zero-result, zero-operand instruction apart from the next one', () => {
    const text = 'program p {\n  stage s {\n    sync\n    %0: f32[L] = noop\n    fence %0\n  }\n}\n';
    const r = parseProgram(text);
    expect(r.errors).toEqual([]);
    expect(r.program?.stages[0]?.body.map((i) => [i.op, i.args.length, i.results.length])).toEqual([
      ['sync', 0, 0],
      ['noop', 0, 1],
      ['fence', 1, 0],
    ]);
    expect(r.program && printProgram(r.program)).toBe(text);
  });

  it('accepts quoted names, keywords as names and comments', () => {
    const text = `program "a b" { // the program
  stage in {
    in %0: f32[L,4] = carried "h h"
    %1: f32[L,4] = "out" %0 {"x y" = [], true = false}
    out stage = %1
  }
}`;
    const r = parseProgram(text);
    expect(r.errors).toEqual([]);
    expect(r.program?.name).toBe('a b');
    expect(r.program?.stages[0]?.body[0]).toMatchObject({ op: 'out', attrs: { 'x y': [], true: false } });
    expect(r.program && printProgram(r.program)).toContain(
      '%1: f32[L,4] = "out" %0 {true = false, "x y" = []}',
    );
  });

  it('reads several programs with parsePrograms', () => {
    const p = smallProgram();
    const r = parsePrograms(printPrograms([p, { ...p, name: 'q' }]));
    expect(r.errors).toEqual([]);
    expect(r.program?.map((x) => x.name)).toEqual(['fast_dllm_dual.cached', 'q']);
    expect(errs(printPrograms([p, p]))).toEqual(['43:1: expected one program, found 2']);
    expect(errs('')).toEqual(['1:1: expected one program, found 0']);
  });

  it('locates syntax errors', () => {
    expect(errs('program p {\n  stage s {\n    in %0 f32[L] = carried h\n  }\n}')).toEqual([
      "3:11: expected ':' but found 'f32'",
    ]);
    expect(errs('program p {\n  stage s {\n    %0: f32[L] = \n  }\n}')).toEqual([
      "4:3: expected an op name but found '}'",
    ]);
    expect(errs('program p {\n  stage s {\n')).toEqual(["2:12: expected '}' but found end of input"]);
    expect(errs('program p { stage s { %1: f32[L] = add %0 $ } }')).toEqual([
      '1:43: unexpected character "$"',
    ]);
    expect(errs('program p { bogus }')).toEqual(["1:13: expected '}' but found 'bogus'"]);
  });

  it('locates errors found while resolving names, types and values', () => {
    const text = `program p {
  resource r: index[L] kv
  resource s: f32[L] cache
  stage s {
    in %0: f33[L,-1] = carried h
    in %1: index[L,2] = bogus i
    %2: f32[L] = add %0, %9 {k = 1e999, k = 2}
    out h = %7
  }
}`;
    expect(errs(text)).toEqual([
      '2:15: a resource holds a tensor, not an index list',
      "3:22: unknown resource kind 'cache' (expected kv, attn, ffn, hidden, partial)",
      "5:12: unknown type 'f33' (expected f32, f16, bf16, i32 or index)",
      '5:18: dimension -1 is not a non-negative integer',
      '6:12: an index list has one dimension, got 2',
      "6:25: unknown input role 'bogus' (expected tokens, blocks, seqs, index, positions, weight, carried)",
      '7:26: value %9 is never defined',
      '7:34: number 1e999 is too large',
      "7:41: duplicate attribute 'k'",
      '8:13: value %7 is never defined',
    ]);
  });

  it('parses a use before its definition (the verifier judges it)', () => {
    const text =
      'program p {\n  stage s {\n    in %0: f32[L] = carried h\n    %1: f32[L] = add %2, %0\n    %2: f32[L] = add %0, %0\n  }\n}\n';
    const r = parseProgram(text);
    expect(r.errors).toEqual([]);
    expect(r.program?.stages[0]?.body[0]?.args[0]).toBe(r.program?.stages[0]?.body[1]?.results[0]);
  });
});
