import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { formatDiagnostic } from '../../src/dsl/diagnostics.ts';
import { parsePlanText } from '../../src/dsl/front.ts';
import { printFile } from '../../src/dsl/printer.ts';
import { commentText, identifier, keywordList, planFile } from '../support/arbitraries.ts';

const punctuation = [
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  ',',
  ':',
  '..',
  '=',
  '==',
  '!=',
  '<',
  '<=',
  '>',
  '>=',
  '|',
  '&',
];
const operators = ['+', '-', '*', '/', '//', '#', '.', ';', '$', '@', '"', "'", '\\', '\t', '\r', '\r\n'];

const token: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...keywordList), weight: 4 },
  { arbitrary: identifier, weight: 2 },
  { arbitrary: fc.constantFrom(...punctuation, ...operators), weight: 4 },
  { arbitrary: fc.oneof(fc.nat().map(String), fc.double({ noNaN: true }).map(String)), weight: 1 },
  { arbitrary: commentText, weight: 1 },
  { arbitrary: fc.constantFrom('\n', ' ', '\n\n'), weight: 2 },
);

/** Random token streams: mostly lexable, rarely parseable. */
const tokenStream = fc
  .tuple(fc.array(token, { maxLength: 60 }), fc.constantFrom(' ', '', '\n'))
  .map(([tokens, sep]) => tokens.join(sep));

/** Well-formed text with a random edit: exercises error recovery close to real mistakes. */
const mutatedPlan = fc.tuple(planFile, fc.nat(), fc.nat({ max: 8 }), token).map(([file, at, cut, insert]) => {
  const text = printFile(file);
  const i = at % (text.length + 1);
  return text.slice(0, i) + insert + text.slice(i + cut);
});

const anyText = fc.oneof(
  tokenStream,
  mutatedPlan,
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.uint8Array({ maxLength: 120 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
);

describe('front end on arbitrary input', () => {
  test.prop([anyText], { numRuns: 600 })(
    'never throws; a rejected text has diagnostics with positions inside the text',
    (text) => {
      const r = parsePlanText(text);
      const lineCount = text.split('\n').length;
      if (!r.file) expect(r.diagnostics.length).toBeGreaterThan(0);
      for (const d of r.diagnostics) {
        const { start, end } = d.span;
        expect(start.line).toBeGreaterThanOrEqual(1);
        expect(start.line).toBeLessThanOrEqual(lineCount + 1);
        expect(start.col).toBeGreaterThanOrEqual(1);
        expect(start.offset).toBeGreaterThanOrEqual(0);
        expect(start.offset).toBeLessThanOrEqual(text.length + 1);
        expect(end.offset).toBeGreaterThanOrEqual(start.offset);
        expect(d.message.length).toBeGreaterThan(0);
        const rendered = formatDiagnostic({ path: 'fuzz.kvp', text }, d);
        expect(rendered.startsWith(`fuzz.kvp:${start.line}:${start.col}: ${d.severity}: `)).toBe(true);
        expect(rendered).toContain('^');
      }
    },
  );

  test.prop([fc.oneof(tokenStream, mutatedPlan)], { numRuns: 400 })(
    'whatever parses formats to text that parses to the same canonical text',
    (text) => {
      const r = parsePlanText(text);
      if (!r.file) return;
      const once = printFile(r.file);
      const again = parsePlanText(once);
      expect(again.diagnostics).toEqual([]);
      expect(again.file && printFile(again.file)).toBe(once);
    },
  );
});
