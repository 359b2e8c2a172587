import { describe, expect, test } from 'vitest';
import { parsePlanText } from '../../src/dsl/front.ts';

describe('line endings', () => {
  test('a lone carriage return does not end a line: diagnostics count lines as the line map does', () => {
    const r = parsePlanText('\r \r when');
    expect(r.diagnostics.length).toBeGreaterThan(0);
    expect(r.diagnostics.every((d) => d.span.start.line === 1)).toBe(true);
  });

  test('CRLF files count one line per CRLF', () => {
    const r = parsePlanText('plan p() {\r\n  decode steps(4)\r\n  $\r\n}\r\n');
    expect(r.diagnostics[0]?.span.start).toMatchObject({ line: 3, col: 3 });
  });
});
