/** Text to token ids and back; the mask token is never produced by encode. */
export interface Tokenizer {
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  toJSON(): { kind: string; [k: string]: unknown };
}

export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}

/** One token per character of a fixed alphabet (bundled and test models). */
export class CharTokenizer implements Tokenizer {
  private readonly ids = new Map<string, number>();

  constructor(
    readonly chars: string,
    readonly maskTokenId: number,
  ) {
    [...chars].forEach((ch, i) => {
      if (this.ids.has(ch)) throw new TokenizerError(`the alphabet repeats ${JSON.stringify(ch)}`);
      if (i === maskTokenId) throw new TokenizerError(`character ${i} would take the mask token id`);
      this.ids.set(ch, i);
    });
  }

  encode(text: string): Int32Array {
    return Int32Array.from([...text], (ch, i) => {
      const id = this.ids.get(ch);
      if (id === undefined)
        throw new TokenizerError(
          `character ${JSON.stringify(ch)} at ${i} is not in the model's alphabet ${JSON.stringify(this.chars)}`,
        );
      return id;
    });
  }

  decode(ids: ArrayLike<number>): string {
    const chars = [...this.chars];
    return Array.from(ids, (id) => (id === this.maskTokenId ? '_' : (chars[id] ?? '\u{fffd}'))).join('');
  }

  toJSON() {
    return { kind: 'chars', chars: this.chars };
  }
}

/** The default alphabet for a vocabulary: printable characters, one id short of the mask. */
export function defaultAlphabet(vocab: number, maskTokenId: number): string {
  const pool = ' abcdefghijklmnopqrstuvwxyz0123456789+-*=.,:;!?()[]{}<>/#ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const n = Math.min(pool.length, maskTokenId, vocab);
  return pool.slice(0, n);
}

export function tokenizerFromJson(json: unknown, maskTokenId: number): Tokenizer {
  const j = json as { kind?: unknown; chars?: unknown };
  if (j?.kind === 'chars' && typeof j.chars === 'string') return new CharTokenizer(j.chars, maskTokenId);
  throw new TokenizerError(`unsupported tokenizer description ${JSON.stringify(json)}`);
}
