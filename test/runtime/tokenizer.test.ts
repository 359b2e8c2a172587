import { describe, expect, test } from 'vitest';
import { answerText, CharTokenizer, TokenizerError, tokenizerFromJson } from '../../src/runtime/tokenizer.ts';

describe('CharTokenizer with an EOS character', () => {
  const t = new CharTokenizer('$0123456789+=', 13, '$');

  test('exposes the EOS id and round-trips text', () => {
    expect(t.eosTokenId).toBe(0);
    expect(t.decode(t.encode('12+345='))).toBe('12+345=');
    expect(Array.from(t.encode('7$'))).toEqual([8, 0]);
  });

  test('answerText cuts at the first EOS and shows masks', () => {
    expect(answerText(t, t.encode('357$$$'))).toBe('357');
    expect(answerText(t, [4, 13, 0, 5, 0])).toBe('3_');
    expect(answerText(t, [0, 4, 0])).toBe('');
    expect(answerText(t, t.encode('357'))).toBe('357');
    expect(answerText(t, t.encode('9$1'))).toBe('9');
  });

  test('a tokenizer without EOS keeps the whole text', () => {
    const plain = new CharTokenizer('ab$', 9);
    expect(plain.eosTokenId).toBeUndefined();
    expect(answerText(plain, plain.encode('a$b'))).toBe('a$b');
    expect(plain.toJSON()).toEqual({ kind: 'chars', chars: 'ab$' });
  });

  test('JSON round trip keeps the EOS', () => {
    expect(t.toJSON()).toEqual({ kind: 'chars', chars: '$0123456789+=', eos: '$' });
    const back = tokenizerFromJson(JSON.parse(JSON.stringify(t)), 13);
    expect(back.eosTokenId).toBe(0);
    expect(answerText(back, back.encode('42$$'))).toBe('42');
    expect(tokenizerFromJson({ kind: 'chars', chars: 'ab' }, 2).eosTokenId).toBeUndefined();
  });

  test('rejects an EOS outside the alphabet or a bad description', () => {
    expect(() => new CharTokenizer('ab', 2, '$')).toThrow(/EOS "\$" is not a character/);
    expect(() => new CharTokenizer('ab', 2, 'ab')).toThrow(TokenizerError);
    expect(() => tokenizerFromJson({ kind: 'chars', chars: 'ab', eos: 1 }, 2)).toThrow(TokenizerError);
  });
});
