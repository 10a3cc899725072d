// The system UI in Chromium against a real zone: a single-device zone is activated, and a person signs in (after a
// wrong password), sees the dashboard with this device and its services healthy, switches language, and signs out,
// once at a desktop viewport and once at a phone viewport (in the dark colour scheme), both asking for reduced
// motion so that screenshots show settled pages. axe-core checks every page for serious or critical accessibility
// violations, the console must stay clean, and screenshots of each step land in test-artifacts/ui/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { KERNEL, OWNER, PASSWORD, VIEWPORTS, field, fieldMessage, openPage, startUiZone, type UiZone } from './support/ui.ts';
import { verifyHubApi } from '../src/lib/api/verify-hub.ts';
import { KrpcError, createClient } from '../src/lib/krpc/index.ts';

describe('system UI in Chromium against a real zone', { timeout: 240_000 }, () => {
  let ui: UiZone;
  let zone: UiZone['zone'];
  let node: string;

  before(async () => {
    ui = await startUiZone();
    zone = ui.zone;
    node = ui.node;
  });
  after(async () => {
    await ui?.close();
  });

  for (const vp of VIEWPORTS) {
    it(`signs in, shows the dashboard and signs out at a ${vp.name} viewport`, async () => {
      const { context, page, errors, shot, audit, assertClean } = await openPage(ui.browser, vp, 'login');
      try {
        await page.goto(zone.uiUrl);
        await page.getByRole('heading', { name: 'Sign in' }).waitFor();
        await shot('login');
        await audit('login');

        // Empty fields are caught before anything is sent.
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByText('Enter your user name.').waitFor();
        assert.deepEqual(await fieldMessage(page, 'User name'), { invalid: 'true', message: 'Enter your user name.' });
        assert.deepEqual(await fieldMessage(page, 'Password'), { invalid: 'true', message: 'Enter your password.' });

        await field(page, 'User name').fill(OWNER);
        await field(page, 'Password').fill('Wrong-password-123');
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByText('Wrong user name or password.').waitFor();
        assert.deepEqual(await fieldMessage(page, 'Password'), { invalid: 'true', message: 'Wrong user name or password.' });
        assert.notEqual((await fieldMessage(page, 'User name')).invalid, 'true');
        await shot('login-wrong-password');
        await audit('login with an error');
        // The browser reports the 401 that carried UNAUTHENTICATED as a failed load; the page handled it.
        const expected401 = errors.findIndex((e) => e.includes('status of 401') && e.includes('/kapi/verify-hub'));
        assert.notEqual(expected401, -1, `the wrong password's answer: ${errors.join('; ')}`);
        errors.splice(expected401, 1);

        await field(page, 'Password').fill(PASSWORD);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
        await page.locator('[data-state="ready"]').waitFor();

        const device = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: node, exact: true }) });
        await device.getByText('Online', { exact: true }).waitFor();
        await device.getByText('this device').waitFor();
        for (const s of KERNEL) {
          const card = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: s, exact: true }) });
          // A heartbeat may still be settling after activation: the page polls, so wait for the next answer.
          await card.getByText('Healthy', { exact: true }).waitFor({ timeout: 30_000 });
        }
        await page.getByText('No alerts: everything is working.').waitFor({ timeout: 30_000 });
        await page.getByText('No storage configured.').waitFor();
        await shot('dashboard');
        await audit('dashboard');

        if (vp.options.isMobile) {
          const burger = page.getByRole('button', { name: 'Menu' });
          assert.equal(await burger.getAttribute('aria-expanded'), 'false');
          await burger.click();
          await page.getByRole('navigation', { name: 'Main navigation' }).getByRole('link', { name: 'Dashboard' }).waitFor();
          assert.equal(await burger.getAttribute('aria-expanded'), 'true');
          // The open navigation covers the viewport; the page scrolls beneath it.
          await shot('menu', false);
          await audit('menu open');
          await page.getByRole('navigation', { name: 'Main navigation' }).getByRole('link', { name: 'Dashboard' }).click();
          assert.equal(await burger.getAttribute('aria-expanded'), 'false');
        } else {
          assert.equal(await page.getByRole('button', { name: 'Menu' }).isVisible(), false, 'no burger beside a visible navigation');
          await page.getByRole('button', { name: 'Language' }).click();
          await page.getByRole('menuitem', { name: '中文' }).waitFor();
          await audit('language menu open');
          await page.getByRole('menuitem', { name: '中文' }).click();
          await page.getByRole('heading', { name: '仪表盘', level: 1 }).waitFor();
          await page.getByRole('menu').waitFor({ state: 'detached' });
          assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');
          await page.getByText('正常', { exact: true }).first().waitFor();
          await shot('dashboard-zh');
          await audit('dashboard in Chinese');
          await page.getByRole('button', { name: '语言' }).click();
          await page.getByRole('menuitem', { name: 'English' }).click();
          await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
        }

        const stored = await page.evaluate(() => sessionStorage.getItem('buckyos.session'));
        assert.ok(stored, 'the session is kept for reloads');
        assert.ok(!stored.includes(PASSWORD), 'never the password');
        const { refresh } = JSON.parse(stored) as { refresh: string };
        await page.reload();
        await page.locator('[data-state="ready"]').waitFor();

        await page.getByRole('button', { name: /^Account/ }).click();
        await page.getByRole('menuitem', { name: 'Sign out' }).click();
        await page.getByRole('heading', { name: 'Sign in' }).waitFor();
        assert.equal(await page.evaluate(() => sessionStorage.getItem('buckyos.session')), null);
        await shot('signed-out');
        // Signed out at verify-hub too: the session's refresh token is dead.
        await assert.rejects(createClient(verifyHubApi, { baseUrl: zone.gatewayUrl }).refresh({ refresh_token: refresh }), (e: KrpcError) => e.code === 'UNAUTHENTICATED');

        assertClean();
      } finally {
        await context.close();
      }
    });
  }

  it('serves the app with its CSP, caching and PWA files, and opens only kRPC to the LAN', async () => {
    const status = await zone.cli(['status', '--json']);
    assert.equal((JSON.parse(status.stdout) as { ui_url?: string }).ui_url, `${zone.uiUrl}/`, 'status says where the UI is');

    const index = await fetch(`${zone.uiUrl}/`);
    assert.equal(index.status, 200);
    const csp = index.headers.get('content-security-policy') ?? '';
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    assert.ok(nonce && (await index.text()).includes(`<meta name="csp-nonce" content="${nonce}">`), 'the page carries its response\'s nonce');
    assert.match(csp, /script-src 'self';/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(index.headers.get('cache-control'), 'no-cache');
    const again = /'nonce-([^']+)'/.exec((await fetch(`${zone.uiUrl}/`)).headers.get('content-security-policy') ?? '')?.[1];
    assert.notEqual(again, nonce, 'a fresh nonce per response');

    const deep = await fetch(`${zone.uiUrl}/some/page`);
    assert.equal(deep.status, 200, 'client-side routes answer with the app');
    assert.equal(deep.headers.get('content-type'), 'text/html; charset=utf-8');

    const manifest = await fetch(`${zone.uiUrl}/manifest.webmanifest`);
    assert.equal(manifest.headers.get('content-type'), 'application/manifest+json');
    const m = (await manifest.json()) as { display: string; icons: { src: string; sizes: string }[] };
    assert.equal(m.display, 'standalone');
    for (const icon of m.icons) assert.equal((await fetch(`${zone.uiUrl}${icon.src}`)).status, 200, icon.src);
    const sw = await fetch(`${zone.uiUrl}/sw.js`);
    assert.equal(sw.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(sw.headers.get('cache-control'), 'no-cache');

    const script = /<script type="module" src="([^"]+)"/.exec(await (await fetch(`${zone.uiUrl}/`)).text())?.[1];
    assert.ok(script?.startsWith('/assets/'));
    const js = await fetch(`${zone.uiUrl}${script}`, { headers: { 'accept-encoding': 'br' } });
    assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(js.headers.get('content-encoding'), 'br');
    assert.equal((await fetch(`${zone.uiUrl}/assets/nothing-here.js`)).status, 404);

    const post = (path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
      fetch(`${zone.uiUrl}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    const code = async (r: Response) => ((await r.json()) as { error?: { code: string } }).error?.code;
    assert.ok(((await (await post('/kapi/verify-hub', { method: 'login_nonce', params: {}, sys: [1] })).json()) as { result?: { nonce: string } }).result?.nonce, 'login methods answer without a token');
    assert.equal(await code(await post('/kapi/system-config', { method: 'get', params: { key: 'boot/config' }, sys: [1] })), 'UNAUTHENTICATED');
    assert.equal(await code(await post('/kapi/verify-hub', { method: 'device_enrol', params: {}, sys: [1] })), 'UNAUTHENTICATED');
    assert.equal(await code(await post('/kapi/verify-hub', { method: 'login_nonce', sys: [1] }, { 'content-type': 'text/plain' })), 'BAD_REQUEST');
    assert.equal(await code(await post('/kapi/verify-hub', { method: 'login_nonce', sys: [1] }, { 'content-type': 'application/json', origin: 'http://evil.example' })), 'PERMISSION_DENIED');
    assert.equal(await code(await fetch(`${zone.uiUrl}/kapi/verify-hub/health`)), 'NOT_FOUND');
    // The gateway's aliases for storage are not this listener's: these are only paths of the app.
    for (const path of ['/ndn/sha256:00', '/dav/home/']) assert.equal((await fetch(`${zone.uiUrl}${path}`)).headers.get('content-type'), 'text/html; charset=utf-8', path);
  });
});
