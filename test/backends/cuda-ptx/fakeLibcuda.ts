import { readFileSync } from 'node:fs';
import { compileLibrary } from '../../../src/backends/cpu/compiler.ts';

/** Builds (or finds in the compiler cache) the stub libcuda of fake_libcuda.c; returns its path. */
export const fakeLibcuda = (): string =>
  compileLibrary(readFileSync(new URL('./fake_libcuda.c', import.meta.url), 'utf8'), {
    flags: ['-O1', '-fPIC', '-shared', '-std=c11'],
  }).path;
