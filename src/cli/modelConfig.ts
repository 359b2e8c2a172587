import { ConfigError, type ModelConfig } from '../model/config.ts';
import { configFrom } from '../model/configSource.ts';
import { CheckpointError } from '../model/hf/checkpointError.ts';
import type { Io } from './io.ts';

/**
 * A preset name, a JSON file, or a Hugging Face checkpoint directory (its config.json and tensor
 * headers, no weights read); a bad one is a usage error with the reason.
 */
export function loadModelConfig(spec: string, io: Io): ModelConfig | undefined {
  try {
    return configFrom(spec);
  } catch (e) {
    if (!(e instanceof ConfigError || e instanceof CheckpointError)) throw e;
    io.err(`kvplan: --config ${spec}: ${e.message}\n`);
    return undefined;
  }
}
