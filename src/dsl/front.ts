import type { IRecognitionException, IToken } from 'chevrotain';
import type { Comment, PlanFile } from './ast.ts';
import { attachComments } from './comments.ts';
import { byPosition, type Diagnostic, error } from './diagnostics.ts';
import { FloatLit, IntLit, planLexer } from './lexer.ts';
import { keywordHelp } from './parseErrors.ts';
import { planParser, tokenSpan } from './parser.ts';
import { LineMap, type Span } from './source.ts';

export interface ParseResult {
  /** Present only when the file parsed without errors. */
  readonly file: PlanFile | undefined;
  readonly diagnostics: readonly Diagnostic[];
}

const describeChars = (s: string): string =>
  [...s]
    .map((c) =>
      c >= ' ' && c <= '~' ? c : `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`,
    )
    .join('');

function errorSpan(e: IRecognitionException, lines: LineMap): Span {
  const t: IToken = e.token;
  if (t.tokenType.name !== 'EOF' && t.startOffset >= 0) return tokenSpan(t);
  // Tokens inserted by error recovery, and EOF, have no offset: point at the previous token's end.
  const prev = (e as IRecognitionException & { previousToken?: IToken }).previousToken;
  if (prev && prev.tokenType.name !== 'EOF' && (prev.endOffset ?? -1) >= 0) {
    const at = (prev.endOffset ?? 0) + 1;
    return lines.span(at, at + 1);
  }
  return lines.span(lines.text.length, lines.text.length);
}

/** Lexes and parses one plan file; never throws on any input text. */
export function parsePlanText(text: string): ParseResult {
  const lines = new LineMap(text);
  const lexed = planLexer.tokenize(text);
  const diagnostics: Diagnostic[] = lexed.errors.map((e) => {
    const chars = text.slice(e.offset, e.offset + e.length);
    return error(lines.span(e.offset, e.offset + e.length), `unexpected character '${describeChars(chars)}'`);
  });
  for (const t of lexed.tokens) {
    if ((t.tokenType === IntLit || t.tokenType === FloatLit) && !Number.isFinite(Number(t.image))) {
      diagnostics.push(
        error(
          tokenSpan(t),
          `number ${t.image.length > 24 ? `${t.image.slice(0, 24)}…` : t.image} is too large`,
        ),
      );
    }
  }
  planParser.input = lexed.tokens;
  let parsed: PlanFile | undefined;
  try {
    parsed = planParser.file();
  } catch (e) {
    // Recovery can hand an action a node it never built; the errors it recorded still stand.
    if (planParser.errors.length === 0) throw e;
  }
  for (const e of planParser.errors) {
    const span = errorSpan(e, lines);
    const help = keywordHelp(e.message, text.slice(span.start.offset, span.end.offset));
    diagnostics.push(error(span, e.message, help));
  }
  diagnostics.sort(byPosition);
  if (diagnostics.length > 0 || !parsed) return { file: undefined, diagnostics };
  const comments: Comment[] = (lexed.groups.comments ?? []).map((t) => ({
    text: t.image,
    span: tokenSpan(t),
  }));
  return { file: attachComments(parsed, comments), diagnostics };
}
