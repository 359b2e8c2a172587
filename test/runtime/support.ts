import { readdirSync, readFileSync } from 'node:fs';
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

/**
 * Every example plan but dpad.kvp, which has no full step (every step drops the far suffix), so a
 * step-by-step comparison with the golden forward has nothing to compare; `kvplan verify` holds it
 * to its premise.
 */
export const examples = readdirSync('examples')
  .filter((f) => f.endsWith('.kvp'))
  .map((f) => f.slice(0, -'.kvp'.length))
  .filter((name) => name !== 'dpad')
  .sort();

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
