import type { IParserErrorMessageProvider, IToken, TokenType } from 'chevrotain';
import { tokenLabel } from 'chevrotain';
import { isKeyword } from './lexer.ts';
import { didYouMean } from './suggest.ts';

const what = (t: IToken): string => (t.tokenType.name === 'EOF' ? 'end of file' : `'${t.image}'`);

// What a rule stands for, in the words of the language reference.
const ruleWords: Record<string, string> = {
  file: "'plan'",
  statement: 'a statement (blocks, compute, attend, cache, refresh, select, decode or let)',
  literal: 'a number, true or false',
  signedNumber: 'a number',
  number: 'a number',
  primary: 'an expression',
  unaryExpr: 'an expression',
  notExpr: 'an expression',
  attendStmt: 'a key set or `split { ... } merge lse`',
  layerScope: 'a layer scope (`on layer N`, `on layers >= N` or `on layers A..B`)',
  cmpOp: 'a comparison (==, !=, <, <=, >, >=)',
  param: 'a parameter',
};

const oneOf = (labels: string[]): string => {
  const unique = [...new Set(labels)];
  if (unique.length <= 1) return unique[0] ?? 'something else';
  return `one of ${unique.slice(0, -1).join(', ')} or ${unique.at(-1)}`;
};

export const planErrorMessages: IParserErrorMessageProvider = {
  buildMismatchTokenMessage({ expected, actual }) {
    return `expected ${tokenLabel(expected)} but found ${what(actual)}`;
  },
  buildNotAllInputParsedMessage({ firstRedundant }) {
    return `unexpected ${what(firstRedundant)}: expected 'plan' or the end of the file`;
  },
  buildNoViableAltMessage({ expectedPathsPerAlt, actual, ruleName }) {
    const found = actual[0];
    const words = ruleWords[ruleName];
    if (words) return `expected ${words} but found ${found ? what(found) : 'end of file'}`;
    const firsts = expectedPathsPerAlt
      .flatMap((alt) => alt.map((path) => path[0]))
      .filter(Boolean) as TokenType[];
    return `expected ${oneOf(firsts.map(tokenLabel))} but found ${found ? what(found) : 'end of file'}`;
  },
  buildEarlyExitMessage({ expectedIterationPaths, actual, ruleName }) {
    const found = actual[0];
    const words = ruleWords[ruleName];
    if (words) return `expected ${words} but found ${found ? what(found) : 'end of file'}`;
    const firsts = expectedIterationPaths.map((path) => path[0]).filter(Boolean) as TokenType[];
    return `expected at least one ${oneOf(firsts.map(tokenLabel))} but found ${found ? what(found) : 'end of file'}`;
  },
};

const statementKeywords = ['blocks', 'compute', 'attend', 'cache', 'refresh', 'select', 'decode', 'let'];

/**
 * A did-you-mean note for a parse error whose culprit `found` is a misspelt keyword: one of the
 * keywords the message expects (`wehn` for `when`), or a statement keyword where the statement
 * list may go on (`refersh`, reported as "expected '}'" because no statement starts with it).
 */
export function keywordHelp(message: string, found: string): string[] {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(found) || isKeyword(found)) return [];
  const expected = [...message.matchAll(/'([a-z_]+)'/g)].map((m) => m[1] ?? '').filter(isKeyword);
  const statementMayStart = /^expected ('\}'|a statement)/.test(message);
  return didYouMean(found, [...expected, ...(statementMayStart ? statementKeywords : [])]);
}
