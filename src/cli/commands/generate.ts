import type { Command } from 'commander';
import { runBackends } from '../../backends/registry.ts';
import type { GenerateCommandOptions } from '../generate.ts';
import { type Io, setOption } from '../io.ts';
import { genLengthValue, seedValue, threadCount } from '../numbers.ts';

export function registerGenerate(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('generate')
    .description('generate text with a model and a plan; the text goes to stdout, progress to stderr')
    .requiredOption(
      '--model <dir|m.onnx>',
      'a Hugging Face checkpoint directory, or an ONNX model (see kvplan make-model)',
    )
    .requiredOption('--plan <p.kvp>', 'the cache plan')
    .option('--prompt <text>', 'the prompt, as text')
    .option('--prompt-ids <ids>', 'the prompt as token ids (comma or space separated)')
    .option('--chat', "put the prompt in the model's chat template as a user message")
    .option('--backend <name>', runBackends.join(', '), 'reference')
    .option('--gen-length <n>', 'tokens to generate', genLengthValue, 32)
    .option('--block <n>', "the plan's block length (its `block` parameter)")
    .option('--steps <n>', "denoising steps per block (the plan's `steps_per_block` parameter)")
    .option('--seed <n>', 'seed of random decode orders', seedValue, 1)
    .option('--threads <n>', 'threads of the cpu backend (0: all cores)', threadCount, 0)
    .option('--trace', 'print the sets and commits of every step')
    .addOption(setOption('the plan'))
    .action(async (options: GenerateCommandOptions) => {
      const { runGenerate } = await import('../generate.ts');
      setExit(await runGenerate(options, io));
    });
}
