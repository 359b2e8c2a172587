/**
 * Bundles the browser page (examples/web/main.ts) into examples/web/dist/main.js with esbuild.
 * Run: `npx tsx examples/web/build.ts`. test/web/browser.test.ts calls `buildWeb()` itself.
 *
 * Two Node-only dependencies are reachable from the page's imports, on paths it never takes:
 * - src/backends/webgpu/device.ts loads Dawn with a dynamic `import('webgpu')` on its Node path
 *   only; `webgpu` is left external, so it is not bundled and never loaded.
 * - src/model/config.ts imports `node:path`, and `readSmallFile` (src/model/smallFile.ts, `node:fs`),
 *   for `loadConfig(file.json)`, which the page does not call (it uses a preset); those imports,
 *   from those modules only, resolve to stubs that throw if called. Any other Node built-in
 *   reaching the bundle fails the build.
 */
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

export const webRoot = fileURLToPath(new URL('.', import.meta.url));

const thrower = (module: string, names: readonly string[]) =>
  names
    .map((n) => `export function ${n}() { throw new Error('${module} is not available in the browser'); }`)
    .join('\n');

/** Importer (path suffix) → the Node built-ins it may import, as stubs. */
const stubs: Record<string, Record<string, string>> = {
  '/src/model/config.ts': { 'node:path': thrower('node:path', ['basename', 'extname']) },
  '/src/model/smallFile.ts': {
    'node:fs': thrower('node:fs', ['closeSync', 'fstatSync', 'openSync', 'readSync']),
  },
};

/** Stubs the Node built-ins of the modules above; refuses them anywhere else. */
const nodeBuiltins: Plugin = {
  name: 'node-builtins',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      const importer = args.importer.replaceAll('\\', '/');
      const allowed = Object.entries(stubs).find(([suffix]) => importer.endsWith(suffix))?.[1];
      if (allowed?.[args.path] !== undefined)
        return { path: args.path, namespace: 'node-stub', pluginData: allowed[args.path] };
      return { errors: [{ text: `${args.path} (imported by ${args.importer}) cannot run in the browser` }] };
    });
    b.onLoad({ filter: /.*/, namespace: 'node-stub' }, (args) => ({
      contents: args.pluginData as string,
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
