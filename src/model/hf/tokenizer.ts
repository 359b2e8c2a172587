/**
 * The tokenizer of a Hugging Face checkpoint directory: `tokenizer.json` run by
 * `@huggingface/tokenizers` (a pure-JS port of the Rust `tokenizers` library), the special tokens
 * of `tokenizer_config.json`, the model's mask token, and the chat template rendered through
 * `@huggingface/jinja`. Every problem is an HfTokenizerError (a TokenizerError) whose message
 * names the file. See docs/checkpoints.md, "Tokenizers".
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as LibTokenizer } from '@huggingface/tokenizers';
import type { Tokenizer } from '../../runtime/tokenizer.ts';
import {
  type ChatMessage,
  ChatTemplate,
  type ChatTemplateSource,
  chatTemplateOf,
  HfTokenizerError,
} from './chat.ts';

export { type ChatMessage, HfTokenizerError } from './chat.ts';

/** tokenizer.json is refused above this size, before it is read (Qwen's is 7 MB, LLaDA's about 10 MB). */
export const maxTokenizerJsonBytes = 200_000_000;

/** tokenizer_config.json, config.json and chat_template.jinja are small; this bounds a hostile one. */
export const maxSideFileBytes = 100_000_000;

/** Spellings of the mask token, tried in this order when neither config.json nor tokenizer_config.json names it. */
export const maskTokenNames: readonly string[] = ['<|mdm_mask|>', '<|MASK|>', '<|mask|>', '<mask>', '[MASK]'];

/** The part of `@huggingface/tokenizers`' Tokenizer used here (its published types do not resolve under NodeNext). */
interface Lib {
  encode(
    text: string,
    options: { add_special_tokens: boolean },
  ): { ids: (number | undefined)[]; tokens: string[] };
  decode(
    ids: number[],
    options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean },
  ): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
}

export interface SpecialToken {
  token: string;
  id: number;
}

/** Where the mask token id came from. */
export type MaskSource = 'option' | 'config.json' | 'tokenizer_config.json' | 'vocabulary';

export interface LoadTokenizerOptions {
  /**
   * The mask token id the caller has already resolved (e.g. `openCheckpoint(dir).config.maskTokenId`,
   * which applies the family's default). Wins over config.json and the tokenizer's own mask token.
   */
  maskTokenId?: number;
  /** Which of a list of named chat templates to use (default "default"). */
  chatTemplateName?: string;
}

export interface EncodeOptions {
  /** Run tokenizer.json's post-processor (e.g. a BOS in front). Default false, as for a chat prompt. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (BOS, EOS, the mask, chat markers…). Default false. */
  skipSpecialTokens?: boolean;
}

export interface ChatOptions {
  /** Append the header of the assistant's turn. Default true. */
  addGenerationPrompt?: boolean;
  /** More template variables (`tools`, `enable_thinking`, …), as transformers' keyword arguments. */
  variables?: Record<string, unknown>;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

const q = (s: string): string => JSON.stringify(s);

/** Reads a JSON file after checking its size; `undefined` when absent and `optional`. */
function readJson(file: string, limit: number, optional: boolean): unknown {
  const text = readText(file, limit, optional);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HfTokenizerError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function readText(file: string, limit: number, optional: boolean): string | undefined {
  if (!existsSync(file)) {
    if (optional) return undefined;
    throw new HfTokenizerError(`${file}: not found (the checkpoint has no tokenizer)`);
  }
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (e) {
    throw new HfTokenizerError(`${file}: cannot read (${(e as Error).message})`);
  }
  if (size > limit)
    throw new HfTokenizerError(
      `${file}: ${size.toLocaleString('en-US')} bytes is more than the ${limit.toLocaleString('en-US')}-byte limit`,
    );
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new HfTokenizerError(`${file}: cannot read (${(e as Error).message})`);
  }
}

/** A special token as tokenizer_config.json spells it: a string, an AddedToken object, or null. */
function tokenText(value: unknown, key: string, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.content === 'string') return value.content;
  throw new HfTokenizerError(`${file}: "${key}" is neither a string nor an {"content": …} object`);
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

/** The token → id map of tokenizer.json's model, where it has one (BPE, WordPiece: an object; Unigram: a list). */
function modelVocab(model: Record<string, unknown>): Map<string, number> {
  const out = new Map<string, number>();
  const v = model.vocab;
  if (isRecord(v)) for (const [token, id] of Object.entries(v)) if (isId(id)) out.set(token, id);
  if (Array.isArray(v))
    v.forEach((entry, i) => {
      if (Array.isArray(entry) && typeof entry[0] === 'string') out.set(entry[0], i);
    });
  return out;
}

/**
 * Checks tokenizer.json's shape and merges tokenizer_config.json's `added_tokens_decoder` into its
 * `added_tokens`, as transformers does when it loads both: an entry that tokenizer.json lacks is
 * added (with its flags), one that agrees is kept (special if either file says so), and one that
 * gives an id another token already has is refused.
 */
function mergeAddedTokens(
  json: Record<string, unknown>,
  decoder: unknown,
  jsonFile: string,
  configFile: string,
): AddedTokenJson[] {
  const model = json.model as Record<string, unknown>;
  const listed = json.added_tokens ?? [];
  if (!Array.isArray(listed)) throw new HfTokenizerError(`${jsonFile}: "added_tokens" is not a list`);
  const added: AddedTokenJson[] = listed.map((t, i) => {
    if (!isRecord(t) || !isId(t.id) || typeof t.content !== 'string')
      throw new HfTokenizerError(`${jsonFile}: added_tokens[${i}] has no integer "id" and string "content"`);
    return { ...t } as unknown as AddedTokenJson;
  });
  if (decoder === undefined || decoder === null) return added;
  if (!isRecord(decoder))
    throw new HfTokenizerError(`${configFile}: "added_tokens_decoder" is not an object`);

  const byId = new Map(added.map((t) => [t.id, t]));
  const vocab = modelVocab(model);
  const vocabById = new Map<number, string>();
  for (const [token, id] of vocab) vocabById.set(id, token);
  for (const [key, entry] of Object.entries(decoder)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !isId(id) || !isRecord(entry) || typeof entry.content !== 'string')
      throw new HfTokenizerError(
        `${configFile}: added_tokens_decoder[${q(key)}] is not an id with a {"content": string, …} entry`,
      );
    const content = entry.content;
    const flags = {
      special: entry.special === true,
      lstrip: entry.lstrip === true,
      rstrip: entry.rstrip === true,
      single_word: entry.single_word === true,
      normalized: typeof entry.normalized === 'boolean' ? entry.normalized : entry.special !== true,
    };
    const have = byId.get(id);
    if (have !== undefined) {
      if (have.content !== content)
        throw new HfTokenizerError(
          `${configFile}: added_tokens_decoder gives id ${id} to ${q(content)}, but ${jsonFile} gives it to ${q(have.content)}`,
        );
      if (flags.special) have.special = true;
      continue;
    }
    const vocabToken = vocabById.get(id);
    if (vocabToken !== undefined && vocabToken !== content)
      throw new HfTokenizerError(
        `${configFile}: added_tokens_decoder gives id ${id} to ${q(content)}, but ${jsonFile}'s vocabulary gives it to ${q(vocabToken)}`,
      );
    const other = added.find((t) => t.content === content)?.id ?? vocab.get(content);
    if (other !== undefined && other !== id)
      throw new HfTokenizerError(
        `${configFile}: added_tokens_decoder gives ${q(content)} id ${id}, but ${jsonFile} gives it id ${other}`,
      );
    const token: AddedTokenJson = { id, content, ...flags };
    added.push(token);
    byId.set(id, token);
  }
  return added;
}

/** The names of transformers' `special_tokens_map`, passed to chat templates as strings. */
const specialKeys = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
];

/**
 * A checkpoint's tokenizer. Implements kvplan's Tokenizer (encode, decode, eosTokenId), and adds
 * the special tokens, the mask token and the chat template.
 */
export class HfTokenizer implements Tokenizer {
  /** One more than the largest id the tokenizer knows (the model's vocabulary may be larger). */
  readonly vocabSize: number;
  /** Special tokens named by tokenizer_config.json, resolved to ids. */
  readonly special: {
    readonly bos?: SpecialToken;
    readonly eos?: SpecialToken;
    readonly pad?: SpecialToken;
    readonly unk?: SpecialToken;
  };
  readonly eosTokenId?: number;
  readonly maskTokenId: number;
  /** The mask token's text; `undefined` when the id was given (option or config.json) and the tokenizer has no token for it. */
  readonly maskToken: string | undefined;
  readonly maskSource: MaskSource;
  /** Ids skipped by `decode(ids, {skipSpecialTokens: true})`. */
  readonly specialIds: ReadonlySet<number>;
  private readonly cleanUpSpaces: boolean;
  private readonly templateVariables: Record<string, unknown>;
  private readonly chatSource: ChatTemplateSource | undefined;
  private chat: ChatTemplate | undefined;

  /** Use `loadTokenizer(dir)`. */
  constructor(
    readonly dir: string,
    private readonly lib: Lib,
    init: {
      vocabSize: number;
      special: HfTokenizer['special'];
      mask: { id: number; token: string | undefined; source: MaskSource };
      specialIds: Set<number>;
      cleanUpSpaces: boolean;
      templateVariables: Record<string, unknown>;
      chat: ChatTemplateSource | undefined;
    },
  ) {
    this.vocabSize = init.vocabSize;
    this.special = init.special;
    if (init.special.eos !== undefined) this.eosTokenId = init.special.eos.id;
    this.maskTokenId = init.mask.id;
    this.maskToken = init.mask.token;
    this.maskSource = init.mask.source;
    this.specialIds = init.specialIds;
    this.cleanUpSpaces = init.cleanUpSpaces;
    this.templateVariables = init.templateVariables;
    this.chatSource = init.chat;
  }

  /**
   * Token ids of `text`. Special tokens written in the text (`<|im_start|>`, the mask token…) are
   * matched first and give their single id, as in transformers.
   */
  encode(text: string, options: EncodeOptions = {}): Int32Array {
    const { ids, tokens } = this.lib.encode(text, { add_special_tokens: options.addSpecialTokens ?? false });
    const out = new Int32Array(ids.length);
    ids.forEach((id, i) => {
      if (id === undefined)
        throw new HfTokenizerError(
          `${join(this.dir, 'tokenizer.json')}: the piece ${q(tokens[i] ?? '')} is not in the vocabulary and the model has no unk_token`,
        );
      out[i] = id;
    });
    return out;
  }

  /**
   * The text of `ids`. An id the tokenizer has no token for (the model's vocabulary is often
   * larger) reads as U+FFFD; a negative or fractional id is an error.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const parts: string[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length > 0)
        parts.push(
          this.lib.decode(run, {
            skip_special_tokens: skip,
            clean_up_tokenization_spaces: this.cleanUpSpaces,
          }),
        );
      run = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (!Number.isSafeInteger(id) || id < 0)
        throw new HfTokenizerError(`cannot decode ${id} (at ${i}): token ids are non-negative integers`);
      if (skip && this.specialIds.has(id)) continue;
      if (this.lib.id_to_token(id) === undefined) {
        flush();
        parts.push('\u{fffd}');
      } else run.push(id);
    }
    flush();
    return parts.join('');
  }

  /** The token with this id, if the tokenizer has one. */
  idToToken(id: number): string | undefined {
    return this.lib.id_to_token(id);
  }

  /** The id of a token (added tokens included), if the tokenizer has it. */
  tokenToId(token: string): number | undefined {
    return this.lib.token_to_id(token);
  }

  /** Whether the checkpoint has a chat template (base models often have none). */
  get hasChatTemplate(): boolean {
    return this.chatSource !== undefined;
  }

  /**
   * The prompt text of a conversation, from the checkpoint's chat template, with `bos_token`,
   * `eos_token`, … set as transformers sets them.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatOptions = {}): string {
    if (this.chatSource === undefined)
      throw new HfTokenizerError(
        `${join(this.dir, 'tokenizer_config.json')}: no "chat_template" (and no chat_template.jinja): the checkpoint is not a chat model; give the prompt as plain text`,
      );
    this.chat ??= new ChatTemplate(this.chatSource);
    return this.chat.render(messages, options.addGenerationPrompt ?? true, {
      ...this.templateVariables,
      ...options.variables,
    });
  }

  /** `encode(applyChatTemplate(…))` without the post-processor, as transformers' `tokenize=True`. */
  encodeChat(messages: readonly ChatMessage[], options: ChatOptions = {}): Int32Array {
    return this.encode(this.applyChatTemplate(messages, options));
  }

  toJSON() {
    return { kind: 'hf', dir: this.dir };
  }
}

/** The mask token: the caller's id, else config.json's `mask_token_id`, else the tokenizer's mask token, else a known spelling. */
function resolveMask(
  dir: string,
  lib: Lib,
  options: LoadTokenizerOptions,
  tokenizerConfig: Record<string, unknown>,
  configFile: string,
): { id: number; token: string | undefined; source: MaskSource } {
  const fromOption = options.maskTokenId;
  if (fromOption !== undefined) {
    if (!isId(fromOption))
      throw new HfTokenizerError(`${dir}: mask token id ${fromOption} is not a non-negative integer`);
    return { id: fromOption, token: lib.id_to_token(fromOption), source: 'option' };
  }
  const named = tokenText(tokenizerConfig.mask_token, 'mask_token', configFile);
  const namedId = named === undefined ? undefined : lib.token_to_id(named);
  if (named !== undefined && namedId === undefined)
    throw new HfTokenizerError(
      `${configFile}: mask_token ${q(named)} is not a token of ${join(dir, 'tokenizer.json')}`,
    );

  const modelConfigFile = join(dir, 'config.json');
  const modelConfig = readJson(modelConfigFile, maxSideFileBytes, true);
  const fromConfig = isRecord(modelConfig) ? modelConfig.mask_token_id : undefined;
  if (fromConfig !== undefined && fromConfig !== null) {
    if (!isId(fromConfig))
      throw new HfTokenizerError(
        `${modelConfigFile}: "mask_token_id" is ${JSON.stringify(fromConfig)}, not a non-negative integer`,
      );
    if (namedId !== undefined && namedId !== fromConfig)
      throw new HfTokenizerError(
        `${modelConfigFile}: "mask_token_id" is ${fromConfig}, but ${configFile} names mask_token ${q(named ?? '')}, id ${namedId}`,
      );
    return { id: fromConfig, token: lib.id_to_token(fromConfig), source: 'config.json' };
  }
  if (named !== undefined && namedId !== undefined)
    return { id: namedId, token: named, source: 'tokenizer_config.json' };
  for (const token of maskTokenNames) {
    const id = lib.token_to_id(token);
    if (id !== undefined) return { id, token, source: 'vocabulary' };
  }
  throw new HfTokenizerError(
    `${dir}: no mask token: config.json has no "mask_token_id", tokenizer_config.json no "mask_token", and tokenizer.json has none of ${maskTokenNames.join(' ')}`,
  );
}

/**
 * Loads the tokenizer of a checkpoint directory: `tokenizer.json` (required, at most 200 MB),
 * `tokenizer_config.json` (special tokens, `added_tokens_decoder`, `chat_template`,
 * `clean_up_tokenization_spaces`), `chat_template.jinja` when present (it wins over the config's
 * template, as in transformers), and `config.json` for `mask_token_id`.
 */
export function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): HfTokenizer {
  const jsonFile = join(dir, 'tokenizer.json');
  const configFile = join(dir, 'tokenizer_config.json');
  const json = readJson(jsonFile, maxTokenizerJsonBytes, false);
  if (!isRecord(json)) throw new HfTokenizerError(`${jsonFile}: not a JSON object`);
  if (!isRecord(json.model)) throw new HfTokenizerError(`${jsonFile}: no "model" object`);
  const rawConfig = readJson(configFile, maxSideFileBytes, true) ?? {};
  if (!isRecord(rawConfig)) throw new HfTokenizerError(`${configFile}: not a JSON object`);

  const added = mergeAddedTokens(json, rawConfig.added_tokens_decoder, jsonFile, configFile);
  const names: Record<string, string> = {};
  for (const key of specialKeys) {
    const t = tokenText(rawConfig[key], key, configFile);
    if (t !== undefined) names[key] = t;
  }
  const extraSpecial = rawConfig.additional_special_tokens ?? [];
  if (!Array.isArray(extraSpecial))
    throw new HfTokenizerError(`${configFile}: "additional_special_tokens" is not a list`);
  const additional = extraSpecial.map((t, i) => {
    const text = tokenText(t, `additional_special_tokens[${i}]`, configFile);
    if (text === undefined)
      throw new HfTokenizerError(`${configFile}: additional_special_tokens[${i}] is null`);
    return text;
  });

  let lib: Lib;
  try {
    lib = new LibTokenizer(
      {
        normalizer: null,
        pre_tokenizer: null,
        post_processor: null,
        decoder: null,
        ...json,
        added_tokens: added,
      },
      {
        ...rawConfig,
        // The library's decode skips these by text; transformers' all_special_tokens are these too.
        additional_special_tokens: [...new Set([...Object.values(names), ...additional])],
      },
    ) as unknown as Lib;
  } catch (e) {
    throw new HfTokenizerError(
      `${jsonFile}: @huggingface/tokenizers cannot build this tokenizer: ${(e as Error).message}`,
    );
  }

  const resolve = (key: string): SpecialToken | undefined => {
    const token = names[key];
    if (token === undefined) return undefined;
    const id = lib.token_to_id(token);
    if (id === undefined)
      throw new HfTokenizerError(`${configFile}: ${key} ${q(token)} is not a token of ${jsonFile}`);
    return { token, id };
  };
  const special = {
    bos: resolve('bos_token'),
    eos: resolve('eos_token'),
    pad: resolve('pad_token'),
    unk: resolve('unk_token'),
  };
  const mask = resolveMask(dir, lib, options, rawConfig, configFile);

  const specialIds = new Set<number>();
  for (const t of added) if (t.special) specialIds.add(t.id);
  for (const token of [...Object.values(names), ...additional]) {
    const id = lib.token_to_id(token);
    if (id !== undefined) specialIds.add(id);
  }
  specialIds.add(mask.id);

  let vocabSize = 0;
  const v = json.model.vocab;
  if (Array.isArray(v)) vocabSize = v.length;
  else if (isRecord(v))
    for (const id of Object.values(v)) if (isId(id)) vocabSize = Math.max(vocabSize, id + 1);
  for (const t of added) vocabSize = Math.max(vocabSize, t.id + 1);

  const jinjaFile = join(dir, 'chat_template.jinja');
  const jinja = readText(jinjaFile, maxSideFileBytes, true);
  const fromConfig = chatTemplateOf(rawConfig.chat_template, configFile, options.chatTemplateName);
  const chat: ChatTemplateSource | undefined =
    jinja !== undefined
      ? { template: jinja, file: jinjaFile }
      : fromConfig !== undefined
        ? { template: fromConfig, file: configFile }
        : undefined;

  const templateVariables: Record<string, unknown> = { ...names };
  if (additional.length > 0) templateVariables.additional_special_tokens = additional;

  return new HfTokenizer(dir, lib, {
    vocabSize,
    special,
    mask,
    specialIds,
    cleanUpSpaces: rawConfig.clean_up_tokenization_spaces === true,
    templateVariables,
    chat,
  });
}
