import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError } from '../model/config.ts';
import { exportOnnx } from '../model/onnx/export.ts';
import { randomWeights, WeightError } from '../model/weights.ts';
import { CharTokenizer, defaultAlphabet } from '../runtime/tokenizer.ts';
import { Exit, type Io } from './io.ts';
import { loadModelConfig } from './plans.ts';

export interface MakeModelOptions {
  readonly config: string;
  readonly seed: string;
  readonly output: string;
  readonly maxPositions: string;
}

/** `kvplan make-model`: a random-weight model of any configuration as an executable ONNX file. */
export function runMakeModel(o: MakeModelOptions, io: Io): number {
  const seed = Number(o.seed);
  const maxPositions = Number(o.maxPositions);
  if (!Number.isSafeInteger(seed) || !Number.isInteger(maxPositions) || maxPositions < 1) {
    io.err('kvplan: --seed and --max-positions must be integers\n');
    return Exit.usage;
  }
  const config = loadModelConfig(o.config, io);
  if (!config) return Exit.usage;
  try {
    const tokenizer = new CharTokenizer(
      defaultAlphabet(config.vocab, config.maskTokenId),
      config.maskTokenId,
    );
    const bytes = exportOnnx(config, randomWeights(config, seed), {
      maxPositions,
      tokenizer: tokenizer.toJSON(),
    });
    writeFileSync(o.output, bytes);
    io.err(
      `wrote ${o.output} (${config.name}, ${(bytes.length / 1e6).toFixed(2)} MB, alphabet ${JSON.stringify(tokenizer.chars)})\n`,
    );
    return Exit.ok;
  } catch (e) {
    if (!(e instanceof WeightError || e instanceof ConfigError)) throw e;
    io.err(`kvplan: ${e.message}\n`);
    return Exit.usage;
  }
}

export function registerMakeModel(program: Command, io: Io, setExit: (code: number) => void): void {
  program
    .command('make-model')
    .description(
      'write a random-weight model of a configuration as an executable ONNX file (for tests and demos)',
    )
    .requiredOption('-o, --output <file.onnx>', 'where to write the model')
    .option('--config <preset|file.json>', 'model configuration', 'small')
    .option('--seed <n>', 'seed of the random weights', '1')
    .option('--max-positions <n>', 'longest canvas the RoPE tables cover', '4096')
    .action((options: MakeModelOptions) => {
      setExit(runMakeModel(options, io));
    });
}
