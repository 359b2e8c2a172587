/**
 * Writes a rendered plan to a directory: one `<kernel>.ptx` per kernel (names encode every
 * generator option, so plans compiled into the same directory share files) and
 * `<plan>.ptx-manifest.json` with the slots, sizes and per-phase, per-stage launches.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PtxRender } from './render.ts';

const safe = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, '_');

export function writePtxBuild(dir: string, planName: string, render: PtxRender): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, text] of render.files) {
    const f = join(dir, `${safe(name)}.ptx`);
    writeFileSync(f, text);
    written.push(f);
  }
  const m = join(dir, `${safe(planName)}.ptx-manifest.json`);
  writeFileSync(m, `${JSON.stringify({ plan: planName, ...render.manifest }, null, 2)}\n`);
  written.push(m);
  return written;
}
