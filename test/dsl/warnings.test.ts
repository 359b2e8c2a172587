import { afterAll, describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { formatDiagnostic } from '../../src/dsl/diagnostics.ts';
import { layerScopeDiagnostics } from '../../src/dsl/semantics/layerDepth.ts';
import { runCli, tempFiles } from '../support/cli.ts';

const planText = (body: string, params = '') => `plan t(${params}) {\n${body}\n}\n`;
const check = (body: string, params = '') => checkSource({ path: 't.kvp', text: planText(body, params) });
const warnings = (body: string) =>
  check(body)
    .diagnostics.filter((d) => d.severity === 'warning')
    .map((d) => `${d.span.start.line}:${d.span.start.col} ${d.message}`);

describe('decode candidates that can never hold a masked position', () => {
  test.each([
    'prompt | decoded[confidence > 0.5]',
    'before_block',
    'newly_decoded',
    'current_block - masked',
    'topk(prompt | decoded, confidence, 4)',
    'decoded | generated[age >= 1]',
    'before_block & current_block',
  ])('`in %s` is warned about, at the `in` set', (set) => {
    const r = check(`  blocks 4\n  decode threshold(0.9) in ${set}`);
    const located = r.diagnostics.filter((d) => d.severity === 'warning').map((d) => d.span);
    expect(located.map((s) => `${s.start.line}:${s.start.col}-${s.end.col}`)).toEqual([
      `3:28-${28 + set.length}`,
    ]);
  });

  test.each([
    'current_block',
    'prompt | current_block',
    'generated[age < 1]',
    'window(prompt, 2)',
    'shift(decoded, 1)',
    'current_block - prompt',
    'masked[not (age >= 1)]',
  ])('`in %s` may hold a masked position: no warning', (set) => {
    expect(warnings(`  blocks 4\n  decode threshold(0.9) in ${set}`)).toEqual([]);
  });

  test('lets and selections are followed to their sets', () => {
    expect(warnings('  let old = decoded[age >= 2]\n  decode threshold(0.9) in old')).toHaveLength(1);
    const select = '  select s = topk(prompt, confidence, 2) at block_start';
    expect(warnings(`${select}\n  decode threshold(0.9) in s`)).toHaveLength(1);
    expect(warnings('  let c = current_block\n  decode threshold(0.9) in c')).toEqual([]);
  });

  test('the warning reads as a located warning with a help note', () => {
    // `in prompt | current_block[...]` may decode, so it is not warned about as never masked;
    // it is as chosen by model scores (it may run dry on a model).
    expect(warnings('  decode threshold(0.9) in prompt | current_block[confidence > 0.5]')).toEqual([
      '2:28 the decode candidates `prompt | current_block[confidence > 0.5]` are chosen by model scores: on a model where they hold no masked position, nothing is decoded and the generation stalls',
    ]);
    expect(warnings('  decode threshold(0.9) in prompt | current_block[age < 1]')).toEqual([]);
    const text = planText(
      '  let early = topk(decoded, confidence, 2)\n  decode per_step(1) in early | prompt',
    );
    const r = checkSource({ path: 'w.kvp', text });
    const shown = r.diagnostics
      .filter((d) => d.severity === 'warning')
      .map((d) => formatDiagnostic({ path: 'w.kvp', text }, d));
    expect(shown.join('\n')).toMatchSnapshot();
  });
});

describe('layer scopes beyond the model depth', () => {
  const body = [
    '  compute all on layers >= deep',
    '  compute all on layers < 1',
    '  cache kv of all on layer 7',
    '  refresh all when every(2) on layers 8..9',
    '  attend all on layers 1..9',
    '  decode threshold(0.9)',
  ].join('\n');
  const checked = check(body, 'deep: int = 9').plans[0];

  test('every scope that selects no layer is reported at the scope, naming the model', () => {
    if (!checked) throw new Error('the plan should be well-formed');
    const ds = layerScopeDiagnostics(checked, 4, 'tiny4');
    expect(ds.map((d) => [d.severity, `${d.span.start.line}:${d.span.start.col}`, d.message])).toEqual([
      ['error', '2:15', "`on layers >= 9` selects no layer of model 'tiny4' (4 layers: 0..3)"],
      ['error', '4:19', "`on layer 7` selects no layer of model 'tiny4' (4 layers: 0..3)"],
      ['error', '5:29', "`on layers 8..9` selects no layer of model 'tiny4' (4 layers: 0..3)"],
    ]);
    expect(ds[1]?.notes).toEqual(["note: this `cache` rule would never apply on 'tiny4'"]);
  });

  test('a deep enough model has nothing to report; warnings on request', () => {
    if (!checked) throw new Error('the plan should be well-formed');
    expect(layerScopeDiagnostics(checked, 10, 'ten')).toEqual([]);
    expect(layerScopeDiagnostics(checked, 9, 'nine').map((d) => d.message)).toEqual([
      "`on layers >= 9` selects no layer of model 'nine' (9 layers: 0..8)",
    ]);
    expect(
      layerScopeDiagnostics(checked, 1, 'one', 'warning').map((d) => [d.severity, d.message]),
    ).toContainEqual(['warning', "`on layers 8..9` selects no layer of model 'one' (1 layer: 0)"]);
  });

  describe('kvplan check --config', () => {
    const tmp = tempFiles({ 'deep.kvp': planText(body, 'deep: int = 9') });
    afterAll(() => tmp.cleanup());

    test('prints the scopes beyond the model as warnings and exits 0', async () => {
      const r = await runCli(['check', '--config', 'tiny', tmp.path('deep.kvp')]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^ok {2}\S+deep\.kvp {2}t /);
      expect(r.stderr).toContain(
        `deep.kvp:2:15: warning: \`on layers >= 9\` selects no layer of model 'tiny'`,
      );
      expect(r.stderr).toContain(`deep.kvp:4:19: warning: \`on layer 7\` selects no layer of model 'tiny'`);
      expect(r.stderr).not.toContain('error');
    });
    test('an --set that brings the scope back into the model silences it', async () => {
      const r = await runCli(['check', '--config', 'tiny', '--set', 'deep=1', tmp.path('deep.kvp')]);
      expect(r.stderr).not.toContain('on layers >= 1');
    });
    test('without --config nothing is said about depth; an unknown model is a usage error', async () => {
      expect((await runCli(['check', tmp.path('deep.kvp')])).stderr).toBe('');
      const bad = await runCli(['check', '--config', 'no-such-model', tmp.path('deep.kvp')]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^kvplan: --config no-such-model: /);
    });
  });
});
