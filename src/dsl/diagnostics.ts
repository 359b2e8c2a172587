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

/** Renders `file:line:col: error: message`, the source line, and a caret under the span. */
export function formatDiagnostic(file: SourceFile, d: Diagnostic, lines = new LineMap(file.text)): string {
  const { line, col } = d.span.start;
  const text = lines.lineText(line);
  const width =
    d.span.end.line === line ? Math.max(1, d.span.end.col - col) : Math.max(1, text.length - col + 1);
  const gutter = String(line).length;
  const out = [
    `${file.path}:${line}:${col}: ${d.severity}: ${d.message}`,
    `${' '.repeat(gutter)} |`,
    `${line} | ${text.replace(/\t/g, ' ')}`,
    `${' '.repeat(gutter)} | ${' '.repeat(Math.max(0, col - 1))}${'^'.repeat(width)}`,
  ];
  for (const note of d.notes ?? []) out.push(`${' '.repeat(gutter)} = ${note}`);
  return out.join('\n');
}

export const byPosition = (a: Diagnostic, b: Diagnostic): number => a.span.start.offset - b.span.start.offset;

export const hasErrors = (ds: readonly Diagnostic[]): boolean => ds.some((d) => d.severity === 'error');
