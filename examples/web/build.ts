/**
 * Bundles the browser page (examples/web/main.ts) into examples/web/dist/main.js with esbuild.
 * Run: `npx tsx examples/web/build.ts`. test/web/browser.test.ts calls `buildWeb()` itself.
 *
 * Two Node-only dependencies are reachable from the page's imports, on paths it never takes:
 * - src/backends/webgpu/device.ts loads Dawn with a dynamic `import('webgpu')` on its Node path
 *   only; `webgpu` is left external, so it is not bundled and never loaded.
 * - src/model/config.ts imports `node:fs` and `node:path` for `loadConfig(file.json)`, which the
 *   page does not call (it uses a preset); those two imports, from that module only, resolve to
 *   stubs that throw if called. Any other Node built-in reaching the bundle fails the build.
 */
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

export const webRoot = fileURLToPath(new URL('.', import.meta.url));

const stubs: Record<string, string> = {
  'node:fs': `export function readFileSync() { throw new Error('node:fs is not available in the browser'); }`,
  'node:path': [
    `export function basename() { throw new Error('node:path is not available in the browser'); }`,
    `export function extname() { throw new Error('node:path is not available in the browser'); }`,
  ].join('\n'),
};

/** Stubs the Node built-ins of src/model/config.ts; refuses them anywhere else. */
const nodeBuiltins: Plugin = {
  name: 'node-builtins',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      if (args.path in stubs && args.importer.replaceAll('\\', '/').endsWith('/src/model/config.ts'))
        return { path: args.path, namespace: 'node-stub' };
      return { errors: [{ text: `${args.path} (imported by ${args.importer}) cannot run in the browser` }] };
    });
    b.onLoad({ filter: /.*/, namespace: 'node-stub' }, (args) => ({
      contents: stubs[args.path],
      loader: 'js',
    }));
  },
};

export async function buildWeb(): Promise<{ outfile: string; bytes: number; ms: number }> {
  const t = performance.now();
  const outfile = `${webRoot}dist/main.js`;
  const r = await build({
    entryPoints: [`${webRoot}main.ts`],
    outfile,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    sourcemap: true,
    external: ['webgpu'],
    loader: { '.kvp': 'text' },
    plugins: [nodeBuiltins],
    metafile: true,
    logLevel: 'silent',
  });
  const bytes = Object.values(r.metafile.outputs).find((o) => o.entryPoint)?.bytes ?? 0;
  return { outfile, bytes, ms: performance.now() - t };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await buildWeb();
  console.log(`${r.outfile}: ${(r.bytes / 1024).toFixed(0)} KiB in ${r.ms.toFixed(0)} ms`);
}
