// Importing the library loads the plan language and the compiler, nothing native and no model
// reader (docs/api.md, "Loading"): a fresh Node process imports src/index.ts with a resolve hook
// that records every module it loads.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

const hook = `
let port;
export async function initialize(data) { port = data.port; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  port.postMessage(r.url);
  return r;
}`;

const script = `
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const urls = [];
port1.on('message', (url) => urls.push(url));
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}), {
  data: { port: port2 },
  transferList: [port2],
});
const { register: tsx } = await import('tsx/esm/api');
tsx();
const api = await import('./src/index.ts');
await new Promise((r) => setTimeout(r, 200));
port1.close();
console.log(JSON.stringify({ exports: Object.keys(api).length, urls }));
`;

test('importing the API loads no backend, no model reader and never onnxruntime', () => {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  expect(r.status, r.stderr).toBe(0);
  const { exports, urls } = JSON.parse(r.stdout) as { exports: number; urls: string[] };
  expect(exports).toBeGreaterThan(0);
  const packages = new Set(urls.flatMap((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1] ?? []));
  // The hook sees what is loaded: the parser's library and the API's own modules.
  expect(packages).toContain('chevrotain');
  expect(urls.some((u) => u.endsWith('/src/api/generate.ts'))).toBe(true);
  const heavy = [
    'koffi',
    'webgpu',
    'onnx-proto',
    'protobufjs',
    'onnxruntime-node',
    '@huggingface/tokenizers',
  ];
  expect(heavy.filter((p) => packages.has(p))).toEqual([]);
  // Nor the modules that load them.
  const loaders = [
    'backends/cpu/compiler.ts',
    'backends/cpu/runner.ts',
    'backends/cuda-ptx/driver.ts',
    'backends/webgpu/device.ts',
    'model/onnx/load.ts',
    'runtime/openModel.ts',
  ];
  expect(loaders.filter((m) => urls.some((u) => u.endsWith(`/src/${m}`)))).toEqual([]);
});
