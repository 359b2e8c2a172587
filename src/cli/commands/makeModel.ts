import type { Command } from 'commander';
import type { Family } from '../../model/hf/families.ts';
import type { Io } from '../io.ts';
import type { MakeModelOptions } from '../model.ts';
import { integerIn, seedValue } from '../numbers.ts';

export const families: readonly Family[] = ['llada', 'dream', 'sdar', 'fast-dllm-v2'];

export function registerMakeModel(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('make-model')
    .description(
      'write a random-weight model: an executable ONNX file (default), or a Hugging Face checkpoint ' +
        'directory in a dLLM family’s layout (--format hf), for tests, demos and benchmarks',
    )
    .requiredOption(
      '-o, --output <path>',
      'where to write: the .onnx file, or the checkpoint directory (new or empty)',
    )
    .option(
      '--format <onnx|hf>',
      'onnx: one ONNX file; hf: config.json, safetensors and tokenizer files',
      'onnx',
    )
    .option(
      '--config <preset|file.json|dir>',
      'model shape: a preset, a kvplan config, or (hf) a Hugging Face config.json or checkpoint directory ' +
        '(default: small for onnx, a small shape of the family for hf)',
    )
    .option('--family <family>', `hf: the checkpoint family (${families.join(', ')})`)
    .option('--dtype <bf16|f16|f32>', 'hf: the stored dtype (default bf16)')
    .option(
      '--shard-size <size>',
      'hf: the largest shard, e.g. 2GB or 500MiB (default 5GB, as save_pretrained)',
    )
    .option('--seed <n>', 'seed of the random weights', seedValue, 1)
    .option(
      '--max-positions <n>',
      'onnx: longest canvas the RoPE tables cover (default 4096)',
      integerIn(1, 1 << 20),
    )
    .action(async (options: MakeModelOptions) => {
      const { runMakeModel } = await import('../model.ts');
      setExit(await runMakeModel(options, io));
    });
}
