// A plan's layer rules against the depth of the model it runs on: `check --config` warns, the
// commands that run or compile the plan on that model refuse it, with the place in the plan.
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.ts';

const elastic = 'examples/elastic-cache.kvp';

describe('layer rules beyond the model', () => {
  it.each([
    ['verify', ['verify', '--config', 'tiny', '--cases', '1', '--set', 'probe=16', elastic]],
    ['compile', ['compile', '--config', 'tiny', '--set', 'probe=16', elastic]],
    ['explain', ['explain', '--config', 'tiny', '--set', 'probe=16', elastic]],
    ['eval', ['eval', '--plan', elastic, '--set', 'probe=7', '--n', '1']],
  ])('%s refuses a probe layer the model does not have (exit 1, located)', async (_, args) => {
    const r = await runCli(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /examples\/elastic-cache\.kvp:13:20: error: `attn_similarity\(probe\)` probes layer \d+, which model '[\w-]+' does not have \(\d layers: 0\.\.\d\)/,
    );
    expect(r.stderr).toMatch(
      /examples\/elastic-cache\.kvp:13:51: error: `on layers > \d+` selects no layer of model/,
    );
    expect(r.stderr).not.toMatch(/internal error|at .*\.ts:\d+/);
  });

  it('verify without --config deepens its models instead, and the rule fires', async () => {
    const r = await runCli(['verify', '--cases', '1', '--gen-length', '12', '--set', 'probe=5', elastic]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /refresh rules fired: line 12 at 1 of \d+ steps, line 13 at [1-9]\d* of \d+ steps/,
    );
  });
});
