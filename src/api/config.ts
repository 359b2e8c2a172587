import { type ModelConfig, validateConfig } from '../model/config.ts';
import { configFrom } from '../model/configSource.ts';
import { KvplanError, translatedSync } from './errors.ts';

/** A model configuration, or where to find one: a preset name, a JSON file, a checkpoint directory. */
export type ConfigSource = ModelConfig | string;

/**
 * The model configuration `source` names: a preset (`tiny`, `small`, `llada-8b`, …), a kvplan
 * JSON config file, or a Hugging Face checkpoint directory (its config.json and tensor headers;
 * no weights are read). A ModelConfig object is validated and returned as a copy. Throws a
 * KvplanError `invalid-config` (unknown preset, unreadable or invalid file, a field out of range)
 * or `invalid-model` (a checkpoint directory that cannot be used).
 */
export function loadModelConfig(source: ConfigSource): ModelConfig {
  if (typeof source === 'object' && source !== null)
    return translatedSync(() => validateConfig(source, 'config'));
  if (typeof source !== 'string')
    throw new KvplanError(
      'invalid-argument',
      `a model config is a ModelConfig or a string (got ${typeof source})`,
    );
  return translatedSync(() => configFrom(source));
}
