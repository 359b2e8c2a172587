import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { printProgram, printPrograms } from '../../src/ir/printer.ts';
import { formatParseError, parseProgram, parsePrograms } from '../../src/ir/textParser.ts';
import { formatVerifyError, verifyPlan, verifyProgram } from '../../src/ir/verify.ts';
import { wellTypedProgram } from './arbitraries.ts';

describe('IR text round trip', () => {
  test.prop([wellTypedProgram], { numRuns: 300 })(
    'a random well-typed program verifies, and print → parse gives the same structure and text',
    (p) => {
      expect(verifyProgram(p).map(formatVerifyError)).toEqual([]);
      const text = printProgram(p);
      const r = parseProgram(text);
      expect(r.errors.map(formatParseError)).toEqual([]);
      expect(r.program).toEqual(p);
      if (!r.program) return;
      expect(printProgram(r.program)).toBe(text);
      expect(verifyProgram(r.program)).toEqual([]);
    },
  );

  test.prop([fc.array(wellTypedProgram, { minLength: 1, maxLength: 3 })], { numRuns: 50 })(
    'the programs of a plan round-trip together',
    (ps) => {
      const text = printPrograms(ps);
      const r = parsePrograms(text);
      expect(r.errors.map(formatParseError)).toEqual([]);
      expect(r.program).toEqual(ps);
    },
  );

  test.prop([wellTypedProgram], { numRuns: 100 })(
    'verifyPlan flags exactly the reads of resources that no stage writes',
    (p) => {
      const body = p.stages.flatMap((s) => s.body);
      const written = new Set(body.filter((i) => i.op === 'cache_write').map((i) => i.attrs.resource));
      const expected = body
        .filter((i) => i.op === 'cache_read' && !written.has(i.attrs.resource))
        .map((i) => `resource ${String(i.attrs.resource)} is read but no program of the plan writes it`);
      expect(verifyPlan([p]).map((e) => e.message)).toEqual(expected);
    },
  );
});

describe('IR parser robustness', () => {
  const fragments = fc.constantFrom(
    'program',
    'resource',
    'stage',
    'in',
    'out',
    '{',
    '}',
    '[',
    ']',
    ',',
    ':',
    '=',
    '%0',
    '%1',
    '#r',
    'L',
    'f32',
    'index',
    'carried',
    'add',
    '"s"',
    '1e-5',
    '-3',
    'true',
    '\n',
    ' ',
    '"',
    '%',
    '#',
    '@',
  );
  const noisy = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 100 }),
    fc.array(fragments, { maxLength: 60 }).map((xs) => xs.join(' ')),
  );

  test.prop([noisy], { numRuns: 500 })('never throws, and every error is located inside the text', (text) => {
    const r = parseProgram(text);
    const lines = text.split(/\r\n|\r|\n/);
    if (r.program) expect(r.errors).toEqual([]);
    else expect(r.errors.length).toBeGreaterThan(0);
    for (const e of r.errors) {
      expect(e.line).toBeGreaterThanOrEqual(1);
      expect(e.line).toBeLessThanOrEqual(lines.length);
      expect(e.col).toBeGreaterThanOrEqual(1);
      expect(e.message).not.toMatch(/internal error/);
    }
  });

  test.prop([wellTypedProgram, fc.nat(), fc.nat({ max: 5 })], { numRuns: 200 })(
    'a printed program with a cut or a stray token gives located errors, never an exception',
    (p, at, len) => {
      const text = printProgram(p);
      const i = at % text.length;
      const mangled = `${text.slice(0, i)}${['', '}', '%', ':', '{'][len % 5]}${text.slice(i + len)}`;
      const r = parseProgram(mangled);
      for (const e of r.errors) {
        expect(e.line).toBeGreaterThanOrEqual(1);
        expect(e.message).not.toMatch(/internal error/);
      }
    },
  );
});
