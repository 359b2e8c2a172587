/**
 * End-to-end test of the browser page (examples/web): bundles it, serves it on 127.0.0.1, opens it
 * in headless Debian Chromium (WebGPU on SwiftShader), clicks "compile & run" and reads the JSON
 * line the page writes into #result. CI installs /usr/bin/chromium (.ci/run), so it runs there;
 * without it the test prints `skipped: chromium not installed`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildWeb, webRoot } from '../../examples/web/build.ts';
import type { PageResult } from '../../examples/web/result.ts';
import { validateWgsl, validationDevice } from '../../src/backends/webgpu/device.ts';
import { float32Budget } from '../../src/runtime/verify.ts';

const executablePath = '/usr/bin/chromium';
const haveChromium = existsSync(executablePath);
if (!haveChromium) console.log('browser page test: skipped: chromium not installed');

const flags = [
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--enable-unsafe-swiftshader',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
};

/** Serves examples/web (static files only) on 127.0.0.1: a secure context, unlike a data: URL. */
function serve(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const file = normalize(join(webRoot, path === '/' ? 'index.html' : path));
    const type = types[extname(file)];
    if (!file.startsWith(webRoot) || !type || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': type }).end(readFileSync(file));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` }),
    ),
  );
}

describe.skipIf(!haveChromium)('browser page in headless Chromium', () => {
  let server: Server | undefined;
  let browser: Browser | undefined;
  let url = '';

  beforeAll(async () => {
    const b = await buildWeb();
    console.log(`bundle: ${(b.bytes / 1024).toFixed(0)} KiB in ${b.ms.toFixed(0)} ms`);
    ({ server, url } = await serve());
    browser = await chromium.launch({ executablePath, args: flags, headless: true });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  });

  test('compiles the default plan, validates its WGSL and runs it against the golden', async () => {
    const page = await (browser as Browser).newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const t = performance.now();
    await page.goto(url);
    await page.click('#run');
    const line = await page.locator('#result:not(:empty)').textContent({ timeout: 45_000 });
    const ms = performance.now() - t;
    const status = await page.locator('#status').textContent();
    const r = JSON.parse(line ?? '') as PageResult;
    const wgsl = (await page.evaluate('window.kvplanWgsl')) as Record<string, string> | undefined;
    await page.close();
    console.log(`page status:\n${status}`);
    expect(errors).toEqual([]);
    expect(r.error).toBeUndefined();
    expect(r.compiled).toBe(true);
    expect(r.shaders).toBeGreaterThan(0);
    if (r.adapter === null) {
      // No adapter in this Chromium: validate the page's WGSL with Dawn (null backend) in Node.
      console.log(`skipped: no WebGPU adapter in Chromium (${r.noAdapter})`);
      const device = await validationDevice();
      if (typeof device === 'string') throw new Error(`no WGSL validator either: ${device}`);
      expect(Object.keys(wgsl ?? {}).length).toBe(r.shaders);
      for (const [name, code] of Object.entries(wgsl ?? {}))
        expect(await validateWgsl(device, code), name).toEqual([]);
      return;
    }
    expect(r.wgslValid).toBe(true);
    expect(r.wgslErrors).toEqual([]);
    expect(r.ran).toBe(true);
    expect(r.steps).toBeGreaterThan(0);
    expect(r.checkedSteps).toBeGreaterThan(0);
    // The page holds every checked step to float32Budget(eager float32 error, that step's scale);
    // recheck the worst deviation against the budget at the largest scale.
    expect(r.withinBudget).toBe(true);
    expect(r.maxDeviation as number).toBeLessThanOrEqual(
      float32Budget(r.eagerError as number, r.scale as number),
    );
    expect(r.ok).toBe(true);
    console.log(
      `${r.plan} on ${r.adapter}: ${r.steps} steps, ${(r.msPerStep as number).toFixed(1)} ms/step, ` +
        `max |gpu - golden| ${(r.maxDeviation as number).toExponential(2)} ` +
        `(eager float32 ${(r.eagerError as number).toExponential(2)}); page ${ms.toFixed(0)} ms`,
    );
  });
});
