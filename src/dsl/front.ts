import type { IRecognitionException, IToken, TokenType } from 'chevrotain';
import type { Comment, Expr, PlanFile } from './ast.ts';
import { attachComments } from './comments.ts';
import { byPosition, type Diagnostic, error } from './diagnostics.ts';
import {
  FloatLit,
  IntLit,
  infixTokens,
  keywords as K,
  LBracket,
  LParen,
  Minus,
  operandTokens,
  planLexer,
  RBracket,
  RParen,
} from './lexer.ts';
import { keywordHelp } from './parseErrors.ts';
import { planParser, tokenSpan } from './parser.ts';
import { LineMap, type Span } from './source.ts';
import { forEachChild, forEachStmtExpr } from './typecheck.ts';

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

/**
 * How many levels an expression may nest (docs/language.md section 2). The parser, the checker,
 * the evaluator and the printer all recurse on expressions. The parser's error recovery, the
 * deepest of them, overflows the stack of a fresh process near 44 levels of nested calls; no
 * example plan nests deeper than 4.
 */
export const maxExpressionDepth = 24;

const tooDeep = (span: Span, nesting: number, notes?: readonly string[]): Diagnostic =>
  error(span, `expression too deep: nesting ${nesting} exceeds the limit of ${maxExpressionDepth}`, notes);

// After these a '-' subtracts; anywhere else it negates.
const operandEnds = new Set<TokenType>([...operandTokens, RParen, RBracket]);

/**
 * Nesting too deep for the parser, found from the tokens before it runs: its recursion follows the
 * open brackets and the prefix operators whose operand is still being read (a `not` until `and`,
 * `or` or the end of the clause, a unary `-` until the next binary operator). Each is a level of
 * the expression as docs/language.md section 2 counts them.
 */
function deepTokens(tokens: readonly IToken[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const outer: { depth: number; nots: number; negs: number }[] = [];
  let depth = 0;
  let nots = 0;
  let negs = 0;
  let prev: TokenType | undefined;
  let over: { at: IToken; max: number } | undefined;
  for (const t of tokens) {
    const type = t.tokenType;
    if (type === LParen || type === LBracket) {
      outer.push({ depth, nots, negs });
      depth += nots + negs + 1;
      nots = 0;
      negs = 0;
    } else if (type === RParen || type === RBracket) {
      ({ depth, nots, negs } = outer.pop() ?? { depth: 0, nots: 0, negs: 0 });
    } else if (type === K.not) nots++;
    else if (type === Minus && !(prev && operandEnds.has(prev))) negs++;
    else if (type === Minus || infixTokens.has(type)) negs = 0;
    else if (!operandTokens.has(type)) {
      nots = 0;
      negs = 0;
    }
    prev = type;
    const level = depth + nots + negs;
    if (level > maxExpressionDepth) {
      if (over) over.max = Math.max(over.max, level);
      else over = { at: t, max: level };
    } else if (over) {
      out.push(tooDeep(tokenSpan(over.at), over.max));
      over = undefined;
    }
  }
  if (over) out.push(tooDeep(tokenSpan(over.at), over.max));
  return out;
}

const childrenOf = (e: Expr): Expr[] => {
  const out: Expr[] = [];
  forEachChild(e, (c) => out.push(c));
  return out;
};

/**
 * How many levels `root` nests, measured without recursion: an operator chain such as a long union
 * parses without recursion, but groups to the left, one level per operator. `named` gives a name's
 * own nesting. When too deep, `at` is the first node past the limit on the deepest path and
 * `via` the name that path ends in, if it counted.
 */
function measure(root: Expr, named: (name: string) => number): { nesting: number; at: Expr; via?: string } {
  // Kept for inner nodes only: in a long flat list nearly all nodes are leaves.
  const nesting = new Map<Expr, number>();
  const of = (e: Expr): number => nesting.get(e) ?? (e.kind === 'name' ? named(e.name) : 0);
  const open = [{ e: root, children: childrenOf(root), next: 0 }];
  while (open.length > 0) {
    const top = open[open.length - 1] as (typeof open)[number];
    const child = top.children[top.next++];
    if (child) {
      const children = childrenOf(child);
      if (children.length > 0) open.push({ e: child, children, next: 0 });
      continue;
    }
    open.pop();
    if (top.children.length > 0) nesting.set(top.e, 1 + top.children.reduce((m, c) => Math.max(m, of(c)), 0));
  }
  if (of(root) <= maxExpressionDepth) return { nesting: of(root), at: root };
  let node = root;
  let at: Expr | undefined;
  for (let level = 1; ; level++) {
    const deepest = childrenOf(node).reduce<Expr | undefined>(
      (m, c) => (m && of(m) >= of(c) ? m : c),
      undefined,
    );
    if (!deepest) break;
    node = deepest;
    if (level === maxExpressionDepth) at = node;
  }
  const via = node.kind === 'name' && of(node) > 0 ? node.name : undefined;
  return { nesting: of(root), at: at ?? node, ...(via ? { via } : {}) };
}

/**
 * Expressions nested too deeply. A name bound by `let` or `select` counts as deep as its
 * definition, since the checker and the evaluator follow it there.
 */
function deepExpressions(file: PlanFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const plan of file.plans) {
    const defined = new Map<string, { nesting: number; line: number }>();
    const nestingOf = (root: Expr): number => {
      const m = measure(root, (name) => defined.get(name)?.nesting ?? 0);
      // Infinite: it uses a definition already reported, and is not reported again.
      if (m.nesting <= maxExpressionDepth || m.nesting === Number.POSITIVE_INFINITY) return m.nesting;
      const via = m.via === undefined ? undefined : defined.get(m.via);
      const notes = via ? [`note: \`${m.via}\` counts as deep as its definition at line ${via.line}`] : [];
      out.push(tooDeep(m.at.span, m.nesting, notes));
      return Number.POSITIVE_INFINITY;
    };
    for (const s of plan.body) {
      if (s.kind === 'let' || s.kind === 'select') {
        const definition = s.kind === 'let' ? s.value : s.set;
        const nesting = nestingOf(definition);
        if (s.kind === 'select') nestingOf(s.at);
        defined.set(s.name, { nesting, line: s.span.start.line });
      } else forEachStmtExpr(s, nestingOf);
    }
  }
  return out;
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
  const nestedTooDeeply = deepTokens(lexed.tokens);
  if (nestedTooDeeply.length > 0)
    return { file: undefined, diagnostics: [...diagnostics, ...nestedTooDeeply].sort(byPosition) };
  planParser.input = lexed.tokens;
  let parsed: PlanFile | undefined;
  try {
    parsed = planParser.file();
  } catch (e) {
    // Recovery can hand an action a node it never built; the errors it recorded still stand. A
    // stack overflow is our bug (the depth limit failed to prevent it), whatever was recorded.
    if (planParser.errors.length === 0 || e instanceof RangeError) throw e;
  }
  for (const e of planParser.errors) {
    const span = errorSpan(e, lines);
    const help = keywordHelp(e.message, text.slice(span.start.offset, span.end.offset));
    diagnostics.push(error(span, e.message, help));
  }
  diagnostics.sort(byPosition);
  if (diagnostics.length > 0 || !parsed) return { file: undefined, diagnostics };
  const tooDeepTrees = deepExpressions(parsed);
  if (tooDeepTrees.length > 0) return { file: undefined, diagnostics: tooDeepTrees };
  const comments: Comment[] = (lexed.groups.comments ?? []).map((t) => ({
    text: t.image,
    span: tokenSpan(t),
  }));
  return { file: attachComments(parsed, comments), diagnostics };
}
