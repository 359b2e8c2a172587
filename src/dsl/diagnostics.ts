import { LineMap, type SourceFile, type Span } from './source.ts';

export type Severity = 'error' | 'warning' | 'note';

export interface Diagnostic {
  readonly severity: Severity;
  readonly message: string;
  readonly span: Span;
  /** Follow-up lines printed under the caret, e.g. a hint or the chain of definitions involved. */
  readonly notes?: readonly string[];
}

const diagnostic = (
  severity: Severity,
  span: Span,
  message: string,
  notes?: readonly string[],
): Diagnostic =>
  notes && notes.length > 0 ? { severity, message, span, notes } : { severity, message, span };

export const error = (span: Span, message: string, notes?: readonly string[]): Diagnostic =>
  diagnostic('error', span, message, notes);

/** Something that is well-formed but almost certainly not what the author meant; never fails a check. */
export const warning = (span: Span, message: string, notes?: readonly string[]): Diagnostic =>
  diagnostic('warning', span, message, notes);

/** What the checker did that the user should know of, e.g. a simulation at other values. */
export const note = (span: Span, message: string, notes?: readonly string[]): Diagnostic =>
  diagnostic('note', span, message, notes);

/**
 * Characters a quoted line shows as `U+XXXX`: controls (ESC and BEL would let a plan retitle or
 * clear the user's terminal), bidirectional overrides and invisible formatting characters.
 */
const unsafe = (cp: number): boolean =>
  (cp < 0x20 && cp !== 0x09) ||
  (cp >= 0x7f && cp <= 0x9f) ||
  cp === 0x61c ||
  (cp >= 0x200b && cp <= 0x200f) ||
  (cp >= 0x2028 && cp <= 0x202e) ||
  (cp >= 0x2060 && cp <= 0x2069) ||
  cp === 0xfeff;

const shownChar = (c: string): string => {
  const cp = c.codePointAt(0) ?? 0;
  if (cp === 0x09) return ' ';
  return unsafe(cp) ? `U+${cp.toString(16).toUpperCase().padStart(4, '0')}` : c;
};

/** Quoted lines are cut to this many shown characters around the caret. */
const maxQuoted = 160;

/**
 * The quoted line as shown, with the caret's start and width in shown characters: unsafe
 * characters spelt out, and a long line cut to a window around the span (`…` where cut).
 */
function quotedLine(text: string, col: number, width: number): { line: string; at: number; width: number } {
  const units = [...text.slice(0, Math.max(0, col - 1))].length;
  const chars = [...text].map(shownChar);
  const before = chars.slice(0, units).join('');
  const span = chars.slice(units, units + width).join('');
  let line = chars.join('');
  let at = before.length;
  if (line.length > maxQuoted) {
    const start = Math.max(0, Math.min(at - 40, line.length - maxQuoted));
    const cut = line.slice(start, start + maxQuoted);
    line = `${start > 0 ? '…' : ''}${cut}${start + maxQuoted < line.length ? '…' : ''}`;
    at = at - start + (start > 0 ? 1 : 0);
  }
  return { line, at, width: Math.max(1, Math.min(span.length, line.length - at)) };
}

/** Renders `file:line:col: error: message`, the source line, and a caret under the span. */
export function formatDiagnostic(file: SourceFile, d: Diagnostic, lines = new LineMap(file.text)): string {
  const { line, col } = d.span.start;
  const text = lines.lineText(line);
  const width =
    d.span.end.line === line ? Math.max(1, d.span.end.col - col) : Math.max(1, text.length - col + 1);
  const gutter = String(line).length;
  const q = quotedLine(text, col, width);
  const out = [
    `${file.path}:${line}:${col}: ${d.severity}: ${d.message}`,
    `${' '.repeat(gutter)} |`,
    `${line} | ${q.line}`,
    `${' '.repeat(gutter)} | ${' '.repeat(q.at)}${'^'.repeat(q.width)}`,
  ];
  for (const note of d.notes ?? []) out.push(`${' '.repeat(gutter)} = ${note}`);
  return out.join('\n');
}

/** At most this many diagnostics of one file are printed; the rest are counted. */
export const maxPrinted = 50;

/**
 * The diagnostics of one file as printed: each formatted, at most `maxPrinted` of them, then a
 * line counting the rest (a non-plan file handed over as a plan would otherwise print an error
 * per token, each with its line).
 */
export function formatDiagnostics(
  file: SourceFile,
  ds: readonly Diagnostic[],
  lines = new LineMap(file.text),
): string[] {
  const out = ds.slice(0, maxPrinted).map((d) => formatDiagnostic(file, d, lines));
  const rest = ds.length - maxPrinted;
  if (rest > 0) out.push(`${file.path}: and ${rest} more diagnostic${rest === 1 ? '' : 's'} not shown`);
  return out;
}

export const byPosition = (a: Diagnostic, b: Diagnostic): number => a.span.start.offset - b.span.start.offset;

export const hasErrors = (ds: readonly Diagnostic[]): boolean => ds.some((d) => d.severity === 'error');
