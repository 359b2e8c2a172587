// Every numeric option of every command goes through one strict parser (src/cli/numbers.ts): a
// value that is not a decimal integer in range is a usage error (exit 2) naming the option and the
// range, before any model is opened or any plan is compiled.
import { availableParallelism } from 'node:os';
import { describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';

const plan = 'examples/baseline.kvp';
const model = 'models/tiny-dllm/model.onnx';

/** A command line that would run, to which one bad option is added. */
const commands: Record<string, string[]> = {
  generate: ['generate', '--model', model, '--plan', plan, '--prompt', 'cnt:1-4='],
  eval: ['eval', '--plan', plan],
  demo: ['demo'],
  verify: ['verify', plan],
  compile: ['compile', plan],
  'make-model': ['make-model', '-o', '/nonexistent/never-written.onnx'],
};

/** Option → the commands that take it and the range its message states. */
const options: [string, string[], string][] = [
  ['--gen-length', ['generate', 'eval', 'demo', 'verify', 'compile'], 'from 1 to 16384'],
  ['--seed', ['generate', 'eval', 'verify', 'make-model'], 'from 0 to 4294967295'],
  ['--n', ['eval', 'demo'], 'from 1 to 1000000'],
  ['--batch', ['eval', 'demo'], 'from 1 to 1024'],
  ['--cases', ['verify'], 'from 1 to 1000000'],
  ['--prompt-length', ['verify', 'compile'], 'from 1 to 16384'],
  ['--max-positions', ['make-model'], 'from 1 to 1048576'],
];

const notDecimal = ['abc', '0x20', '1e5', '2.5', '', ' '];

describe('numeric options: decimal integers in range, or a usage error', () => {
  const cases = options.flatMap(([flag, cmds, range]) =>
    cmds.flatMap((cmd) => [
      ...notDecimal.map((v) => [cmd, flag, v, `expected a decimal integer ${range}`] as const),
      [cmd, flag, '99999999999', `must be ${range}, got 99999999999`] as const,
    ]),
  );
  test.each(cases)('%s %s %j', async (cmd, flag, value, message) => {
    const r = await runCli([...(commands[cmd] as string[]), flag, value]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`option '${flag} <n>' argument '${value}' is invalid. ${message}`);
    expect(r.stdout).toBe('');
  });

  test.each(['generate', 'eval', 'demo', 'verify'])(
    '%s --threads beyond the cores of the machine names them',
    async (cmd) => {
      const cores = availableParallelism();
      const r = await runCli([...(commands[cmd] as string[]), '--threads', String(cores + 1)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `this machine has ${cores} core${cores === 1 ? '' : 's'}; got ${cores + 1} threads`,
      );
      const bad = await runCli([...(commands[cmd] as string[]), '--threads', 'abc']);
      expect(bad.code).toBe(2);
    },
  );

  test('a negative seed is out of range, not a different seed', async () => {
    const r = await runCli([...(commands.generate as string[]), '--seed', '-1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('must be from 0 to 4294967295, got -1');
  });
});
