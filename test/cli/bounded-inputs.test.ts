// Inputs are read with a bound: a device that never ends, or a file far larger than any plan or
// config, is refused at once as a usage error instead of being read until memory runs out.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { maxPlanBytes } from '../../src/cli/io.ts';
import { runCli } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-bounded-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bounded reads', () => {
  test.each([
    [['check', '/dev/zero'], 'kvplan: cannot read /dev/zero: not a regular file'],
    [['fmt', '/dev/zero'], 'kvplan: cannot read /dev/zero: not a regular file'],
    [
      ['compile', 'examples/baseline.kvp', '--config', '/dev/zero'],
      'cannot read model config: not a regular file',
    ],
    [['check', 'examples'], 'kvplan: cannot read examples: is a directory'],
  ])(
    '%j is refused at once (reading it would never end: the test timeout catches that)',
    async (args, message) => {
      const r = await runCli(args);
      expect(r.stderr).toContain(message);
      expect(r.code).toBe(2);
    },
  );

  test('a plan file over the limit is refused by its size, before it is read', async () => {
    const big = join(dir, 'big.kvp');
    writeFileSync(big, `# ${'x'.repeat(maxPlanBytes)}\n`);
    const r = await runCli(['check', big]);
    expect(r.stderr).toContain(`more than the ${maxPlanBytes.toLocaleString('en-US')}-byte limit`);
    expect(r.code).toBe(2);
  });
});

test.each([
  ['examples/baseline.kvp', 'a component of the path is not a directory'],
  ['no/such/dir', 'no such file or directory'],
])('demo --plans %s (not a directory of plans) is a usage error', async (path, reason) => {
  const r = await runCli(['demo', '--plans', path]);
  expect(r.stderr).toBe(`kvplan: --plans ${path}: ${reason} (a directory of .kvp files)\n`);
  expect(r.code).toBe(2);
});

test('a plan that starts with a UTF-8 byte-order mark is read without it', async () => {
  const path = join(dir, 'bom.kvp');
  writeFileSync(path, `\ufeff${readFileSync('examples/baseline.kvp', 'utf8')}`);
  const r = await runCli(['check', path]);
  expect(r.stdout).toBe(`ok  ${path}  baseline  exact\n`);
  expect(r.code).toBe(0);
});
