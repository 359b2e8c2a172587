// `kvplan check` output for checker results that real plans cannot easily produce on demand, with
// the checker replaced by a stub: internal errors, files without plans, exact and approximate plans.

import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CheckOptions, CheckResult } from '../../src/dsl/check.ts';
import type { SourceFile } from '../../src/dsl/source.ts';
import type { TypedPlan } from '../../src/dsl/typecheck.ts';
import { okPlan, runCli, tempFiles } from '../support/cli.ts';

// A plain function, not vi.fn: with a module-level vi.fn that throws, vitest 5 failed the test
// although main() caught the exception (cause not pinned down).
const stub = vi.hoisted(() => {
  const state = {
    calls: [] as [SourceFile, CheckOptions | undefined][],
    impl: (): CheckResult => ({ plans: [], diagnostics: [] }),
  };
  return {
    state,
    checkSource: (file: SourceFile, options?: CheckOptions): CheckResult => {
      state.calls.push([file, options]);
      return state.impl();
    },
  };
});
vi.mock('../../src/dsl/check.ts', () => ({ checkSource: stub.checkSource }));
const returns = (result: CheckResult) => {
  stub.state.impl = () => result;
};

const tmp = tempFiles({ 'ok.kvp': okPlan });
afterAll(() => tmp.cleanup());
const ok = tmp.path('ok.kvp');
beforeEach(() => {
  stub.state.calls = [];
});

const span = { start: { offset: 0, line: 1, col: 1 }, end: { offset: 4, line: 1, col: 5 } };
const plan = (name: string) =>
  ({ kind: 'plan', name, nameSpan: span, params: [], body: [], leading: [], inner: [], span }) as const;
// The CLI only prints names and classifications; the resolved plan is never looked at.
const typed = (name: string) => ({ plan: plan(name), bindings: new Map() }) as unknown as TypedPlan;

describe('kvplan check output', () => {
  it('prints exact and approximate plans with the premise, and passes the file and overrides', async () => {
    returns({
      plans: [
        { plan: plan('one'), typed: typed('one'), params: new Map(), classification: { exact: true } },
        {
          plan: plan('two'),
          typed: typed('two'),
          params: new Map(),
          classification: { exact: false, premise: 'cached K/V of decoded rows equal their fresh values' },
        },
      ],
      diagnostics: [],
    });
    const r = await runCli(['check', '--set', 'tau=0.8', '--set', 'block=16', '--set', 'tau=0.7', ok]);
    expect(r.stdout).toBe(
      `ok  ${ok}  one  exact\nok  ${ok}  two  approximate: cached K/V of decoded rows equal their fresh values\n`,
    );
    expect(r.code).toBe(0);
    expect(stub.state.calls).toHaveLength(1);
    const [file, options] = stub.state.calls[0] ?? [];
    expect(file).toEqual({ path: ok, text: okPlan });
    // A later --set of the same name wins.
    expect([...(options?.overrides ?? new Map())]).toEqual([
      ['tau', '0.7'],
      ['block', '16'],
    ]);
  });

  it('prints warnings without failing', async () => {
    returns({
      plans: [{ plan: plan('one'), typed: typed('one'), params: new Map(), classification: { exact: true } }],
      diagnostics: [{ severity: 'warning', message: 'something odd', span }],
    });
    const r = await runCli(['check', ok]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`${ok}:1:1: warning: something odd`);
    expect(r.stdout).toBe(`ok  ${ok}  one  exact\n`);
  });

  it('says so when a well-formed file has no plans', async () => {
    returns({ plans: [], diagnostics: [] });
    expect(await runCli(['check', ok])).toEqual({ code: 0, stdout: `ok  ${ok}  (no plans)\n`, stderr: '' });
  });

  it('reports a bug in the checker as `kvplan: internal error: <message>` with exit 70', async () => {
    stub.state.impl = () => {
      throw new TypeError('checker exploded');
    };
    const r = await runCli(['check', ok]);
    expect(r).toEqual({ code: 70, stdout: '', stderr: 'kvplan: internal error: checker exploded\n' });
  });
});
