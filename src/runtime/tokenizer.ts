/** Text to token ids and back. */
export interface Tokenizer {
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  toJSON(): { kind: string; [k: string]: unknown };
  /** The end-of-sequence token a model pads its answer with, when it has one. */
  readonly eosTokenId?: number;
  /** A user message in the model's chat template, when it has one (a checkpoint's tokenizer). */
  encodeChat?(messages: readonly { readonly role: string; readonly content: string }[]): Int32Array;
}

export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}

/** For a model without a tokenizer: prompts come as token ids, and answers are printed as ids. */
export class IdTokenizer implements Tokenizer {
  constructor(private readonly why: string) {}
  encode(): Int32Array {
    throw new TokenizerError(`${this.why}; give the prompt as token ids (--prompt-ids)`);
  }
  decode(ids: ArrayLike<number>): string {
    return Array.from(ids).join(' ');
  }
  toJSON() {
    return { kind: 'ids' };
  }
}

/**
 * One token per character of a fixed alphabet (bundled and test models). `eos`, when given, is one
 * of the alphabet's characters: the end-of-sequence token that pads a generated answer.
 */
export class CharTokenizer implements Tokenizer {
  private readonly ids = new Map<string, number>();
  readonly eosTokenId?: number;

  constructor(
    readonly chars: string,
    readonly maskTokenId: number,
    readonly eos?: string,
  ) {
    [...chars].forEach((ch, i) => {
      if (this.ids.has(ch)) throw new TokenizerError(`the alphabet repeats ${JSON.stringify(ch)}`);
      if (i === maskTokenId) throw new TokenizerError(`character ${i} would take the mask token id`);
      this.ids.set(ch, i);
    });
    if (eos !== undefined) {
      const id = this.ids.get(eos);
      if (id === undefined || [...eos].length !== 1)
        throw new TokenizerError(
          `the EOS ${JSON.stringify(eos)} is not a character of the alphabet ${JSON.stringify(chars)}`,
        );
      this.eosTokenId = id;
    }
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

  /** The text of a generated answer: `ids` up to the first EOS (excluded), masks shown as `_`. */
  toJSON() {
    return this.eos === undefined
      ? { kind: 'chars', chars: this.chars }
      : { kind: 'chars', chars: this.chars, eos: this.eos };
  }
}

/**
 * The text of a generated answer: `ids` decoded up to the first EOS token (excluded); all of it
 * when the tokenizer has no EOS or none was generated.
 */
export function answerText(tokenizer: Tokenizer, ids: ArrayLike<number>): string {
  const eos = tokenizer.eosTokenId;
  const all = Array.from(ids);
  const end = eos === undefined ? -1 : all.indexOf(eos);
  return tokenizer.decode(end < 0 ? all : all.slice(0, end));
}

/** The default alphabet for a vocabulary: printable characters, one id short of the mask. */
export function defaultAlphabet(vocab: number, maskTokenId: number): string {
  const pool = ' abcdefghijklmnopqrstuvwxyz0123456789+-*=.,:;!?()[]{}<>/#ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const n = Math.min(pool.length, maskTokenId, vocab);
  return pool.slice(0, n);
}

/** A tokenizer from its JSON description: `{ kind: 'chars', chars: '…', eos?: '$' }`. */
export function tokenizerFromJson(json: unknown, maskTokenId: number): Tokenizer {
  const j = json as { kind?: unknown; chars?: unknown; eos?: unknown };
  if (
    j?.kind === 'chars' &&
    typeof j.chars === 'string' &&
    (j.eos === undefined || typeof j.eos === 'string')
  )
    return new CharTokenizer(j.chars, maskTokenId, j.eos);
  throw new TokenizerError(`unsupported tokenizer description ${JSON.stringify(json)}`);
}
