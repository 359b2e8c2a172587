// Data flows one way: text -> AST -> IR -> passes -> kernels -> runtime (DESIGN.md section 3).
// These are the import edges that would break it; the backends are composed above the runtime.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';

const root = resolve('src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Each source file's relative imports, as paths under src/ (`ir/lower.ts`, `backends/cpu/runner.ts`). */
const imports = sources(root).map((file) => {
  const text = readFileSync(file, 'utf8');
  // `… from '…'`, a bare `import '…'` and a dynamic `import('…')` all make an edge.
  const targets = [...text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*'(\.[^']+)'/g)].map((m) =>
    relative(root, resolve(file, '..', m[1] as string)),
  );
  return { file: relative(root, file), targets };
});

const forbidden: readonly [string, readonly string[]][] = [
  ['dsl/', ['ir/', 'passes/', 'backends/', 'runtime/', 'cli/', 'eval/']],
  ['ir/', ['passes/', 'backends/', 'runtime/', 'cli/', 'eval/']],
  ['passes/', ['backends/', 'runtime/', 'cli/', 'eval/']],
  ['runtime/', ['backends/', 'cli/', 'eval/']],
  ['eval/', ['backends/', 'cli/']],
  // The library API and the CLI are siblings over the pipeline: neither is built on the other.
  ['api/', ['cli/']],
  ['cost/', ['cli/', 'api/']],
  ['report/', ['dsl/', 'ir/', 'passes/', 'backends/', 'runtime/', 'cli/', 'eval/', 'api/', 'cost/']],
];

describe('layering', () => {
  test.each(forbidden)('nothing in src/%s imports from %j', (layer, above) => {
    const edges = imports
      .filter((f) => f.file.startsWith(layer))
      .flatMap((f) =>
        f.targets.filter((t) => above.some((a) => t.startsWith(a))).map((t) => `${f.file} -> ${t}`),
      );
    expect(edges).toEqual([]);
  });

  test('the scan sees the import graph (a layer that imports its neighbours is found)', () => {
    const lower = imports.find((f) => f.file === 'ir/lower.ts');
    expect(lower?.targets).toContain('dsl/semantics/layerRules.ts');
    const registry = imports.find((f) => f.file === 'backends/registry.ts');
    expect(registry?.targets).toContain('backends/cpu/runner.ts');
  });
});
