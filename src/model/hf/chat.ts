/**
 * Chat templates of Hugging Face checkpoints: the Jinja `chat_template` of `tokenizer_config.json`
 * (or of a `chat_template.jinja` beside it), rendered through `@huggingface/jinja` with the
 * variables transformers' `apply_chat_template` passes. See docs/checkpoints.md, "Tokenizers".
 */
import { Template } from '@huggingface/jinja';
import { TokenizerError } from '../../runtime/tokenizer.ts';

/** A tokenizer file that cannot be used, or a template that cannot be rendered; the message names the file. */
export class HfTokenizerError extends TokenizerError {}

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateSource {
  /** The Jinja text. */
  template: string;
  /** The file it came from, for messages. */
  file: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The template text from a `chat_template` value: a string, or transformers' list of named
 * templates (`[{name, template}]`), from which `name` (default "default") is taken. `undefined`
 * when the value is absent or null.
 */
export function chatTemplateOf(value: unknown, file: string, name = 'default'): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const names: string[] = [];
    for (const entry of value) {
      if (!isRecord(entry) || typeof entry.name !== 'string' || typeof entry.template !== 'string')
        throw new HfTokenizerError(
          `${file}: "chat_template" is a list whose entries are not all {"name": string, "template": string}`,
        );
      if (entry.name === name) return entry.template;
      names.push(JSON.stringify(entry.name));
    }
    throw new HfTokenizerError(
      `${file}: "chat_template" has no template named ${JSON.stringify(name)} (it has ${names.join(', ') || 'none'})`,
    );
  }
  throw new HfTokenizerError(`${file}: "chat_template" is neither a string nor a list of named templates`);
}

function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages)) throw new HfTokenizerError('chat messages must be an array');
  messages.forEach((m, i) => {
    if (!isRecord(m) || typeof m.role !== 'string' || typeof m.content !== 'string')
      throw new HfTokenizerError(`chat message ${i} is not {"role": string, "content": string}`);
  });
}

/** A compiled chat template; compiling and rendering failures name the file. */
export class ChatTemplate {
  private readonly compiled: Template;

  constructor(readonly source: ChatTemplateSource) {
    try {
      this.compiled = new Template(source.template);
    } catch (e) {
      throw new HfTokenizerError(
        `${source.file}: @huggingface/jinja cannot parse the chat template: ${(e as Error).message}`,
      );
    }
  }

  /**
   * Renders `messages`. `variables` are the special tokens (`bos_token`, `eos_token`, …) and any
   * extra keyword arguments, as transformers passes them; `messages` and `add_generation_prompt`
   * are set here and win over `variables`.
   */
  render(
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    variables: Record<string, unknown> = {},
  ): string {
    checkMessages(messages);
    let out: unknown;
    try {
      out = this.compiled.render({
        ...variables,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (e) {
      throw new HfTokenizerError(
        `${this.source.file}: the chat template failed to render ${messages.length} message(s): ${(e as Error).message}`,
      );
    }
    if (typeof out !== 'string')
      throw new HfTokenizerError(`${this.source.file}: the chat template rendered no text`);
    return out;
  }
}
