import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  type AddedToken,
  addedTokenJson,
  bpeTokenizerConfig,
  bpeTokenizerJson,
  chatmlTemplate,
  learnMerges,
  lladaSpecialTokens,
  llama3ChatTemplate,
  qwenSpecialTokens,
  toByteLevel,
} from '../../../src/model/hf/bpe.ts';
import { HfTokenizerError, loadTokenizer, maxTokenizerJsonBytes } from '../../../src/model/hf/tokenizer.ts';
import { answerText, TokenizerError } from '../../../src/runtime/tokenizer.ts';
import { expectThrown } from '../../support/errors.ts';
import { scratch } from './scratch.ts';

// ---------------------------------------------------------------------------------------------
// Fixtures: small byte-level BPE tokenizers in the exact layout the Rust `tokenizers` library
// serializes (tokenizer.json) and transformers saves (tokenizer_config.json), built by the
// generator `make-model --format hf` uses (src/model/hf/bpe.ts). The merges are learned from a
// small corpus by the textbook BPE procedure, so that the vocabulary is a real one: every byte has
// a token, and frequent words are single tokens.
// ---------------------------------------------------------------------------------------------

const corpus = [
  'the quick brown fox jumps over the lazy dog.',
  'hello world, hello there, the world is wide.',
  'what is the answer? the answer is 42.',
  'the cat and the hat sat on the mat with the rat.',
  'Hello again, world! Hello, hello.',
  '東京 東京 東京 is a city; 東京 is big.',
  'in 2024 and 2025, 12345 and 12345 again: 123 123 12 12.',
].join(' ');

const learned = learnMerges(corpus, 120);

type Style = 'llada' | 'qwen';

const specials: Record<Style, readonly string[]> = {
  // LLaDA-8B-Instruct's special tokens (its mask is <|mdm_mask|>).
  llada: lladaSpecialTokens,
  // Qwen2's, with Dream's mask token.
  qwen: [...qwenSpecialTokens, '<|mask|>'],
};

/** The style's special tokens, right after the learned vocabulary. */
const added = (style: Style): AddedToken[] =>
  specials[style].map((content, i) => ({
    id: Object.keys(learned.vocab).length + i,
    content,
    special: true,
  }));

/** tokenizer.json of a style: LLaDA-like (GPT-2 byte level, BOS post-processor, string merges) or Qwen2-like. */
const tokenizerJson = (style: Style): Record<string, unknown> =>
  style === 'llada'
    ? bpeTokenizerJson({ style: 'llama3', bpe: learned, added: added(style), bos: '<|startoftext|>' })
    : bpeTokenizerJson({ style: 'qwen2', bpe: learned, added: added(style) });

const tokenizerConfig = (style: Style): Record<string, unknown> =>
  style === 'llada'
    ? bpeTokenizerConfig({
        style: 'llama3',
        added: added(style),
        bos: '<|startoftext|>',
        eos: '<|eot_id|>',
        pad: '<|endoftext|>',
        chatTemplate: llama3ChatTemplate,
      })
    : bpeTokenizerConfig({
        style: 'qwen2',
        added: added(style),
        eos: '<|im_end|>',
        pad: '<|endoftext|>',
        mask: '<|mask|>',
        chatTemplate: chatmlTemplate,
      });

const tmp = scratch('kvplan-tokenizer-');

interface Files {
  'tokenizer.json'?: unknown;
  'tokenizer_config.json'?: unknown;
  'config.json'?: unknown;
  'chat_template.jinja'?: string;
}

/** A checkpoint directory holding these files (a string is written as is, anything else as JSON). */
function dirWith(files: Files): string {
  const dir = tmp.dir('t');
  for (const [name, content] of Object.entries(files))
    if (content !== undefined)
      writeFileSync(
        join(dir, name),
        typeof content === 'string' ? content : JSON.stringify(content, null, 2),
      );
  return dir;
}

/** A directory of the style's tokenizer.json and tokenizer_config.json (`config`'s keys set), and `files`. */
const styleDir = (style: Style, config: Record<string, unknown> = {}, files: Files = {}): string =>
  dirWith({
    'tokenizer.json': tokenizerJson(style),
    'tokenizer_config.json': { ...tokenizerConfig(style), ...config },
    ...files,
  });

const base = Object.keys(learned.vocab).length;
const lladaDir = styleDir('llada', {}, { 'config.json': { model_type: 'llada', mask_token_id: base + 5 } });
const qwenDir = styleDir('qwen', {}, { 'config.json': { model_type: 'Dream' } });
const llada = loadTokenizer(lladaDir);
const qwen = loadTokenizer(qwenDir);

/** The call fails with an HfTokenizerError (a TokenizerError) whose message holds every part; returns it. */
function expectError(f: () => unknown, ...parts: string[]): string {
  const err = expectThrown(f, HfTokenizerError, ...parts);
  expect(err).toBeInstanceOf(TokenizerError);
  return err.message;
}

const texts = [
  'the quick brown fox jumps over the lazy dog.',
  'Hello, world!  Two  spaces,\ttabs\tand\nnew\nlines\n',
  "What's 6 * 7? It's 42; isn't it... (yes) [ok] {x: 1}",
  'naïve café, Zürich — 東京 and Ελληνικά, привет',
  'emoji: 🦊 👩‍👩‍👧 🇫🇷 ❤️ and a lone combining mark e\u0301 (NFD)',
  '',
];

describe('encode and decode', () => {
  for (const [name, tok] of [
    ['LLaDA-style', llada],
    ['Qwen-style', qwen],
  ] as const)
    test(`${name}: decode(encode(text)) is the text, ASCII and UTF-8`, () => {
      for (const text of texts) {
        const ids = tok.encode(text);
        expect(ids).toBeInstanceOf(Int32Array);
        for (const id of ids) expect(id >= 0 && id < base).toBe(true);
        // The Qwen style normalizes to NFC first, as its tokenizer.json says.
        expect(tok.decode(ids)).toBe(name === 'Qwen-style' ? text.normalize('NFC') : text);
      }
    });

  test('merges are applied: frequent words are single tokens, unseen text falls back to bytes', () => {
    for (const tok of [llada, qwen]) {
      const the = learned.vocab[toByteLevel(' the').join('')];
      expect(the).toBeDefined();
      expect(Array.from(tok.encode(' the'))).toEqual([the]);
      // "hello" is in the corpus often enough to be merged whole.
      expect(Array.from(tok.encode('hello'))).toEqual([learned.vocab.hello]);
      // An emoji never seen is its four UTF-8 bytes.
      const fox = tok.encode('🦊');
      expect(Array.from(fox)).toEqual(toByteLevel('🦊').map((c) => learned.vocab[c]));
      // Half an emoji decodes to the replacement character, not to nothing.
      expect(tok.decode(fox.subarray(0, 2))).toBe('\u{fffd}');
    }
  });

  test('the two styles pre-tokenize differently: Qwen splits digits one by one', () => {
    const n = '12345';
    expect(llada.encode(n).length).toBeLessThan(qwen.encode(n).length);
    expect(qwen.encode(n).length).toBe(5);
  });

  test('special tokens in the text are single ids; decode keeps or skips them', () => {
    const imStart = base + 1;
    const imEnd = base + 2;
    const text = '<|im_start|>user\nhello world<|im_end|>\n';
    const ids = Array.from(qwen.encode(text));
    expect(ids[0]).toBe(imStart);
    expect(ids.filter((id) => id === imStart)).toHaveLength(1);
    expect(ids.filter((id) => id === imEnd)).toHaveLength(1);
    expect(ids.indexOf(imEnd)).toBe(ids.length - 2);
    expect(qwen.decode(ids)).toBe(text);
    expect(qwen.decode(ids, { skipSpecialTokens: true })).toBe('user\nhello world\n');
    // The mask token written in a prompt is the mask id (as in transformers).
    expect(Array.from(qwen.encode('a<|mask|>b'))).toEqual([
      learned.vocab.a,
      qwen.maskTokenId,
      learned.vocab.b,
    ]);
  });

  test('the post-processor runs only when asked: LLaDA-style puts BOS in front', () => {
    const plain = Array.from(llada.encode('hello'));
    const withBos = Array.from(llada.encode('hello', { addSpecialTokens: true }));
    expect(withBos).toEqual([base, ...plain]);
  });

  test('ids the tokenizer lacks decode as U+FFFD; negative or fractional ids are refused', () => {
    const hello = Array.from(qwen.encode('hello'));
    expect(qwen.decode([...hello, 999_999, ...hello])).toBe('hello\u{fffd}hello');
    expect(qwen.decode([])).toBe('');
    expectError(() => qwen.decode([1, -1]), '-1', 'at 1');
    expectError(() => qwen.decode([0.5]), '0.5');
  });

  test('clean_up_tokenization_spaces follows tokenizer_config.json (unset: false, as in transformers ≥ 4.45)', () => {
    const text = 'yes , and no .';
    expect(qwen.decode(qwen.encode(text))).toBe(text);
    const dir = styleDir('qwen', { clean_up_tokenization_spaces: true });
    const tok = loadTokenizer(dir);
    expect(tok.decode(tok.encode(text))).toBe('yes, and no.');
  });

  test('answerText cuts at the EOS from tokenizer_config.json', () => {
    const ids = [...qwen.encode('hello world'), base + 2, ...qwen.encode('junk')];
    expect(answerText(qwen, ids)).toBe('hello world');
  });
});

describe('special tokens and the mask', () => {
  test('LLaDA-style: BOS/EOS/PAD from tokenizer_config.json, mask from config.json', () => {
    expect(llada.special.bos).toEqual({ token: '<|startoftext|>', id: base });
    expect(llada.special.eos).toEqual({ token: '<|eot_id|>', id: base + 4 });
    expect(llada.eosTokenId).toBe(base + 4);
    expect(llada.special.pad).toEqual({ token: '<|endoftext|>', id: base + 1 });
    expect(llada.special.unk).toBeUndefined();
    expect(llada.maskTokenId).toBe(base + 5);
    expect(llada.maskToken).toBe('<|mdm_mask|>');
    expect(llada.maskSource).toBe('config.json');
    expect(llada.vocabSize).toBe(base + specials.llada.length);
    expect(llada.toJSON()).toEqual({ kind: 'hf', dir: lladaDir });
  });

  test('Qwen-style: no BOS, mask from tokenizer_config.json mask_token', () => {
    expect(qwen.special.bos).toBeUndefined();
    expect(qwen.eosTokenId).toBe(base + 2);
    expect(qwen.maskTokenId).toBe(base + 3);
    expect(qwen.maskToken).toBe('<|mask|>');
    expect(qwen.maskSource).toBe('tokenizer_config.json');
    for (const id of [base, base + 1, base + 2, base + 3]) expect(qwen.specialIds.has(id)).toBe(true);
    expect(qwen.specialIds.has(learned.vocab.a as number)).toBe(false);
  });

  test('the mask is found by its spelling when no file names it (SDAR spells it <|MASK|>)', () => {
    const json = tokenizerJson('qwen');
    (json.added_tokens as { content: string }[])[3] = addedTokenJson(base + 3, '<|MASK|>');
    const { mask_token: _, added_tokens_decoder: __, ...config } = tokenizerConfig('qwen');
    const tok = loadTokenizer(dirWith({ 'tokenizer.json': json, 'tokenizer_config.json': config }));
    expect(tok.maskTokenId).toBe(base + 3);
    expect(tok.maskToken).toBe('<|MASK|>');
    expect(tok.maskSource).toBe('vocabulary');
  });

  test("the caller's mask id wins, even one the tokenizer has no token for", () => {
    const tok = loadTokenizer(qwenDir, { maskTokenId: 151665 });
    expect(tok.maskTokenId).toBe(151665);
    expect(tok.maskToken).toBeUndefined();
    expect(tok.maskSource).toBe('option');
    expect(tok.decode([151665], { skipSpecialTokens: true })).toBe('');
    expect(tok.decode([151665])).toBe('\u{fffd}');
    expectError(() => loadTokenizer(qwenDir, { maskTokenId: -3 }), 'mask token id -3');
  });

  test('a mask that cannot be found, or two files that disagree on it, are errors', () => {
    const json = tokenizerJson('qwen');
    json.added_tokens = (json.added_tokens as unknown[]).slice(0, 3);
    const { mask_token: _, added_tokens_decoder: __, ...config } = tokenizerConfig('qwen');
    const dir = dirWith({ 'tokenizer.json': json, 'tokenizer_config.json': config });
    expectError(() => loadTokenizer(dir), dir, 'no mask token', 'mask_token_id', '<|mdm_mask|>', '<|MASK|>');

    const disagree = styleDir('qwen', {}, { 'config.json': { mask_token_id: base + 1 } });
    expectError(
      () => loadTokenizer(disagree),
      join(disagree, 'config.json'),
      `is ${base + 1}`,
      '<|mask|>',
      `id ${base + 3}`,
    );

    const unknown = styleDir('qwen', { mask_token: '<|nope|>' });
    expectError(() => loadTokenizer(unknown), 'tokenizer_config.json', 'mask_token "<|nope|>"');

    const bad = styleDir('qwen', {}, { 'config.json': { mask_token_id: 'x' } });
    expectError(() => loadTokenizer(bad), 'config.json', '"mask_token_id" is "x"');
  });

  test('added_tokens_decoder adds a token tokenizer.json lacks, and conflicts are refused', () => {
    const config = tokenizerConfig('qwen');
    const decoder = config.added_tokens_decoder as Record<string, unknown>;
    decoder[String(base + 4)] = { content: '<think>', special: false, normalized: false };
    decoder[String(base + 5)] = { content: '<|fim_pad|>', special: true, normalized: false };
    const tok = loadTokenizer(styleDir('qwen', config));
    expect(Array.from(tok.encode('a<think>b'))).toEqual([learned.vocab.a, base + 4, learned.vocab.b]);
    expect(tok.decode([base + 4, base + 5], { skipSpecialTokens: true })).toBe('<think>');
    expect(tok.vocabSize).toBe(base + 6);

    const clash = tokenizerConfig('qwen');
    (clash.added_tokens_decoder as Record<string, unknown>)[String(base + 2)] = { content: '<|other|>' };
    expectError(
      () => loadTokenizer(styleDir('qwen', clash)),
      'tokenizer_config.json',
      `id ${base + 2}`,
      '<|other|>',
      '<|im_end|>',
    );
    const clashVocab = tokenizerConfig('qwen');
    (clashVocab.added_tokens_decoder as Record<string, unknown>)['5'] = { content: '<|five|>' };
    expectError(() => loadTokenizer(styleDir('qwen', clashVocab)), 'id 5', 'vocabulary gives it to');
  });

  test('a special token tokenizer_config.json names that tokenizer.json lacks is an error', () => {
    const dir = styleDir('llada', { eos_token: { content: '</s>', __type: 'AddedToken' } });
    expectError(() => loadTokenizer(dir), join(dir, 'tokenizer_config.json'), 'eos_token "</s>"');
  });
});

describe('chat templates', () => {
  const chat = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'What is 6 * 7?' },
    { role: 'assistant', content: '42' },
    { role: 'user', content: 'And 🦊?' },
  ];

  test('Qwen-style <|im_start|> template, with and without the generation prompt', () => {
    // Rendered by Python's jinja2 with transformers' settings (trim_blocks, lstrip_blocks).
    const expected =
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 6 * 7?<|im_end|>\n' +
      '<|im_start|>assistant\n42<|im_end|>\n<|im_start|>user\nAnd 🦊?<|im_end|>\n';
    expect(qwen.applyChatTemplate(chat, { addGenerationPrompt: false })).toBe(expected);
    expect(qwen.applyChatTemplate(chat)).toBe(`${expected}<|im_start|>assistant\n`);
    expect(qwen.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  test('LLaDA-style <|start_header_id|> template: bos_token provided, content trimmed', () => {
    const messages = [{ role: 'user', content: '  What is 2+2?\n' }];
    const text = llada.applyChatTemplate(messages);
    // Rendered by Python's jinja2 with transformers' settings.
    expect(text).toBe(
      '<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    const ids = Array.from(llada.encodeChat(messages));
    // Exactly one BOS: the template's, not the post-processor's as well.
    expect(ids[0]).toBe(base);
    expect(ids.filter((id) => id === base)).toHaveLength(1);
    expect(ids.filter((id) => id === base + 2)).toHaveLength(2);
    expect(ids.at(-1)).not.toBe(base + 4);
    expect(llada.decode(ids)).toBe(text);
    expect(llada.decode(ids, { skipSpecialTokens: true })).toBe('user\n\nWhat is 2+2?assistant\n\n');
  });

  test('extra variables reach the template; chat_template.jinja wins over the config', () => {
    const template =
      '{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ mask_token }}|{{ flavour }}|{{ messages | length }}';
    const dir = styleDir('qwen', {}, { 'chat_template.jinja': template });
    const tok = loadTokenizer(dir);
    expect(tok.applyChatTemplate(chat, { variables: { flavour: 'mint' } })).toBe(
      '|<|im_end|>|<|endoftext|>|<|mask|>|mint|4',
    );
  });

  test('a list of named templates: "default" is used', () => {
    const dir = styleDir('qwen', {
      chat_template: [
        { name: 'tool_use', template: 'tools' },
        { name: 'default', template: 'plain {{ messages[0].content }}' },
      ],
    });
    expect(loadTokenizer(dir).applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('plain x');
    expect(loadTokenizer(dir, { chatTemplateName: 'tool_use' }).applyChatTemplate([])).toBe('tools');
    expectError(
      () => loadTokenizer(dir, { chatTemplateName: 'rag' }),
      'no template named "rag"',
      '"tool_use"',
    );
  });

  test('templates that fail to parse or render, and a missing template, are errors naming the file', () => {
    const raising = styleDir('qwen', {
      chat_template:
        "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('Unknown role: ' + m.role) }}{% endif %}{{ m.content }}{% endfor %}",
    });
    const tok = loadTokenizer(raising);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'ok' }])).toBe('ok');
    expectError(
      () => tok.applyChatTemplate([{ role: 'tool', content: 'x' }]),
      join(raising, 'tokenizer_config.json'),
      'failed to render',
      'Unknown role: tool',
    );
    expectError(
      () =>
        tok.applyChatTemplate([{ role: 'user', content: 3 } as unknown as { role: string; content: string }]),
      'chat message 0',
    );

    const broken = styleDir('qwen', {}, { 'chat_template.jinja': '{% for m in messages %}{{ m.content }}' });
    // Loading works (a broken template does not stop plain generation); using it does not.
    const tb = loadTokenizer(broken);
    expect(tb.hasChatTemplate).toBe(true);
    expectError(() => tb.applyChatTemplate([]), join(broken, 'chat_template.jinja'), 'cannot parse');

    const { chat_template: _, ...noTemplate } = tokenizerConfig('llada');
    const base = loadTokenizer(
      dirWith({ 'tokenizer.json': tokenizerJson('llada'), 'tokenizer_config.json': noTemplate }),
    );
    expect(base.hasChatTemplate).toBe(false);
    expectError(() => base.applyChatTemplate([]), 'tokenizer_config.json', 'no "chat_template"');
  });
});

describe('files that cannot be used', () => {
  test('missing tokenizer.json', () => {
    const dir = dirWith({ 'tokenizer_config.json': tokenizerConfig('qwen') });
    expectError(() => loadTokenizer(dir), join(dir, 'tokenizer.json'), 'not found');
  });

  test('invalid JSON, in tokenizer.json and in tokenizer_config.json', () => {
    const dir = dirWith({ 'tokenizer.json': '{"model": {"type": "BPE",' });
    expectError(() => loadTokenizer(dir), join(dir, 'tokenizer.json'), 'not valid JSON');
    const dir2 = styleDir('qwen', {}, { 'tokenizer_config.json': "{'a': 1}" });
    expectError(() => loadTokenizer(dir2), join(dir2, 'tokenizer_config.json'), 'not valid JSON');
    const dir3 = dirWith({ 'tokenizer.json': '[1, 2]' });
    expectError(() => loadTokenizer(dir3), join(dir3, 'tokenizer.json'), 'not a JSON object');
  });

  test('a tokenizer.json the library cannot build', () => {
    const noModel = dirWith({ 'tokenizer.json': { version: '1.0', added_tokens: [] } });
    expectError(() => loadTokenizer(noModel), 'tokenizer.json', 'no "model"');
    const weird = dirWith({ 'tokenizer.json': { ...tokenizerJson('qwen'), model: { type: 'Quantum' } } });
    expectError(() => loadTokenizer(weird), join(weird, 'tokenizer.json'), 'cannot build', 'Quantum');
    const badAdded = dirWith({ 'tokenizer.json': { ...tokenizerJson('qwen'), added_tokens: [{ id: 'x' }] } });
    expectError(() => loadTokenizer(badAdded), 'added_tokens[0]');
  });

  test('a tokenizer.json over the size limit is refused before it is read', () => {
    const dir = dirWith({});
    const file = join(dir, 'tokenizer.json');
    // A sparse file: over the limit, yet it holds no data (reading it would take seconds and 200 MB).
    writeFileSync(file, '');
    truncateSync(file, maxTokenizerJsonBytes + 1);
    const start = performance.now();
    expectError(() => loadTokenizer(dir), file, '200,000,001 bytes', '200,000,000-byte limit');
    expect(performance.now() - start).toBeLessThan(1000);
  });
});
