// kvplan as a user installs it: `npm pack`, then the tarball installed into an empty directory with
// production dependencies only. What the package needs at run time must be a dependency and in
// `files`; what its library entry point exports must import and type-check from there.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bubblePass, bubPasses } from '../../src/eval/tasks.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvplan-pack-'));
const app = join(dir, 'app');
const npm = (args: string[], cwd: string) =>
  execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { cwd: app, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const kvplan = (...args: string[]) => run(join(app, 'node_modules/.bin/kvplan'), args);

beforeAll(() => {
  // The global setup has just built dist/; packing must not rebuild it under running tests.
  npm(['pack', '--ignore-scripts', '--pack-destination', dir], root);
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error('npm pack wrote no tarball');
  execFileSync('mkdir', [app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  npm(['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', join(dir, tarball)], app);
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the packed tarball, installed with production dependencies only', () => {
  test('holds no test-only dependency and no source tree', () => {
    const installed = readdirSync(join(app, 'node_modules'));
    for (const dev of ['onnxruntime-node', 'playwright-core', 'vitest', 'tsx', 'typescript'])
      expect(installed).not.toContain(dev);
    const pkg = readdirSync(join(app, 'node_modules/kvplan'));
    expect(pkg).toEqual(expect.arrayContaining(['bin', 'dist', 'models', 'examples', 'package.json']));
    expect(pkg).not.toContain('src');
    expect(pkg).not.toContain('test');
  });

  test('the CLI runs the built code: --version, check, generate and demo', () => {
    const v = kvplan('--version');
    expect(v.code, v.err).toBe(0);
    expect(v.out.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const plans = join(app, 'node_modules/kvplan/examples');
    const c = kvplan('check', join(plans, 'baseline.kvp'));
    expect(c.code, c.err).toBe(0);
    expect(c.out).toMatch(/ok .*baseline\.kvp\s+baseline\s+exact/);
    // Fast-dLLM v2 on the bundled model made for it, on the CPU backend (gcc, koffi): the answer
    // is the bubble sort shown pass by pass.
    const model = join(app, 'node_modules/kvplan/models/step-v2');
    const g = kvplan(
      'generate',
      '--plan',
      join(plans, 'fast-dllm-v2.kvp'),
      '--model',
      model,
      '--prompt',
      'bub:315247=',
      '--backend',
      'cpu',
      '--block',
      '4',
      '--gen-length',
      '56',
    );
    expect(g.code, g.err).toBe(0);
    let passes = '315247';
    const expected = Array.from({ length: bubPasses }, () => (passes = bubblePass(passes)));
    expect(g.out.trim()).toBe(expected.join(','));
    const d = kvplan('demo', '--n', '1', '--show', '0');
    expect(d.code, d.err).toBe(0);
    // Every example plan gets a row with an accuracy.
    for (const f of readdirSync(plans).filter((p) => p.endsWith('.kvp'))) {
      const name = /^plan (\w+)/m.exec(readFileSync(join(plans, f), 'utf8'))?.[1];
      expect(d.out).toMatch(new RegExp(`^${name} on step-`, 'm'));
    }
  }, 600_000);

  test("the library imports and type-checks as `import … from 'kvplan'`", () => {
    // The same use in TypeScript (type-checked against the shipped declarations) and in plain
    // JavaScript (run): a good plan and a broken one, the broken one's error as data.
    const use = (typed: boolean) =>
      [
        `import { checkPlan, formatDiagnostics${typed ? ', type CheckReport' : ''} } from 'kvplan';`,
        `const good${typed ? ': CheckReport' : ''} = checkPlan({ text: 'plan p() { attend all decode steps(1) by confidence }' });`,
        "const bad = checkPlan({ text: 'plan p() { attend nothing }', path: 'bad.kvp' });",
        'console.log(JSON.stringify({',
        '  good: good.ok && good.plans[0]?.classification.exact,',
        '  bad: bad.ok,',
        "  where: formatDiagnostics(bad).split('\\n')[0],",
        '}));',
        '',
      ].join('\n');
    writeFileSync(join(app, 'use.ts'), use(true));
    writeFileSync(join(app, 'use.mjs'), use(false));
    const r = run(process.execPath, ['use.mjs']);
    expect(r.code, r.err).toBe(0);
    const seen = JSON.parse(r.out) as { good: boolean; bad: boolean; where: string };
    expect(seen).toMatchObject({ good: true, bad: false });
    expect(seen.where).toMatch(/^bad\.kvp:1:\d+: error: /);
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          typeRoots: [join(root, 'node_modules/@types')],
          types: ['node'],
        },
        files: ['use.ts'],
      }),
    );
    const tsc = run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', app]);
    expect(tsc.code, tsc.out + tsc.err).toBe(0);
  });
});
