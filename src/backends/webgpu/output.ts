import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WebGpuBuild } from './runner.ts';
import { shaderDef, wgslSource } from './shaders.ts';

const safe = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '_');

/** Writes a WebGPU build: one `.wgsl` file per shader and `<plan>.wgsl-manifest.json` (dispatch plan per phase, buffers). */
export function writeWebGpuBuild(dir: string, planName: string, build: WebGpuBuild): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (const name of build.manifest.shaders) {
    const file = join(dir, `${safe(name)}.wgsl`);
    writeFileSync(file, wgslSource(shaderDef(name), build.fault));
    files.push(file);
  }
  const manifest = join(dir, `${safe(planName)}.wgsl-manifest.json`);
  writeFileSync(manifest, `${JSON.stringify(build.manifest, null, 2)}\n`);
  files.push(manifest);
  return files;
}
