import { CompilerError } from '../backends/cpu/compilerError.ts';
import { BackendUnavailable, isRunBackend, prepareBackend, runBackends } from '../backends/registry.ts';
import { generate } from '../runtime/generate.ts';
import { GenerationError } from '../runtime/generationError.ts';
import { planOnModel } from '../runtime/prepare.ts';
import { blockLength } from '../runtime/simulate.ts';
import { answerText, type Tokenizer, TokenizerError } from '../runtime/tokenizer.ts';
import { forwardFlops } from '../runtime/workEstimate.ts';
import { canvasFits, checkRunCost, modelsWord, runMemory } from './estimate.ts';
import { Exit, type Io } from './io.ts';
import { openModelFor } from './openModel.ts';
import { fitsModelDepth, loadPlans } from './plans.ts';

export interface GenerateCommandOptions {
  readonly model: string;
  readonly plan: string;
  readonly prompt?: string;
  readonly promptIds?: string;
  readonly chat?: boolean;
  readonly backend: string;
  readonly genLength: number;
  readonly block?: string;
  readonly steps?: string;
  readonly set?: Map<string, string>;
  readonly trace?: boolean;
  readonly seed: number;
  readonly threads: number;
}

/** The prompt's token ids: the given ids, the text in the chat template, or the text encoded. */
function promptOf(o: GenerateCommandOptions, tokenizer: Tokenizer, vocab: number): Int32Array {
  if (o.promptIds !== undefined) {
    const parts = o.promptIds.trim().split(/[\s,]+/);
    const ids = parts.map(Number);
    const bad = parts.findIndex((p, i) => !/^\d+$/.test(p) || (ids[i] as number) >= vocab);
    if (bad >= 0)
      throw new TokenizerError(`'${parts[bad]}' is not a token id of the model (integers in [0, ${vocab}))`);
    return Int32Array.from(ids);
  }
  const text = o.prompt ?? '';
  if (!o.chat) return tokenizer.encode(text);
  if (!tokenizer.encodeChat) throw new TokenizerError('the model has no chat template');
  return tokenizer.encodeChat([{ role: 'user', content: text }]);
}

export async function runGenerate(
  o: GenerateCommandOptions,
  io: Io,
  isTty = process.stderr.isTTY === true,
): Promise<number> {
  const backend = o.backend;
  if (!isRunBackend(backend)) {
    io.err(
      `kvplan: --backend ${backend} is not available for generate; backends: ${runBackends.join(', ')}\n`,
    );
    return Exit.usage;
  }
  const { genLength } = o;
  // --block and --steps are the plan's own parameters, set like --set.
  const overrides = new Map(o.set ?? []);
  if (o.block !== undefined) overrides.set('block', o.block);
  if (o.steps !== undefined) overrides.set('steps_per_block', o.steps);
  if ((o.prompt === undefined) === (o.promptIds === undefined)) {
    io.err('kvplan: give the prompt as text (--prompt) or as token ids (--prompt-ids), one of them\n');
    return Exit.usage;
  }
  if (o.chat && o.prompt === undefined) {
    io.err('kvplan: --chat puts a text prompt (--prompt) in the chat template\n');
    return Exit.usage;
  }
  const model = await openModelFor(o.model, io);
  if (typeof model === 'number') return model;
  const { tokenizer } = model;
  const spelled = new Map([
    ['block', '--block'],
    ['steps_per_block', '--steps'],
  ]);
  const { plans, codes } = loadPlans(
    [o.plan],
    overrides,
    io,
    new Map([...spelled].filter(([name]) => o.set?.has(name) !== true)),
  );
  const loaded = plans[0];
  if (!loaded) return Math.max(Exit.failed, ...codes);
  if (!fitsModelDepth(loaded, model.config, io)) return Exit.failed;
  const plan = loaded.checked;
  let prompt: Int32Array;
  try {
    prompt = promptOf(o, tokenizer, model.config.vocab);
  } catch (e) {
    if (!(e instanceof TokenizerError)) throw e;
    io.err(
      `kvplan: ${o.prompt === undefined ? '--prompt-ids' : o.chat ? '--chat' : '--prompt'}: ${e.message}\n`,
    );
    return Exit.usage;
  }
  const fit = planOnModel(plan, model.config);
  if (!fit.ok) {
    io.err(`kvplan: ${fit.error}\n`);
    return Exit.failed;
  }
  if (fit.warning) io.err(`kvplan: warning: ${fit.warning}\n`);
  const generated = Math.max(genLength, blockLength(plan, genLength));
  if (!canvasFits(prompt.length, generated, 'a shorter prompt or --gen-length', io)) return Exit.usage;
  const L = prompt.length + generated;
  const c = model.config;
  // Every step commits at least one position: at most `generated` steps.
  const refused = checkRunCost(
    {
      command: 'generate',
      what: `at most ${generated.toLocaleString('en-US')} steps on a ${L.toLocaleString('en-US')}-position canvas of ${modelsWord([c])}`,
      backend,
      flops: generated * forwardFlops(c, L),
      memory: runMemory(model, backend, L, 1),
      fix: 'use a shorter prompt or --gen-length',
    },
    io,
  );
  if (refused !== undefined) return refused;
  let prepared: Awaited<ReturnType<typeof prepareBackend>>;
  try {
    prepared = await prepareBackend(backend, plan, fit.config, model.weights, L, o.threads);
  } catch (e) {
    if (!(e instanceof BackendUnavailable || e instanceof CompilerError)) throw e;
    io.err(`kvplan: --backend ${backend}: ${e.message}\n`);
    return Exit.failed;
  }
  let committed = 0;
  const eos = tokenizer.eosTokenId;
  const run = generate({
    model: { config: prepared.config, weights: model.weights },
    plan,
    lowered: prepared.lowered,
    prompts: [prompt],
    genLength,
    seed: o.seed,
    ...(prepared.runner ? { runner: prepared.runner } : {}),
    ...(eos === undefined ? {} : { eosTokenId: eos }),
    onStep: (_, info) => {
      committed += info.committed.length - info.remasked.length;
      if (o.trace) {
        const commits = info.committed
          .map((c) => `${c.position}:${JSON.stringify(tokenizer.decode([c.token]))}`)
          .join(' ');
        const remask = info.remasked.length > 0 ? ` remask ${info.remasked.join(',')}` : '';
        io.err(
          `step ${info.step} block ${info.block}.${info.blockStep} ${info.phase} rows [${info.rows.join(',')}] commit ${commits}${remask} ${info.ms.toFixed(1)} ms\n`,
        );
      } else if (isTty) {
        const width = 30;
        const done = Math.round((width * committed) / genLength);
        io.err(
          `\r[${'#'.repeat(done)}${'.'.repeat(Math.max(0, width - done))}] ${committed}/${genLength} tokens, step ${info.step + 1}`,
        );
      }
    },
  });
  let result: Awaited<typeof run>;
  try {
    result = await run;
  } catch (e) {
    if (!(e instanceof GenerationError)) throw e;
    io.err(`${isTty && !o.trace ? '\n' : ''}kvplan: ${e.message}\n`);
    return Exit.failed;
  }
  if (isTty && !o.trace) io.err('\n');
  const seq = result.sequences[0];
  if (!seq) return Exit.internal;
  io.out(`${answerText(tokenizer, seq.generated)}\n`);
  io.err(
    `${seq.generated.length} tokens in ${seq.steps} steps, ${result.tokensPerSecond.toFixed(1)} tokens/s (${o.backend})\n`,
  );
  return Exit.ok;
}
