#!/usr/bin/env node
// Emits dist/: the JavaScript and declarations of src/ (tsc) and the C sources the CPU backend
// compiles at run time. The new tree is built beside the old one and swapped in by rename, so a
// process already running from dist/ (a test spawning the CLI while another run builds) never
// reads a half-written file. `--if-stale` skips the build when dist/ is newer than every source.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = join(root, 'src');
const dist = join(root, 'dist');
const stamp = join(dist, '.built');

function newestSource(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

const inputs = () =>
  Math.max(
    newestSource(src),
    ...['tsconfig.json', 'tsconfig.build.json'].map((f) => statSync(join(root, f)).mtimeMs),
  );

if (process.argv.includes('--if-stale') && existsSync(stamp) && statSync(stamp).mtimeMs > inputs())
  process.exit(0);

const next = `${dist}.${process.pid}`;
const old = `${dist}.old.${process.pid}`;
rmSync(next, { recursive: true, force: true });
const tsc = join(root, 'node_modules/typescript/bin/tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', next], {
    stdio: 'inherit',
  });
} catch (e) {
  // tsc has printed its diagnostics; dist/ stays as it was.
  rmSync(next, { recursive: true, force: true });
  process.exit(typeof e.status === 'number' ? e.status : 1);
}
cpSync(join(src, 'backends/cpu/c'), join(next, 'backends/cpu/c'), { recursive: true });
cpSync(join(root, 'package.json'), join(next, '.built'));
if (existsSync(dist)) renameSync(dist, old);
renameSync(next, dist);
rmSync(old, { recursive: true, force: true });
