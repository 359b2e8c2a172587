import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { soname } from './compiler.ts';
import type { CpuBuild } from './runner.ts';

/** A file-name-safe form of a plan name (plan names are identifiers, but be strict anyway). */
const safe = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '_');

/**
 * Writes a CPU build: `<plan>.c`, `<plan>.so`, `<plan>.manifest.json` (slots, sizes, stages) and
 * the primitives library `<plan>.so` is linked against, under its soname `kvplan-<hash>.so`,
 * where the plan library's rpath (`$ORIGIN`) finds it: the directory loads on its own.
 */
export function writeCpuBuild(dir: string, planName: string, build: CpuBuild): string[] {
  mkdirSync(dir, { recursive: true });
  const base = join(dir, safe(planName));
  const files = [
    `${base}.c`,
    `${base}.so`,
    `${base}.manifest.json`,
    join(dir, soname(build.primitives.hash)),
  ];
  writeFileSync(files[0] as string, build.source);
  copyFileSync(build.library, files[1] as string);
  copyFileSync(build.primitives.path, files[3] as string);
  const launch = Object.fromEntries(
    Object.entries(build.manifest.phases).map(([phase, stages]) => [phase, stages.map((s) => s.fn)]),
  );
  writeFileSync(
    files[2] as string,
    `${JSON.stringify({ ...build.manifest, launchOrder: launch }, null, 2)}\n`,
  );
  return files;
}
