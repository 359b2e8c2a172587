import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { CharTokenizer } from '../../src/runtime/tokenizer.ts';
import { runCli } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-gen-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, 'tiny.onnx');

describe('kvplan make-model and generate', () => {
  test('a random tiny model, then a generation whose text and trace have the asked length', async () => {
    const made = await runCli([
      'make-model',
      '--config',
      'tiny',
      '--seed',
      '3',
      '-o',
      model,
      '--max-positions',
      '64',
    ]);
    expect(made.code).toBe(0);
    const args = [
      'generate',
      '--model',
      model,
      '--plan',
      'examples/fast-dllm-dual.kvp',
      '--prompt',
      'ab c',
      '--gen-length',
      '8',
      '--block',
      '4',
    ];
    const ref = await runCli([...args, '--trace']);
    expect(ref.code).toBe(0);
    expect(ref.stdout.trimEnd()).toHaveLength(8);
    expect(ref.stdout).not.toContain('_');
    const steps = ref.stderr.split('\n').filter((l) => l.startsWith('step '));
    expect(steps.length).toBeGreaterThanOrEqual(2);
    expect(steps[0]).toMatch(/^step 0 block 0\.0 refresh rows \[12,12\] commit/);
    expect(ref.stderr).toMatch(/8 tokens in \d+ steps, [\d.]+ tokens\/s \(reference\)/);
    // The CPU backend commits the same tokens on this exact-at-refresh, float32-robust setting.
    const cpu = await runCli([...args, '--backend', 'cpu']);
    expect(cpu.code).toBe(0);
    expect(cpu.stdout.trimEnd()).toHaveLength(8);
    // WebGPU (Dawn, in CI on Mesa llvmpipe) generates too; float32 like the CPU backend.
    const gpu = await runCli([...args, '--backend', 'webgpu']);
    expect(gpu.stderr).toMatch(/8 tokens in \d+ steps, [\d.]+ tokens\/s \(webgpu\)/);
    expect(gpu.code).toBe(0);
    expect(gpu.stdout).toBe(cpu.stdout);
  });
  test('errors: a prompt outside the alphabet, a corrupt model, an unknown backend', async () => {
    const bad = await runCli([
      'generate',
      '--model',
      model,
      '--plan',
      'examples/baseline.kvp',
      '--prompt',
      'é',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/character "é" at 0 is not in the model's alphabet/);
    const corrupt = await runCli([
      'generate',
      '--model',
      'README.md',
      '--plan',
      'examples/baseline.kvp',
      '--prompt',
      'a',
    ]);
    expect(corrupt.code).toBe(1);
    expect(corrupt.stderr).toMatch(/README\.md: not a valid ONNX model/);
    expect(
      (
        await runCli([
          'generate',
          '--model',
          model,
          '--plan',
          'examples/baseline.kvp',
          '--prompt',
          'a',
          '--backend',
          'tpu',
        ])
      ).code,
    ).toBe(2);
  });
  test('a checkpoint directory without a tokenizer takes its prompt as ids and prints ids', async () => {
    const args = ['generate', '--model', 'test/fixtures/hf/sdar-f32', '--plan', 'examples/flashblock.kvp'];
    const run = await runCli([
      ...args,
      '--prompt-ids',
      '12,5,33,47',
      '--gen-length',
      '8',
      '--set',
      'block=4',
    ]);
    expect(run.stderr).toMatch(/^8 tokens in \d+ steps/);
    expect(run.code).toBe(0);
    const ids = run.stdout.trim().split(' ').map(Number);
    expect(ids).toHaveLength(8);
    expect(ids.every((i) => Number.isInteger(i) && i >= 0 && i < 48)).toBe(true);
    const text = await runCli([...args, '--prompt', 'hi']);
    expect(text.code).toBe(2);
    expect(text.stderr).toBe(
      'kvplan: --prompt: test/fixtures/hf/sdar-f32 has no tokenizer.json; give the prompt as token ids (--prompt-ids)\n',
    );
    const both = await runCli([...args, '--prompt', 'hi', '--prompt-ids', '1']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/one of them/);
    const range = await runCli([...args, '--prompt-ids', '1 2 48']);
    expect(range.code).toBe(2);
    expect(range.stderr).toBe(
      "kvplan: --prompt-ids: '48' is not a token id of the model (integers in [0, 48))\n",
    );
    // Dream shifts its logits; a plan decoding in place is refused, not silently wrong.
    const shift = await runCli([
      'generate',
      '--model',
      'test/fixtures/hf/dream-bf16',
      '--plan',
      'examples/baseline.kvp',
      '--prompt-ids',
      '1',
    ]);
    expect(shift.code).toBe(1);
    expect(shift.stderr).toMatch(
      /plan baseline decodes without an AR shift, but model dream-bf16 was trained with one/,
    );
  });

  test('the character tokenizer round-trips and shows masks', () => {
    const t = new CharTokenizer('ab c', 9);
    expect(t.decode(t.encode('c ab'))).toBe('c ab');
    expect(t.decode([0, 9, 1])).toBe('a_b');
    expect(() => new CharTokenizer('aa', 9)).toThrow(/repeats/);
  });
});
