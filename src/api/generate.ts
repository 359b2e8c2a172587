import { float32Of } from '../ir/tensor.ts';
import { maxCanvasPositions } from '../runtime/canvasLimit.ts';

import { generate as runGeneration } from '../runtime/generate.ts';
import type { StepInfo } from '../runtime/simulate.ts';
import { answerText, type Tokenizer, TokenizerError } from '../runtime/tokenizer.ts';
import { integerArg, KvplanError, seedArg, translated } from './errors.ts';
import { compiledOf, type PreparedPlan } from './prepare.ts';

/** A prompt: text (encoded with the model's tokenizer) or token ids. */
export type Prompt = string | Int32Array | readonly number[];

/** What one denoising step of one sequence did. Positions are canvas positions of that sequence (0 is its first prompt token). */
export interface StepEvent {
  /** Which prompt (index into the prompts) the step belongs to. */
  readonly sequence: number;
  /** The step of this sequence, from 0. */
  readonly step: number;
  /** The block being decoded, and the step within it (from 0). */
  readonly block: number;
  readonly blockStep: number;
  /** `refresh`: every row was recomputed on every layer; `cached`: the plan's compute set only. */
  readonly phase: 'refresh' | 'cached';
  /** The positions recomputed at the last layer (the rows whose predictions are fresh), ascending. */
  readonly computed: Int32Array;
  /** How many rows each layer recomputed. */
  readonly rowsPerLayer: readonly number[];
  /** The positions the decode rule committed this step, best first, with their tokens. */
  readonly committed: readonly { readonly position: number; readonly token: number }[];
  /** Decoded positions a revoking decode rule (`wino`) turned back into masks this step. */
  readonly remasked: readonly number[];
  /** The length of every index list the inspector built (`rows.0`, `keys.0`, `write.0.…`, `out`). */
  readonly listSizes: ReadonlyMap<string, number>;
  /**
   * Logits of the `computed` rows: shape [computed.length, vocab]. `data` is the caller's own array
   * when read during the onStep callback; first read after it returned, or in a generation with
   * `stepLogits: false`, it throws (invalid-argument).
   */
  readonly logits: { readonly shape: readonly number[]; readonly data: Float64Array };
  /** Wall time of the step (of its whole batch when sequences share one). */
  readonly ms: number;
}

export interface GenerateOptions {
  /** One prompt; give this or `prompts`. */
  readonly prompt?: Prompt;
  /** Several prompts, generated in batches of `batchSize`; give this or `prompt`. */
  readonly prompts?: readonly Prompt[];
  /** Positions to generate after each prompt (default 32). */
  readonly genLength?: number;
  /** Sequences generated together in one canvas (default: all of them). */
  readonly batchSize?: number;
  /** Seed of random decode orders (default 1). */
  readonly seed?: number;
  /** Put each text prompt in the model's chat template as a user message (checkpoints with one). */
  readonly chat?: boolean;
  /**
   * Stop a sequence at its first end-of-sequence token once everything before it is decoded
   * (default true when the tokenizer has one); the positions after it are filled with it.
   */
  readonly stopAtEos?: boolean;
  /** Called after every step of every sequence, in order. What it throws stops the generation. */
  readonly onStep?: (event: StepEvent) => void;
  /**
   * Whether onStep's events carry the step's logits (default true). False saves copying them back
   * from a GPU at every step (megabytes with a real vocabulary) when onStep only reports progress;
   * `event.logits.data` then throws (invalid-argument).
   */
  readonly stepLogits?: boolean;
}

export interface GeneratedSequence {
  /** The prompt's token ids. */
  readonly prompt: Int32Array;
  /** The generated positions' tokens (after an EOS stop, the fill included). */
  readonly tokens: Int32Array;
  /** The generated text up to the first end-of-sequence token. */
  readonly text: string;
  /** Steps the sequence took. */
  readonly steps: number;
  /** Wall time of those steps (shared with its batch mates). */
  readonly ms: number;
  /** Where in `tokens` the EOS it stopped at is; absent when it filled its canvas. */
  readonly eosAt?: number;
}

export interface Generation {
  readonly sequences: readonly GeneratedSequence[];
  /** Generated tokens (up to each EOS) over the wall time of the steps. */
  readonly tokensPerSecond: number;
}

function encode(prompt: Prompt, tokenizer: Tokenizer, vocab: number, chat: boolean, i: number): Int32Array {
  if (typeof prompt === 'string') {
    if (!chat) return tokenizer.encode(prompt);
    if (!tokenizer.encodeChat) throw new TokenizerError('the model has no chat template');
    return tokenizer.encodeChat([{ role: 'user', content: prompt }]);
  }
  if (!(Array.isArray(prompt) || prompt instanceof Int32Array))
    throw new KvplanError('invalid-argument', `prompt ${i} must be text or token ids (got ${typeof prompt})`);
  const ids: readonly unknown[] = Array.from(prompt);
  const bad = ids.findIndex((id) => !Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocab);
  if (bad >= 0)
    throw new KvplanError(
      'tokenizer',
      `prompt ${i}: ${String(ids[bad])} at index ${bad} is not a token id of the model (integers in [0, ${vocab}))`,
    );
  return Int32Array.from(ids as number[]);
}

/**
 * A step's logits for its event: widened into an array of the caller's own when first read during
 * the callback. They are the runner's storage until the next step (tens of megabytes with a real
 * vocabulary), so an event that nobody reads costs no copy; read after the callback returned and
 * never before, they would be another step's, so that read throws instead. Without `stepLogits`
 * the generation did not ask for them, and reading them throws too, on every backend alike.
 */
function eventLogits(s: StepInfo, vocab: number, asked: boolean, live: () => boolean): StepEvent['logits'] {
  const { logits } = s;
  // runGeneration's `logits` asks for them whenever they are.
  if (asked && !logits) throw new Error(`step ${s.step} came without its logits`);
  let data: Float64Array | undefined;
  return {
    shape: [s.out.length, vocab],
    get data() {
      if (!data) {
        if (!asked || !logits)
          throw new KvplanError(
            'invalid-argument',
            `the logits of step ${s.step} were not kept: the generation was asked for none (stepLogits: false)`,
          );
        if (!live())
          throw new KvplanError(
            'invalid-argument',
            `the logits of step ${s.step} were read after its onStep callback returned: read them (event.logits.data) during the callback to keep them`,
          );
        data = new Float64Array(float32Of(logits) ?? logits.data);
      }
      return data;
    },
  };
}

/** What an event needs beyond its step: the vocabulary, and whether the logits were asked for. */
interface EventContext {
  readonly vocab: number;
  readonly logits: boolean;
}

/** Calls onStep with the step's event; its logits can be read until the call returns. */
function notify(onStep: (event: StepEvent) => void, sequence: number, s: StepInfo, c: EventContext): void {
  let live = true;
  try {
    onStep(eventOf(sequence, s, c, () => live));
  } finally {
    live = false;
  }
}

const eventOf = (sequence: number, s: StepInfo, c: EventContext, live: () => boolean): StepEvent => ({
  sequence,
  step: s.step,
  block: s.block,
  blockStep: s.blockStep,
  phase: s.phase,
  computed: s.out,
  rowsPerLayer: s.rows,
  committed: s.committed,
  remasked: s.remasked,
  listSizes: s.sizes,
  logits: eventLogits(s, c.vocab, c.logits, live),
  ms: s.ms,
});

/** The most canvas rows a batch of these prompt lengths needs, batches taken in order. */
function largestBatch(lengths: readonly number[], genLength: number, batchSize: number): number {
  let most = 0;
  for (let first = 0; first < lengths.length; first += batchSize)
    most = Math.max(
      most,
      lengths.slice(first, first + batchSize).reduce((a, n) => a + n + genLength, 0),
    );
  return most;
}

/**
 * Generates a completion for each prompt with a prepared plan: the denoising loop, where every
 * step the inspector builds the plan's index lists, the backend runs the step programs, and the
 * decode rule commits positions. Throws a KvplanError: `invalid-argument` for bad options (no
 * prompt, both `prompt` and `prompts`, a batch larger than `maxCanvas`), `tokenizer` when a prompt
 * cannot be encoded (no tokenizer or chat template, an id outside the vocabulary),
 * `generation-failed` when the plan's decode rule stops committing or the logits overflow.
 */
export async function generate(prepared: PreparedPlan, options: GenerateOptions): Promise<Generation> {
  const { lowered, runner } = compiledOf(prepared);
  const { tokenizer, config, weights } = prepared.model;
  const o = options ?? {};
  if ((o.prompt === undefined) === (o.prompts === undefined))
    throw new KvplanError('invalid-argument', 'give one prompt (prompt) or a list of them (prompts)');
  const given = o.prompts ?? [o.prompt as Prompt];
  if (!Array.isArray(given) || given.length === 0)
    throw new KvplanError('invalid-argument', 'prompts must be a non-empty array');
  const genLength = integerArg('genLength', o.genLength ?? 32, 1, maxCanvasPositions);
  const batchSize = integerArg('batchSize', o.batchSize ?? given.length, 1, given.length);
  const seed = seedArg(o.seed);
  const prompts = await translated(() =>
    given.map((p, i) => encode(p, tokenizer, config.vocab, o.chat === true, i)),
  );
  const rows = largestBatch(
    prompts.map((p) => p.length),
    genLength,
    batchSize,
  );
  if (rows > prepared.maxCanvas)
    throw new KvplanError(
      'invalid-argument',
      `a batch would hold ${rows} canvas rows (prompt + genLength per sequence); the plan was prepared for at most ${prepared.maxCanvas} (prepare's maxCanvas)`,
    );
  const eos = o.stopAtEos === false ? undefined : tokenizer.eosTokenId;
  const { onStep } = o;
  const events = { vocab: prepared.config.vocab, logits: o.stepLogits !== false };
  const result = await translated(() =>
    runGeneration({
      model: { config: prepared.config, weights },
      plan: prepared.plan,
      lowered,
      prompts,
      genLength,
      batchSize,
      seed,
      ...(runner ? { runner } : {}),
      ...(eos === undefined ? {} : { eosTokenId: eos }),
      ...(onStep
        ? {
            onStep: (sequence: number, info: StepInfo) => notify(onStep, sequence, info, events),
            logits: events.logits,
          }
        : {}),
    }),
  );
  return {
    sequences: result.sequences.map((s, i) => ({
      prompt: prompts[i] as Int32Array,
      tokens: s.generated,
      text: answerText(tokenizer, s.generated),
      steps: s.steps,
      ms: s.ms,
      ...(s.eosAt === undefined ? {} : { eosAt: s.eosAt }),
    })),
    tokensPerSecond: result.tokensPerSecond,
  };
}
