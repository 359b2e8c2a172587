// What a diagnostic prints is bounded and inert: a plan's bytes never reach the terminal as
// control sequences, a long line is cut around the caret, and a file of errors prints at most
// maxPrinted of them.
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { formatDiagnostic, formatDiagnostics, maxPrinted } from '../../src/dsl/diagnostics.ts';

const diagnose = (text: string) => {
  const file = { path: 'p.kvp', text };
  const ds = checkSource(file).diagnostics;
  return { file, ds, shown: ds.map((d) => formatDiagnostic(file, d)) };
};

describe('the quoted source line', () => {
  /** Control characters (newlines aside) and the right-to-left override left in a text. */
  const raw = (text: string) =>
    [...text].filter((c) => {
      const cp = c.codePointAt(0) as number;
      return (cp < 0x20 && cp !== 0x0a) || cp === 0x7f || cp === 0x202e;
    });

  test('ESC, BEL and bidi overrides are spelt out, and the caret points at what is shown', () => {
    // A stray ESC is a lexer error: the caret is under its spelt-out form.
    const lexed = diagnose('plan p() {\n  compute \u001b]0;owned\u0007 masked\n  decode threshold(0.9)\n}\n');
    expect(raw(lexed.shown.join('\n'))).toEqual([]);
    const [, , line, caret] = (lexed.shown[0] as string).split('\n');
    expect(line).toBe('2 |   compute U+001B]0;ownedU+0007 masked');
    expect((line as string).slice((caret as string).indexOf('^'), (caret as string).indexOf('^') + 6)).toBe(
      'U+001B',
    );
    // In a comment they are legal, and still shown spelt out on the quoted line of a later error.
    const commented = diagnose(
      'plan p() {\n  compute curent_block # \u001b[2J\u202e\u0007\n  decode threshold(0.9)\n}\n',
    );
    expect(raw(commented.shown.join('\n'))).toEqual([]);
    expect(commented.shown[0]).toContain('curent_block # U+001B[2JU+202EU+0007');
  });

  test('a long line is cut to a window around the span, marked with …', () => {
    const pad = 'x'.repeat(5000);
    const { shown } = diagnose(
      `plan p() {\n  let ${pad} = masked\n  compute curent_block\n  decode threshold(0.9)\n}\n`,
    );
    for (const s of shown) for (const l of s.split('\n').slice(2, 4)) expect(l.length).toBeLessThan(200);
    const unknown = diagnose(
      `plan p() {\n  compute masked | ${'masked | '.repeat(20)}curent_block\n  decode threshold(0.9)\n}\n`,
    );
    const [, , line, caret] = (unknown.shown[0] as string).split('\n');
    expect(line).toMatch(/^2 \| …/);
    const at = (caret as string).indexOf('^');
    expect((line as string).slice(at, at + 12)).toBe('curent_block');
  });
});

test(`a file of errors prints at most ${maxPrinted} of them and counts the rest`, () => {
  const text = `plan p() {\n${'  compute nope\n'.repeat(120)}  decode threshold(0.9)\n}\n`;
  const file = { path: 'p.kvp', text };
  const ds = checkSource(file).diagnostics;
  expect(ds.length).toBeGreaterThan(maxPrinted);
  const out = formatDiagnostics(file, ds);
  expect(out).toHaveLength(maxPrinted + 1);
  expect(out.at(-1)).toBe(`p.kvp: and ${ds.length - maxPrinted} more diagnostics not shown`);
});
