/**
 * Small byte-level BPE tokenizers in the layout the Rust `tokenizers` library serializes
 * (tokenizer.json) and transformers saves (tokenizer_config.json), for the checkpoints
 * `make-model --format hf` writes. The merges are learned from a small corpus by the textbook BPE
 * procedure, so the vocabulary is a real one: every byte has a token and frequent words are single
 * tokens. Two styles: Llama-3-like (LLaDA: GPT-2 pre-tokenizer, a BOS post-processor, header-token
 * chat template) and Qwen2-like (Dream, SDAR, Fast-dLLM v2: NFC, Qwen2's Split regex, ChatML).
 * See docs/checkpoints.md, "Writing checkpoints".
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Family } from './families.ts';

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100 onwards. */
export const byteLevelAlphabet: readonly string[] = (() => {
  const out: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out.push(String.fromCodePoint(printable ? b : next++));
  }
  return out;
})();

/** The byte-level symbols of a text's UTF-8 bytes. */
export const toByteLevel = (s: string): string[] =>
  Array.from(new TextEncoder().encode(s), (b) => byteLevelAlphabet[b] as string);

/** GPT-2's pre-tokenization pattern (also the ByteLevel pre-tokenizer's with use_regex). */
const gpt2Pattern = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Qwen2's Split pattern, as stored in its tokenizer.json. */
export const qwenSplitPattern =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

export interface LearnedBpe {
  /** Token → id: the 256 byte symbols (ids 0–255), then each merge's result in merge order. */
  vocab: Record<string, number>;
  merges: [string, string][];
}

/**
 * Learns up to `count` merges from `text`: the most frequent adjacent pair first (ties by the
 * pair's text), stopping when no pair occurs twice. A merge whose result is already a token adds
 * no id, so the vocabulary may be smaller than 256 + merges.
 */
export function learnMerges(text: string, count: number): LearnedBpe {
  const vocab: Record<string, number> = {};
  byteLevelAlphabet.forEach((c, i) => {
    vocab[c] = i;
  });
  const words = new Map<string, { symbols: string[]; n: number }>();
  for (const piece of text.match(gpt2Pattern) ?? []) {
    const w = words.get(piece) ?? { symbols: toByteLevel(piece), n: 0 };
    w.n++;
    words.set(piece, w);
  }
  const merges: [string, string][] = [];
  while (merges.length < count) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words.values())
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    let best: string | undefined;
    let bestN = 1;
    for (const [key, n] of pairs)
      if (n > bestN || (n === bestN && best !== undefined && key < best)) {
        best = key;
        bestN = n;
      }
    if (best === undefined) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push([a, b]);
    vocab[a + b] ??= Object.keys(vocab).length;
    for (const w of words.values()) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++)
        if (w.symbols[i] === a && w.symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(w.symbols[i] as string);
      w.symbols = out;
    }
  }
  return { vocab, merges };
}

/** A short English corpus (with digits, punctuation and a little non-Latin text) the default merges come from. */
export const defaultCorpus = [
  'The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the woods.',
  'Hello world! Hello again, world. What is the answer? The answer is 42, and the question is a good one.',
  'A diffusion language model writes a whole block of text at once: it starts from masked tokens and',
  'unmasks the ones it is most confident about, step by step, until the block is complete.',
  'Caching the keys and values of the tokens that did not change makes each step cheaper, but the',
  'cache can go stale when the model changes its mind about a token, so it must be refreshed.',
  'In 2024 and 2025 there were many such models: some of them were trained from scratch, and others',
  'were adapted from autoregressive models with the same weights and a new attention mask.',
  'User: what is 12 + 30? Assistant: 12 + 30 = 42. User: and 6 * 7? Assistant: 6 * 7 = 42 as well.',
  'The cat sat on the mat with the hat, and the rat ran under the table when the cat saw it.',
  'She said that she would come back later, but he thought that she would not, so he went home.',
  'There is a time for every thing, and there is a place for every thing that we do in this world.',
  'It was the best of times, it was the worst of times, it was the age of wisdom and of foolishness.',
  'Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 2.71 1/2 50% $10 #1 (a) [b] {c} <d> "e" \'f\'.',
  'Code: def main(): print("hello, world") return 0; for (let i = 0; i < n; i++) { total += i; }',
  'Naïve café in Zürich — 東京 and 北京, Ελληνικά, привет мир, مرحبا بالعالم, नमस्ते दुनिया.',
].join('\n');

/** Merges of the default tokenizers: at most this many (the corpus gives fewer). */
export const defaultMergeCount = 2000;

const learnedByCount = new Map<number, LearnedBpe>();

/** `learnMerges(defaultCorpus, count)`, computed once per count. */
export function defaultBpe(count = defaultMergeCount): LearnedBpe {
  let bpe = learnedByCount.get(count);
  if (bpe === undefined) {
    bpe = learnMerges(defaultCorpus, count);
    learnedByCount.set(count, bpe);
  }
  return bpe;
}

/** The Llama-3-style chat template that LLaDA's Instruct checkpoints use (header tokens, `<|eot_id|>`). */
export const llama3ChatTemplate = String.raw`{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}`;

/** Qwen2's ChatML template (`<|im_start|>role\n…<|im_end|>`), with its default system prompt. */
export const chatmlTemplate = String.raw`{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'system' and loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
`;

export type BpeStyle = 'llama3' | 'qwen2';

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

/** An `added_tokens` entry as the Rust library serializes it. */
export const addedTokenJson = (id: number, content: string, special = true) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: !special,
  special,
});

export interface BpeTokenizerSpec {
  readonly style: BpeStyle;
  readonly bpe: LearnedBpe;
  /**
   * The model vocabulary's size (default: the learned one's). Ids from the learned size up to it
   * hold placeholder tokens `<|unused_{id}|>` that no merge produces, so that the added tokens
   * follow the model vocabulary without a gap, as the Rust library requires to keep their ids.
   */
  readonly modelVocabSize?: number;
  /** Special (and other added) tokens, ids from `modelVocabSize` on without gaps. */
  readonly added: readonly AddedToken[];
  /** Llama-3 style: the token the TemplateProcessing post-processor puts in front. */
  readonly bos?: string;
}

/** tokenizer.json of a byte-level BPE tokenizer in the style's layout. */
export function bpeTokenizerJson(spec: BpeTokenizerSpec): Record<string, unknown> {
  const vocab: Record<string, number> = { ...spec.bpe.vocab };
  const learned = Object.keys(vocab).length;
  for (let id = learned; id < (spec.modelVocabSize ?? learned); id++) {
    let token = `<|unused_${id}|>`;
    while (Object.hasOwn(vocab, token)) token += '_';
    vocab[token] = id;
  }
  const added = spec.added.map((t) => addedTokenJson(t.id, t.content, t.special));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const model = {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
    vocab,
  };
  if (spec.style === 'llama3') {
    const bos = spec.bos;
    const bosId = spec.added.find((t) => t.content === bos)?.id;
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: byteLevel,
      post_processor:
        bos === undefined || bosId === undefined
          ? null
          : {
              type: 'TemplateProcessing',
              single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
              pair: [
                { SpecialToken: { id: bos, type_id: 0 } },
                { Sequence: { id: 'A', type_id: 0 } },
                { SpecialToken: { id: bos, type_id: 1 } },
                { Sequence: { id: 'B', type_id: 1 } },
              ],
              special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
            },
      decoder: byteLevel,
      model: { ...model, merges: spec.bpe.merges.map(([a, b]) => `${a} ${b}`) },
    };
  }
  const plain = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: qwenSplitPattern }, behavior: 'Isolated', invert: false },
        plain,
      ],
    },
    post_processor: plain,
    decoder: plain,
    model: { ...model, merges: spec.bpe.merges },
  };
}

export interface TokenizerConfigSpec {
  readonly style: BpeStyle;
  readonly added: readonly AddedToken[];
  readonly bos?: string;
  readonly eos: string;
  readonly pad?: string;
  readonly mask?: string;
  readonly chatTemplate?: string;
}

/** tokenizer_config.json as transformers saves it for the style's tokenizer class. */
export function bpeTokenizerConfig(spec: TokenizerConfigSpec): Record<string, unknown> {
  const decoder = Object.fromEntries(
    spec.added.map((t) => {
      const { id: _, ...rest } = addedTokenJson(t.id, t.content, t.special);
      return [String(t.id), rest];
    }),
  );
  const template = spec.chatTemplate === undefined ? {} : { chat_template: spec.chatTemplate };
  const mask = spec.mask === undefined ? {} : { mask_token: spec.mask };
  if (spec.style === 'llama3')
    return {
      added_tokens_decoder: decoder,
      bos_token: spec.bos ?? null,
      ...template,
      clean_up_tokenization_spaces: false,
      eos_token: spec.eos,
      ...mask,
      model_max_length: 1e30,
      pad_token: spec.pad ?? null,
      tokenizer_class: 'PreTrainedTokenizerFast',
    };
  return {
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: spec.bos ?? null,
    ...template,
    clean_up_tokenization_spaces: false,
    eos_token: spec.eos,
    errors: 'replace',
    ...mask,
    model_max_length: 131072,
    pad_token: spec.pad ?? null,
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    unk_token: null,
  };
}

// -------------------------------------------------------------------------------------------------
// The families' tokenizers
// -------------------------------------------------------------------------------------------------

interface FamilyTokens {
  style: BpeStyle;
  /** Special tokens in id order; the last is the mask. */
  specials: readonly string[];
  bos?: string;
  eos: string;
  pad: string;
  /** The tokens whose ids config.json carries (as the published configs do). */
  configIds: { bos?: string; eos: string; pad?: string };
}

/** Qwen2's special tokens in id order (Dream, SDAR and Fast-dLLM v2 add their mask after them). */
export const qwenSpecialTokens: readonly string[] = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];

/** LLaDA-8B-Instruct's special tokens, its mask <|mdm_mask|> last. */
export const lladaSpecialTokens: readonly string[] = [
  '<|startoftext|>',
  '<|endoftext|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eot_id|>',
  '<|mdm_mask|>',
];

/** Each family's special tokens, as far as its published tokenizer files are known (docs/checkpoints.md). */
const familyTokens: Readonly<Record<Family, FamilyTokens>> = {
  llada: {
    style: 'llama3',
    specials: lladaSpecialTokens,
    bos: '<|startoftext|>',
    eos: '<|eot_id|>',
    pad: '<|endoftext|>',
    configIds: { eos: '<|endoftext|>', pad: '<|endoftext|>' },
  },
  dream: {
    style: 'qwen2',
    specials: [...qwenSpecialTokens, '<|beginoftext|>', '<|mask|>'],
    bos: '<|beginoftext|>',
    eos: '<|endoftext|>',
    pad: '<|endoftext|>',
    configIds: { bos: '<|endoftext|>', eos: '<|endoftext|>', pad: '<|endoftext|>' },
  },
  sdar: {
    style: 'qwen2',
    specials: [...qwenSpecialTokens, '<|MASK|>'],
    eos: '<|im_end|>',
    pad: '<|endoftext|>',
    configIds: { bos: '<|endoftext|>', eos: '<|endoftext|>' },
  },
  'fast-dllm-v2': {
    style: 'qwen2',
    specials: [...qwenSpecialTokens, '|<MASK>|'],
    eos: '<|im_end|>',
    pad: '<|endoftext|>',
    configIds: { bos: '<|endoftext|>', eos: '<|im_end|>' },
  },
};

export interface TokenizerFiles {
  json: Record<string, unknown>;
  config: Record<string, unknown>;
  /** Ids of the tokens config.json names (bos/eos/pad), and the mask's. */
  ids: { bos?: number; eos: number; pad?: number; mask: number };
  /** Ids [0, learned) are the bytes and merges, [learned, firstSpecial) placeholders, [firstSpecial, size) added tokens. */
  learned: number;
  firstSpecial: number;
  size: number;
}

/**
 * The tokenizer of a `family` checkpoint with `vocab` embedding rows and the mask at
 * `maskTokenId`. Ids: the 256 bytes, up to `merges` learned merges, placeholders, the family's
 * special tokens ending with the mask at `maskTokenId`, then reserved special tokens
 * `<|reserved_special_token_{i}|>` up to `vocab`, so that every id of the model is a token.
 * Returns the reason instead when the mask id leaves no room below it for the bytes and the
 * special tokens.
 */
export function familyTokenizer(
  family: Family,
  shape: { vocab: number; maskTokenId: number },
  merges = defaultMergeCount,
): TokenizerFiles | { reason: string } {
  const t = familyTokens[family];
  const first = shape.maskTokenId - (t.specials.length - 1);
  if (first < 256 || shape.maskTokenId >= shape.vocab)
    return {
      reason:
        `a byte-level BPE tokenizer needs ids 0–255 for the bytes and ${t.specials.length} special tokens ` +
        `ending with the mask, so mask_token_id must be at least ${255 + t.specials.length} and below the ` +
        `vocabulary (it is ${shape.maskTokenId}, vocabulary ${shape.vocab})`,
    };
  const bpe = defaultBpe(Math.min(merges, first - 256));
  const added: AddedToken[] = t.specials.map((content, i) => ({ id: first + i, content, special: true }));
  for (let id = shape.maskTokenId + 1, i = 0; id < shape.vocab; id++, i++)
    added.push({ id, content: `<|reserved_special_token_${i}|>`, special: true });
  const idOf = (token: string | undefined): number | undefined =>
    token === undefined ? undefined : added.find((a) => a.content === token)?.id;
  const mask = t.specials[t.specials.length - 1] as string;
  return {
    json: bpeTokenizerJson({
      style: t.style,
      bpe,
      modelVocabSize: first,
      added,
      ...(t.bos === undefined ? {} : { bos: t.bos }),
    }),
    config: bpeTokenizerConfig({
      style: t.style,
      added,
      ...(t.bos === undefined ? {} : { bos: t.bos }),
      eos: t.eos,
      pad: t.pad,
      mask,
      chatTemplate: t.style === 'llama3' ? llama3ChatTemplate : chatmlTemplate,
    }),
    ids: {
      ...(t.configIds.bos === undefined ? {} : { bos: idOf(t.configIds.bos) as number }),
      eos: idOf(t.configIds.eos) as number,
      ...(t.configIds.pad === undefined ? {} : { pad: idOf(t.configIds.pad) as number }),
      mask: shape.maskTokenId,
    },
    learned: Object.keys(bpe.vocab).length,
    firstSpecial: first,
    size: shape.vocab,
  };
}

/** Writes tokenizer.json and tokenizer_config.json into `dir`; returns their paths and sizes. */
export function writeTokenizerFiles(dir: string, files: TokenizerFiles): { path: string; bytes: number }[] {
  return [
    ['tokenizer.json', files.json],
    ['tokenizer_config.json', files.config],
  ].map(([name, content]) => {
    const path = join(dir, name as string);
    const text = `${JSON.stringify(content, null, 2)}\n`;
    writeFileSync(path, text, { flag: 'wx' });
    return { path, bytes: Buffer.byteLength(text) };
  });
}
