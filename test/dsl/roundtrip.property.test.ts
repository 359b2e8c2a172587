import { test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { parsePlanText } from '../../src/dsl/front.ts';
import { printFile } from '../../src/dsl/printer.ts';
import { LineMap, type Span } from '../../src/dsl/source.ts';
import { planFile } from '../support/arbitraries.ts';
import { stripSpans } from '../support/ast.ts';

/** Every (node, span) pair of a parsed AST, found by walking all objects that carry a span. */
function* spans(value: unknown): Generator<{ node: Record<string, unknown>; key: string; span: Span }> {
  if (Array.isArray(value)) {
    for (const v of value) yield* spans(v);
  } else if (value !== null && typeof value === 'object') {
    const node = value as Record<string, unknown>;
    for (const key of ['span', 'nameSpan'] as const) {
      const s = node[key] as Span | undefined;
      if (s) yield { node, key, span: s };
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'span' && k !== 'nameSpan') yield* spans(v);
  }
}

describe('print(parse(x)) round trip', () => {
  test.prop([planFile], { numRuns: 300 })(
    'printing a random AST and parsing it back gives the same AST and the same text',
    (file) => {
      const text = printFile(file);
      const reparsed = parsePlanText(text);
      expect(
        reparsed.diagnostics.map((d) => `${d.span.start.line}:${d.span.start.col} ${d.message}`),
      ).toEqual([]);
      expect(reparsed.file).toBeDefined();
      if (!reparsed.file) return;
      expect(stripSpans(reparsed.file)).toEqual(stripSpans(file));
      expect(printFile(reparsed.file)).toBe(text);
    },
  );

  test.prop([planFile], { numRuns: 100 })('spans of the reparsed AST point at their own text', (file) => {
    const text = printFile(file);
    const reparsed = parsePlanText(text).file;
    expect(reparsed).toBeDefined();
    const lines = new LineMap(text);
    for (const { node, key, span } of spans(reparsed)) {
      expect(span.start.offset).toBeLessThanOrEqual(span.end.offset);
      expect(span.end.offset).toBeLessThanOrEqual(text.length);
      expect(lines.pos(span.start.offset)).toEqual(span.start);
      expect(lines.pos(span.end.offset)).toEqual(span.end);
      const slice = text.slice(span.start.offset, span.end.offset);
      if (key === 'nameSpan') {
        expect(slice).toBe(node.name);
        continue;
      }
      if (node.kind === 'name') expect(slice).toBe(node.name);
      if (node.kind === 'bool') expect(slice).toBe(String(node.value));
      if ('text' in node && typeof node.text === 'string') expect(slice).toBe(node.text);
      if (node.kind === 'plan') {
        expect(slice.startsWith('plan ')).toBe(true);
        expect(slice.endsWith('}')).toBe(true);
      }
    }
  });
});
