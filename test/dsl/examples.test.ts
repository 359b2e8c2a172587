import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { formatDiagnostic } from '../../src/dsl/diagnostics.ts';

const dir = 'examples';
const kvp = (d: string) =>
  readdirSync(d)
    .filter((f) => f.endsWith('.kvp'))
    .sort();

const published = [
  'baseline',
  'dkv-decode',
  'dkv-greedy',
  'dkv-prefill',
  'fast-dllm-prefix',
  'fast-dllm-dual',
  'dllm-cache',
  'd2cache',
  'sparse-dllm',
  'elastic-cache',
  'elastic-cache-adaptive',
  'flashblock',
  'mage',
  // Decode rules of the methods that followed (issue 19).
  'prophet',
  'slow-fast',
  'local-leap',
  'dllm-cache-key-drift',
  'dpad',
  'window-diffusion',
  'slow-fast-dllm-cache',
  'sparsed',
  'wino',
  'es-dllm',
  'streaming-dllm',
];

describe('example plans', () => {
  test('one example per published method', () => {
    for (const name of published) expect(kvp(dir)).toContain(`${name}.kvp`);
  });
  test.each(kvp(dir))('%s is well-formed, and its classification is pinned', (f) => {
    const path = join(dir, f);
    const r = checkSource({ path, text: readFileSync(path, 'utf8') });
    expect(r.diagnostics).toEqual([]);
    expect(r.plans.map((p) => [p.plan.name, p.classification])).toMatchSnapshot();
  });
  test('only the no-cache plans (the baseline and the decode-rule methods) and the block-causal prefix cache are exact', () => {
    const exact = kvp(dir).filter((f) => {
      const path = join(dir, f);
      return checkSource({ path, text: readFileSync(path, 'utf8') }).plans.every(
        (p) => p.classification.exact,
      );
    });
    expect(exact).toEqual([
      'baseline.kvp',
      'fast-dllm-v2.kvp',
      'local-leap.kvp',
      'prophet.kvp',
      'slow-fast.kvp',
      'wino.kvp',
    ]);
  });
});

describe('invalid plans', () => {
  const invalid = join(dir, 'invalid');
  test('there is one per checker rule and parse error kind', () => {
    expect(kvp(invalid).length).toBeGreaterThanOrEqual(12);
  });
  test.each(kvp(invalid))('%s is rejected with a located diagnostic', (f) => {
    const path = join(invalid, f);
    const text = readFileSync(path, 'utf8');
    const r = checkSource({ path, text });
    expect(r.plans).toEqual([]);
    expect(r.diagnostics.length).toBeGreaterThan(0);
    expect(r.diagnostics.map((d) => formatDiagnostic({ path, text }, d)).join('\n')).toMatchSnapshot();
  });
});
