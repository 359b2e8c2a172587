import type { Command } from 'commander';
import { CompilerError } from '../backends/cpu/compiler.ts';
import { BackendUnavailable, isRunBackend, prepareBackend, runBackends } from '../backends/registry.ts';
import { bundledModelPath } from '../eval/bundled.ts';
import { canvasBound, type EvalResult, evaluatePlan } from '../eval/evaluate.ts';
import { defaultTask, heldOutProblems, tasks } from '../eval/tasks.ts';
import { CheckpointError } from '../model/hf/safetensors.ts';
import { OnnxError } from '../model/onnx/load.ts';
import { GenerationError } from '../runtime/generationError.ts';
import { type OpenedModel, openModel } from '../runtime/openModel.ts';
import { planOnModel } from '../runtime/prepare.ts';
import { blockLength } from '../runtime/simulate.ts';
import { TokenizerError } from '../runtime/tokenizer.ts';
import { collectSetting, Exit, type Io } from './io.ts';
import { fitsModelDepth, loadPlans } from './plans.ts';

export interface EvalCommandOptions {
  readonly model?: string;
  readonly plan: string;
  readonly task?: string;
  readonly n: string;
  readonly backend: string;
  readonly genLength: string;
  readonly batch: string;
  readonly seed: string;
  readonly threads: string;
  readonly set?: Map<string, string>;
  readonly json?: boolean;
  readonly show?: boolean;
}

const positive = (s: string) => {
  const n = Number(s);
  return Number.isInteger(n) && n > 0 ? n : undefined;
};

/** Opens a model for a command that generates: the named file, or the bundled model. */
export function openModelFor(path: string | undefined, io: Io): OpenedModel | undefined {
  try {
    return openModel(path ?? bundledModelPath());
  } catch (e) {
    if (!(e instanceof OnnxError || e instanceof CheckpointError || e instanceof TokenizerError)) throw e;
    io.err(`kvplan: ${e.message}\n`);
    return undefined;
  }
}

export const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

function report(r: EvalResult, backend: string, modelName: string): string {
  const right = r.problems.filter((p) => p.correct).length;
  return [
    `plan ${r.plan}  task ${r.task}  model ${modelName}  backend ${backend}`,
    `accuracy ${percent(r.accuracy)} (${right}/${r.n})  ${r.tokensPerSecond.toFixed(1)} tokens/s  ${r.meanSteps.toFixed(1)} steps per problem`,
    '',
  ].join('\n');
}

export async function runEval(o: EvalCommandOptions, io: Io): Promise<number> {
  const task = o.task ?? defaultTask;
  if (!tasks.has(task)) {
    io.err(`kvplan: unknown task '${task}'; tasks: ${[...tasks.keys()].join(', ')}\n`);
    return Exit.usage;
  }
  if (!isRunBackend(o.backend)) {
    io.err(`kvplan: --backend ${o.backend} is not available for eval; backends: ${runBackends.join(', ')}\n`);
    return Exit.usage;
  }
  const n = positive(o.n);
  const genLength = positive(o.genLength);
  const batch = positive(o.batch);
  const seed = positive(o.seed);
  if (!n || !genLength || !batch || !seed) {
    io.err('kvplan: --n, --gen-length, --batch and --seed must be positive integers\n');
    return Exit.usage;
  }
  const model = openModelFor(o.model, io);
  if (!model) return Exit.failed;
  const { plans, codes } = loadPlans([o.plan], o.set ?? new Map(), io);
  const loaded = plans[0];
  if (!loaded) return Math.max(Exit.failed, ...codes);
  if (!fitsModelDepth(loaded, model.config, io)) return Exit.failed;
  const plan = loaded.checked;
  const fit = planOnModel(plan, model.config);
  if (!fit.ok) {
    io.err(`kvplan: ${fit.error}\n`);
    return Exit.failed;
  }
  if (fit.warning) io.err(`kvplan: warning: ${fit.warning}\n`);
  try {
    const problems = heldOutProblems(task, n, seed);
    const rows = Math.max(genLength, blockLength(plan, genLength));
    const prepared = await prepareBackend(
      o.backend,
      plan,
      fit.config,
      model.weights,
      canvasBound(problems, model.tokenizer, rows, batch),
      Number(o.threads),
    );
    const result = await evaluatePlan({
      config: prepared.config,
      weights: model.weights,
      tokenizer: model.tokenizer,
      plan,
      lowered: prepared.lowered,
      ...(prepared.runner ? { runner: prepared.runner } : {}),
      task,
      problems,
      seed,
      genLength,
      batchSize: batch,
    });
    for (const r of o.show ? result.problems : [])
      io.err(
        `${r.correct ? 'ok  ' : 'FAIL'}  ${r.problem.prompt}${r.output}  (expected ${r.problem.answer})\n`,
      );
    if (o.json) {
      const problems = result.problems.map((p) => ({
        prompt: p.problem.prompt,
        answer: p.problem.answer,
        output: p.output,
        correct: p.correct,
        steps: p.steps,
      }));
      const json = {
        plan: result.plan,
        task,
        model: model.path,
        backend: o.backend,
        n: result.n,
        accuracy: result.accuracy,
        tokens_per_s: result.tokensPerSecond,
        mean_steps: result.meanSteps,
        problems,
      };
      io.out(`${JSON.stringify(json, null, 2)}\n`);
    } else io.out(report(result, o.backend, model.config.name));
    return Exit.ok;
  } catch (e) {
    if (
      !(
        e instanceof BackendUnavailable ||
        e instanceof CompilerError ||
        e instanceof TokenizerError ||
        e instanceof GenerationError
      )
    )
      throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.failed;
  }
}

export function registerEval(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('eval')
    .description(
      'accuracy and tokens/s of a plan on held-out problems of a task (exact match of the answer before EOS)',
    )
    .requiredOption('--plan <p.kvp>', 'the cache plan')
    .option(
      '--model <dir|m.onnx>',
      'the model: a Hugging Face checkpoint directory or an ONNX file (default: the bundled model)',
    )
    .option('--task <name>', `the task (${[...tasks.keys()].join(', ')}; default ${defaultTask})`)
    .option('--n <n>', 'held-out problems', '50')
    .option('--backend <name>', runBackends.join(', '), 'cpu')
    .option('--gen-length <n>', 'generated positions per problem', '64')
    .option('--batch <n>', 'problems generated together in one batch', '1')
    .option('--seed <n>', 'seed of the held-out problems and of random decode orders', '1')
    .option('--threads <n>', 'threads of the cpu backend (0: all cores)', '0')
    .option('--set <name=value>', 'override a parameter of the plan (repeatable)', collectSetting)
    .option('--json', 'print the result as JSON (with every problem)')
    .option('--show', 'print every problem, its answer and the expected one to stderr')
    .addHelpText(
      'after',
      '\nExit status: 0 evaluated (whatever the accuracy), 1 a bad model, plan or backend, 2 usage error.',
    )
    .action(async (options: EvalCommandOptions) => {
      setExit(await runEval(options, io));
    });
}
