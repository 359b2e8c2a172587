// Every command that reads a path refuses one that cannot be what it asks for — missing, a
// directory where a file is wanted, a device that never ends — as a usage error (exit 2) naming the
// path, before any other work: never a raw errno, a hang, or an internal error.
import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';

const plan = 'examples/baseline.kvp';
const missing = '/nonexistent/kvplan-missing.kvp';

const cases: [string, string[], string][] = [
  ...['check', 'fmt', 'explain', 'compile', 'verify'].flatMap((cmd): [string, string[], string][] => [
    [`${cmd}: a missing plan`, [cmd, missing], `cannot read ${missing}: no such file or directory`],
    [`${cmd}: a directory`, [cmd, 'examples'], 'cannot read examples: is a directory'],
    [`${cmd}: a device`, [cmd, '/dev/zero'], 'cannot read /dev/zero: not a regular file'],
  ]),
  ['inspect-model: a missing model', ['inspect-model', '/nonexistent/m.onnx'], 'no such file or directory'],
  ['inspect-model: a device', ['inspect-model', '/dev/zero'], '/dev/zero: not a regular file or a directory'],
  ...['generate', 'eval'].map((cmd): [string, string[], string] => [
    `${cmd}: a missing plan`,
    [
      cmd,
      '--plan',
      missing,
      ...(cmd === 'generate' ? ['--model', 'models/tiny-dllm/model.onnx', '--prompt', 'bub:123='] : []),
    ],
    `cannot read ${missing}: no such file or directory`,
  ]),
  ...['generate', 'eval', 'demo'].map((cmd): [string, string[], string] => [
    `${cmd}: a missing model`,
    [
      cmd,
      '--model',
      '/nonexistent/m.onnx',
      ...(cmd === 'demo' ? [] : ['--plan', plan]),
      ...(cmd === 'generate' ? ['--prompt', 'x'] : []),
    ],
    '--model /nonexistent/m.onnx: no such file or directory',
  ]),
  [
    'demo: --plans a file',
    ['demo', '--plans', plan],
    `--plans ${plan}: a component of the path is not a directory`,
  ],
];

describe('bad paths, every command', () => {
  test.each(cases)('%s', async (_, argv, message) => {
    const started = performance.now();
    const r = await runCli(argv);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(/internal error|\n {4}at |ENOENT|EISDIR/);
    expect(r.code).toBe(2);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
