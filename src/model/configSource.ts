import { existsSync, statSync } from 'node:fs';
import { loadConfig, type ModelConfig } from './config.ts';
import { openCheckpoint } from './hf/checkpoint.ts';
import { modelConfig } from './hf/load.ts';

/**
 * The model configuration a name or path stands for: a Hugging Face checkpoint directory (its
 * config.json and tensor headers; no weights are read), else a preset or a JSON config file.
 * Throws ConfigError or CheckpointError for a bad one.
 */
export function configFrom(spec: string): ModelConfig {
  return existsSync(spec) && statSync(spec).isDirectory()
    ? modelConfig(openCheckpoint(spec))
    : loadConfig(spec);
}
