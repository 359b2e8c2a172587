import './polyfill.ts';
import { createToken, Lexer, type TokenType } from 'chevrotain';

export const Identifier = createToken({
  name: 'Identifier',
  pattern: /[A-Za-z_][A-Za-z0-9_]*/,
  label: 'a name',
});

const keywordNames = [
  'plan',
  'blocks',
  'compute',
  'attend',
  'cache',
  'refresh',
  'select',
  'decode',
  'let',
  'when',
  'at',
  'of',
  'on',
  'layer',
  'layers',
  'split',
  'merge',
  'lse',
  'reused',
  'until',
  'mask',
  'delay',
  'by',
  'in',
  'per',
  'ar_shift',
  'and',
  'or',
  'not',
  'true',
  'false',
  'int',
  'float',
  'bool',
] as const;
export type Keyword = (typeof keywordNames)[number];

export const keywords = Object.fromEntries(
  keywordNames.map((k) => [
    k,
    createToken({ name: `Kw_${k}`, pattern: k, longer_alt: Identifier, label: `'${k}'` }),
  ]),
) as Record<Keyword, TokenType>;

export const isKeyword = (name: string): boolean => (keywordNames as readonly string[]).includes(name);

// A number is a float when it has a fraction or an exponent; the checker needs the difference.
export const FloatLit = createToken({
  name: 'FloatLit',
  pattern: /\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+/,
  label: 'a number',
});
export const IntLit = createToken({
  name: 'IntLit',
  pattern: /\d+/,
  longer_alt: FloatLit,
  label: 'a number',
});

const punct = (name: string, pattern: string | RegExp, label: string) =>
  createToken({ name, pattern, label });
export const LBrace = punct('LBrace', '{', "'{'");
export const RBrace = punct('RBrace', '}', "'}'");
export const LParen = punct('LParen', '(', "'('");
export const RParen = punct('RParen', ')', "')'");
export const LBracket = punct('LBracket', '[', "'['");
export const RBracket = punct('RBracket', ']', "']'");
export const Comma = punct('Comma', ',', "','");
export const Colon = punct('Colon', ':', "':'");
export const DotDot = punct('DotDot', '..', "'..'");
export const Le = punct('Le', '<=', "'<='");
export const Ge = punct('Ge', '>=', "'>='");
export const EqEq = punct('EqEq', '==', "'=='");
export const Ne = punct('Ne', '!=', "'!='");
export const Lt = punct('Lt', '<', "'<'");
export const Gt = punct('Gt', '>', "'>'");
export const Assign = punct('Assign', '=', "'='");
export const Pipe = punct('Pipe', '|', "'|'");
export const Amp = punct('Amp', '&', "'&'");
export const Plus = punct('Plus', '+', "'+'");
export const Minus = punct('Minus', '-', "'-'");
export const Star = punct('Star', '*', "'*'");
export const Slash = punct('Slash', /\/(?!\/)/, "'/'");

/** Tokens that are a whole operand by themselves: names, numbers, `true` and `false`. */
export const operandTokens: ReadonlySet<TokenType> = new Set([
  Identifier,
  IntLit,
  FloatLit,
  keywords.true,
  keywords.false,
]);
/** The infix operators but `-` (also a prefix), `and` and `or`. */
export const infixTokens: ReadonlySet<TokenType> = new Set([
  Pipe,
  Amp,
  Plus,
  Star,
  Slash,
  Lt,
  Le,
  Gt,
  Ge,
  EqEq,
  Ne,
]);

export const Comment = createToken({ name: 'Comment', pattern: /(?:#|\/\/)[^\n\r]*/, group: 'comments' });
export const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r\n]+/, group: Lexer.SKIPPED });

export const allTokens: TokenType[] = [
  WhiteSpace,
  Comment,
  // Longest first: with `in` before `int`, the lexer would take `int` for a name.
  ...Object.values(keywords).sort((a, b) => String(b.PATTERN).length - String(a.PATTERN).length),
  Identifier,
  FloatLit,
  IntLit,
  LBrace,
  RBrace,
  LParen,
  RParen,
  LBracket,
  RBracket,
  Comma,
  Colon,
  DotDot,
  Le,
  Ge,
  EqEq,
  Ne,
  Lt,
  Gt,
  Assign,
  Pipe,
  Amp,
  Plus,
  Minus,
  Star,
  Slash,
];

// Lines end at '\n' only (a '\r' before it is part of the line), as in the line map that renders
// diagnostics: chevrotain's default also ends a line at a lone '\r', and the two would disagree.
export const planLexer = new Lexer(allTokens, {
  positionTracking: 'full',
  ensureOptimizations: false,
  lineTerminatorsPattern: /\n/g,
  lineTerminatorCharacters: ['\n'],
});
