import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/** A temporary directory for one test file, removed after its tests; every path handed out is new. */
export interface Scratch {
  readonly root: string;
  /** A path in the directory that nothing uses yet: `${label}${n}`. */
  readonly path: (label: string) => string;
  /** A new directory in it. */
  readonly dir: (label?: string) => string;
  /** A new `.safetensors` file in it holding these bytes. */
  readonly put: (bytes: Uint8Array, label?: string) => string;
}

/** Call at a test file's top level (it registers the clean-up with `afterAll`). */
export function scratch(prefix: string): Scratch {
  const root = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let serial = 0;
  const path = (label: string): string => join(root, `${label}${serial++}`);
  return {
    root,
    path,
    dir: (label = 'd') => {
      const d = path(label);
      mkdirSync(d);
      return d;
    },
    put: (bytes, label = 'f') => {
      const file = `${path(label)}.safetensors`;
      writeFileSync(file, bytes);
      return file;
    },
  };
}
