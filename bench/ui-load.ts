// How fast the system UI opens (issue 6: initial JavaScript at most 300 KB gzipped, dashboard's first render under
// 1 s on this machine). A real single-device zone serves the built UI from its gateway; headless Chromium opens the
// dashboard of a signed-in session, cold (a new browser context: empty cache, no service worker) and warm (a reload
// in the same context), and the page's own `dashboard-ready` mark says when the dashboard first showed the zone's
// data. The anchor is the same dashboard, captured after it rendered and served as static HTML with the same
// stylesheet from a plain node:http server: what showing this content costs a browser with no application at all.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { verifyHubApi } from '../src/lib/api/verify-hub.ts';
import { activateDevice } from '../src/lib/identity/activation-client.ts';
import { generateMnemonic } from '../src/lib/identity/mnemonic.ts';
import { createClient } from '../src/lib/krpc/index.ts';
import { SESSION_STORAGE_KEY, UI_APP_ID, sessionFromTokens } from '../src/ui/session.ts';
import { UI_OUT, ensureUiBuilt } from '../scripts/build-ui.ts';
import { startZone } from '../test/support/zone.ts';
import { launchChromium } from '../test/support/browser.ts';
import { ensureBuilt } from './support/build.ts';
import { fmt, machineLine, percentile, table } from './support/measure.ts';

const TARGET_JS_KB = 300;
const TARGET_RENDER_MS = 1000;
const COLD_RUNS = 10;
const WARM_RUNS = 5;
const OWNER = 'alice';
const PASSWORD = 'correct-Horse-battery-9';
const KERNEL = ['system-config', 'verify-hub', 'klog', 'scheduler', 'gateway'];

interface Load {
  /** Navigation start to the dashboard's first render with data. */
  readyMs: number;
  firstPaintMs: number;
  /** JavaScript fetched before the dashboard was ready: its URL path, and the bytes that crossed the wire. */
  scripts: { path: string; wireBytes: number }[];
}

async function measureLoad(page: Page, url: string): Promise<Load> {
  await page.goto(url);
  await page.locator('[data-state="ready"]').waitFor({ timeout: 30_000 });
  return page.evaluate(() => {
    const ready = performance.getEntriesByName('dashboard-ready')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    if (!ready) throw new Error('the dashboard rendered without its dashboard-ready mark');
    const scripts = (performance.getEntriesByType('resource') as PerformanceResourceTiming[])
      .filter((r) => new URL(r.name).pathname.endsWith('.js') && r.startTime <= ready.startTime)
      .map((r) => ({ path: new URL(r.name).pathname, wireBytes: r.transferSize }));
    return { readyMs: ready.startTime, firstPaintMs: fcp?.startTime ?? NaN, scripts };
  });
}

/** Serves one HTML page and the built UI's files from a plain node:http server. */
async function staticServer(html: string): Promise<{ url: string; close(): void }> {
  const types: Record<string, string> = { '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
      return;
    }
    try {
      const body = readFileSync(join(UI_OUT, path.replaceAll('..', '')));
      res.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, close: () => server.close() };
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);
const p90 = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.9);

export async function main(): Promise<void> {
  console.log('ui-load: the system UI\'s initial JavaScript and the dashboard\'s first render, in Chromium against a real zone');
  console.log(`  ${machineLine()}`);
  ensureBuilt();
  if (await ensureUiBuilt()) console.log('  dist/ui was missing or older than src/ui: built it');

  const zone = await startZone({ defaults: true });
  let browser: Browser | undefined;
  try {
    await activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: 'bench.example.com', owner: OWNER, password: PASSWORD });
    await zone.waitFor((s) => s.state === 'running' && KERNEL.every((n) => s.children.some((c) => c.name === n && c.healthy)), 90_000, 'a healthy zone');
    await zone.waitRoutable(KERNEL);
    const hub = createClient(verifyHubApi, { baseUrl: zone.gatewayUrl });
    const tokens = await hub.login_password({ username: OWNER, password: PASSWORD, nonce: (await hub.login_nonce({})).nonce, app_id: UI_APP_ID });
    // The page's clock is this machine's: the stored session is what a sign-in in the page would have kept.
    const stored = JSON.stringify(sessionFromTokens(tokens, Date.now()));
    const url = `${zone.uiUrl}/`;
    browser = await launchChromium();

    const cold: Load[] = [];
    let capturedHtml = '';
    for (let i = 0; i <= COLD_RUNS; i++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await context.addInitScript(([key, value]) => sessionStorage.setItem(key, value), [SESSION_STORAGE_KEY, stored] as const);
      const page = await context.newPage();
      const load = await measureLoad(page, url);
      // The first run warms the zone's own caches (verified tokens, routes) and is not counted.
      if (i > 0) cold.push(load);
      if (i === COLD_RUNS) {
        capturedHtml = await page.evaluate(() => {
          for (const el of document.querySelectorAll('script, link[rel="modulepreload"], link[rel="manifest"], meta[http-equiv]')) el.remove();
          return `<!doctype html>${document.documentElement.outerHTML}`;
        });
      }
      await context.close();
    }

    const warm: Load[] = [];
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.addInitScript(([key, value]) => sessionStorage.setItem(key, value), [SESSION_STORAGE_KEY, stored] as const);
    const page = await context.newPage();
    await measureLoad(page, url);
    for (let i = 0; i < WARM_RUNS; i++) warm.push(await measureLoad(page, url));
    await context.close();

    const anchor = await staticServer(capturedHtml);
    const staticPaints: number[] = [];
    try {
      for (let i = 0; i <= COLD_RUNS; i++) {
        const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
        const p = await ctx.newPage();
        await p.goto(anchor.url, { waitUntil: 'load' });
        const fcp = await p.evaluate(
          () =>
            new Promise<number>((resolve) => {
              new PerformanceObserver((list) => {
                const e = list.getEntriesByName('first-contentful-paint')[0];
                if (e) resolve(e.startTime);
              }).observe({ type: 'paint', buffered: true });
            }),
        );
        if (i > 0) staticPaints.push(fcp);
        await ctx.close();
      }
    } finally {
      anchor.close();
    }

    // Initial JavaScript: every script fetched before the first render, gzipped at level 9 as the target counts it.
    const paths = [...new Set(cold.flatMap((l) => l.scripts.map((s) => s.path)))];
    const files = paths.map((p) => {
      const raw = readFileSync(join(UI_OUT, p));
      return { path: p, raw: raw.length, gzip: gzipSync(raw, { level: 9 }).length, wire: Math.max(...cold.map((l) => l.scripts.find((s) => s.path === p)?.wireBytes ?? 0)) };
    });
    const gzipKb = files.reduce((a, f) => a + f.gzip, 0) / 1024;

    const coldReady = cold.map((l) => l.readyMs);
    const rows = [
      ['dashboard ready, cold (new context)', fmt(median(coldReady)), fmt(p90(coldReady)), fmt(Math.max(...coldReady))],
      ['first paint, cold', fmt(median(cold.map((l) => l.firstPaintMs))), fmt(p90(cold.map((l) => l.firstPaintMs))), fmt(Math.max(...cold.map((l) => l.firstPaintMs)))],
      ['dashboard ready, warm (reload)', fmt(median(warm.map((l) => l.readyMs))), fmt(p90(warm.map((l) => l.readyMs))), fmt(Math.max(...warm.map((l) => l.readyMs)))],
      ['anchor: the same page as static HTML, first paint', fmt(median(staticPaints)), fmt(p90(staticPaints)), fmt(Math.max(...staticPaints))],
    ];
    console.log('');
    console.log(table(['milliseconds from navigation start', 'median', 'p90', 'max'], rows));
    console.log('');
    console.log(table(['JavaScript before the first render', 'raw KB', 'gzip -9 KB', 'on the wire KB (br)'], [
      ...files.map((f) => [f.path, fmt(f.raw / 1024, 1), fmt(f.gzip / 1024, 1), fmt(f.wire / 1024, 1)]),
      ['total', fmt(files.reduce((a, f) => a + f.raw, 0) / 1024, 1), fmt(gzipKb, 1), fmt(files.reduce((a, f) => a + f.wire, 0) / 1024, 1)],
    ]));
    console.log('');
    const ready = median(coldReady);
    console.log(
      `dashboard first render: ${fmt(ready)} ms median cold (target < ${TARGET_RENDER_MS} ms; ${fmt(ready / median(staticPaints), 1)}x static HTML); ` +
        `initial JS ${fmt(gzipKb, 1)} KB gzipped (target <= ${TARGET_JS_KB} KB)`,
    );
  } finally {
    await browser?.close();
    await zone.destroy();
  }
}
