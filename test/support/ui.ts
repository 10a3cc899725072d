// What every system-UI test in Chromium needs: an activated single-device zone with every kernel service healthy,
// the browser, the two viewports, and per page: console-error collection, screenshots into test-artifacts/ui/ and
// axe-core audits, plus signing in through the login form and reading a field's error message.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, BrowserContextOptions, Locator, Page } from 'playwright-core';
import { REPO, startZone, type TestZone, type ZoneOptions } from './zone.ts';
import { axeViolations, launchChromium } from './browser.ts';
import { activateDevice } from '../../src/lib/identity/activation-client.ts';
import { generateMnemonic } from '../../src/lib/identity/mnemonic.ts';
import type { NodeStatusFile } from '../../src/kernel/node-daemon/main.ts';
import { ensureUiBuilt } from '../../scripts/build-ui.ts';

export const OWNER = 'alice';
export const PASSWORD = 'Correct-horse-battery-9';
export const ZONE_NAME = 'alice.example.com';
export const KERNEL = ['system-config', 'verify-hub', 'klog', 'scheduler', 'gateway'];
export const ARTIFACTS = join(REPO, 'test-artifacts', 'ui');

export const VIEWPORTS: { name: string; options: BrowserContextOptions }[] = [
  { name: 'desktop', options: { viewport: { width: 1280, height: 800 }, reducedMotion: 'reduce' } },
  { name: 'phone', options: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true, colorScheme: 'dark', reducedMotion: 'reduce' } },
];

const allHealthy = (s: NodeStatusFile) => s.state === 'running' && KERNEL.every((n) => s.children.some((c) => c.name === n && c.healthy));

export interface UiZone {
  zone: TestZone;
  browser: Browser;
  /** This device's name. */
  node: string;
  close(): Promise<void>;
}

/** Builds the UI if stale, starts and activates a zone (owner OWNER, password PASSWORD), waits for every kernel
 * service, and launches Chromium. */
export async function startUiZone(opts: ZoneOptions = {}): Promise<UiZone> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await ensureUiBuilt();
  const zone = await startZone(opts);
  let browser: Browser | undefined;
  try {
    await activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: ZONE_NAME, owner: OWNER, password: PASSWORD });
    const node = (await zone.waitFor(allHealthy, 90_000, 'every kernel service healthy')).node!;
    await zone.waitRoutable(KERNEL);
    browser = await launchChromium();
    const b = browser;
    return {
      zone,
      browser: b,
      node,
      async close() {
        await b.close();
        await zone.destroy();
      },
    };
  } catch (e) {
    await browser?.close();
    await zone.destroy();
    throw e;
  }
}

export interface UiPage {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions so far; a test removes the ones it caused on purpose. */
  errors: string[];
  /** Serious or critical axe violations found by audit() so far. */
  a11y: string[];
  shot(step: string, fullPage?: boolean): Promise<void>;
  audit(step: string): Promise<void>;
  /** Asserts that no audit found anything and that the console stayed clean. */
  assertClean(): void;
}

/** A fresh browser context at `viewport`; screenshots are named `<prefix>-<viewport>-<step>.png`. */
export async function openPage(browser: Browser, viewport: (typeof VIEWPORTS)[number], prefix: string): Promise<UiPage> {
  const context = await browser.newContext(viewport.options);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  const a11y: string[] = [];
  return {
    context,
    page,
    errors,
    a11y,
    async shot(step, fullPage = true) {
      await page.screenshot({ path: join(ARTIFACTS, `${prefix}-${viewport.name}-${step}.png`), fullPage });
    },
    async audit(step) {
      a11y.push(...(await axeViolations(page)).map((v) => `${step}: ${v}`));
    },
    assertClean() {
      assert.deepEqual(a11y, [], 'no serious or critical accessibility violations');
      assert.deepEqual(errors, [], 'no console errors');
    },
  };
}

/** The input labelled `label` (its label may also carry the required mark): "Word 1" is not "Word 10". */
export const field = (page: Page, label: string): Locator => page.getByLabel(new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w])`));

/** Whether the input is marked invalid, and the text its aria-describedby points at (Mantine's error element). */
export async function fieldMessage(page: Page, label: string): Promise<{ invalid: string | null; message: string }> {
  const input = field(page, label);
  const invalid = await input.getAttribute('aria-invalid');
  const ids = (await input.getAttribute('aria-describedby')) ?? '';
  const texts = await Promise.all(ids.split(/\s+/).filter(Boolean).map((id) => page.locator(`[id="${id}"]`).innerText()));
  return { invalid, message: texts.join(' ') };
}

/** Signs in through the login form at `uiUrl` and waits for the dashboard. */
export async function signIn(page: Page, uiUrl: string, user = OWNER, password = PASSWORD): Promise<void> {
  await page.goto(uiUrl);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await field(page, 'User name').fill(user);
  await field(page, 'Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
}

/** Opens a page from the main navigation (through the burger on a phone). */
export async function openFromNav(page: Page, label: string): Promise<void> {
  const burger = page.getByRole('button', { name: 'Menu' });
  if (await burger.isVisible()) await burger.click();
  await page.getByRole('navigation', { name: 'Main navigation' }).getByRole('link', { name: label }).click();
  await page.getByRole('heading', { name: label, level: 1 }).waitFor();
}
