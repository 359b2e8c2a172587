import { readFileSync } from 'node:fs';
import { type CheckedPlan, checkSource } from '../../src/dsl/check.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';

/** Checks an example plan with a short block, so that generations stay small in tests. */
export function examplePlan(name: string, block = 4): CheckedPlan {
  const path = `examples/${name}.kvp`;
  const text = readFileSync(path, 'utf8');
  const declares = /\bblock\s*(:\s*int\s*)?=/.test(text);
  const r = checkSource({ path, text }, declares ? { overrides: new Map([['block', String(block)]]) } : {});
  const plan = r.plans[0];
  if (!plan) throw new Error(`${path}: ${r.diagnostics.map((d) => d.message).join('; ')}`);
  return plan;
}

export const examples = [
  'baseline',
  'dkv-decode',
  'dkv-greedy',
  'dkv-prefill',
  'fast-dllm-prefix',
  'fast-dllm-dual',
  'fast-dllm-v2',
  'dllm-cache',
  'd2cache',
  'sparse-dllm',
  'elastic-cache',
  'elastic-cache-adaptive',
  'flashblock',
  'mage',
  'dllm-cache-key-drift',
  'prophet',
  'slow-fast',
  'local-leap',
  // dpad.kvp is not here: it has no full step (every step drops the far suffix), so a step-by-step
  // comparison with the golden forward has nothing to compare; `kvplan verify` holds it to its premise.
  'window-diffusion',
  'slow-fast-dllm-cache',
  'sparsed',
  'wino',
  'es-dllm',
  'streaming-dllm',
];

const tiny = presets.tiny as ModelConfig;
/**
 * GQA with QKV bias, plain MHA, GQA without bias, and GQA with SDAR's per-head q/k norm;
 * block-causal and AR shift follow the plan.
 */
export const backendConfigs: readonly ModelConfig[] = [
  tiny,
  presets.small as ModelConfig,
  { ...tiny, name: 'tiny-no-bias', qkvBias: false },
  { ...tiny, name: 'tiny-qk-norm', qkNorm: true },
];

/** Every example plan paired with one of the configurations, for backend differential tests. */
export const exampleCases = examples.map((name, i) => {
  const config = backendConfigs[i % backendConfigs.length] as ModelConfig;
  return [name, config.name, config] as const;
});
