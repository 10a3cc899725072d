// The logs viewer and the settings page in Chromium against a real zone, at a desktop and a phone viewport: searching
// the zone's logs (words, service, level, time, a trace), bad search input beside its field, older pages, following
// new entries (appended here with a service token) with pause and resume, an entry's details, the audit log and its
// tamper check; then the zone's display name and time zone (refused input changes nothing in system-config, accepted
// input is stored and used for the times on the logs page), the language kept with the account, and what a
// non-admin sees. axe on every state, no console errors, screenshots in test-artifacts/ui/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import { OWNER, PASSWORD, VIEWPORTS, ZONE_NAME, field, fieldMessage, openFromNav, openPage, signIn, startUiZone, type UiZone } from './support/ui.ts';
import { klogApi } from '../src/lib/api/klog.ts';
import { systemConfigApi } from '../src/lib/api/system-config.ts';
import { ZONE_SETTINGS_KEY, userUiSettingsKey } from '../src/lib/config/zone-settings.ts';
import { createClient } from '../src/lib/krpc/index.ts';
import { until } from './support/wait.ts';

const BOB = 'bob';
const BOB_PASSWORD = 'Another-horse-staple-7';

type Klog = ReturnType<typeof createClient<typeof klogApi.methods>>;
type Config = ReturnType<typeof createClient<typeof systemConfigApi.methods>>;

/** The results list of the logs page, and one entry of it by its message. */
const results = (page: Page) => page.getByRole('list', { name: 'Entries' });
const entry = (page: Page, msg: string) => results(page).getByRole('listitem').filter({ hasText: msg });

/** "HH:mm:ss" of `ts` as seen in `timeZone`: what the page must show for it. */
const clock = (ts: number, timeZone: string) =>
  new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZone }).format(ts);

/** Nothing on the page is wider than the viewport: entries stack instead of scrolling sideways. */
async function assertNoSideScroll(page: Page, step: string): Promise<void> {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width, `${step}: page is ${scroll}px wide in a ${width}px viewport`);
}

/** On a phone the filters beyond the words are folded away behind "More filters". */
async function openFilters(page: Page): Promise<void> {
  const more = page.getByRole('button', { name: /^More filters/ });
  if ((await more.count()) > 0 && (await more.getAttribute('aria-expanded')) === 'false') await more.click();
}

async function search(page: Page, fields: { words?: string; service?: string; level?: string }): Promise<void> {
  if (fields.words !== undefined) await field(page, 'Words').fill(fields.words);
  if (fields.service !== undefined || fields.level !== undefined) await openFilters(page);
  if (fields.service !== undefined) await field(page, 'Service').fill(fields.service);
  if (fields.level !== undefined) await page.getByLabel('Level').selectOption({ value: fields.level });
  await page.getByRole('button', { name: 'Search', exact: true }).click();
}

describe('system UI: logs and settings in Chromium against a real zone', { timeout: 420_000 }, () => {
  let ui: UiZone;
  let klog: Klog;
  let config: Config;
  let node: string;

  const append = (records: { msg: string; service?: string; level?: 'info' | 'warn' | 'error'; ts?: number; trace?: string; fields?: Record<string, unknown> }[]) =>
    klog.append({ records: records.map((r) => ({ ts: r.ts ?? Date.now(), level: r.level ?? 'info', service: r.service ?? 'ui-test', node, msg: r.msg, trace: r.trace, fields: r.fields })) });

  before(async () => {
    ui = await startUiZone();
    node = ui.node;
    const token = await ui.zone.localToken();
    klog = createClient(klogApi, { baseUrl: ui.zone.gatewayUrl, token });
    config = createClient(systemConfigApi, { baseUrl: ui.zone.gatewayUrl, token });
    const add = await ui.zone.cli(['user', 'add', BOB, '--role', 'user'], { BUCKYOS_NEW_PASSWORD: BOB_PASSWORD });
    assert.equal(add.code, 0, add.stderr);
  });
  after(async () => {
    await ui?.close();
  });

  for (const vp of VIEWPORTS) {
    it(`searches, follows and expands log entries and checks the audit log at a ${vp.name} viewport`, async () => {
      const { context, page, shot, audit, assertClean } = await openPage(ui.browser, vp, 'logs');
      const tag = `${vp.name}${randomBytes(3).toString('hex')}`;
      const trace = randomBytes(8).toString('hex');
      try {
        await signIn(page, ui.zone.uiUrl);
        await openFromNav(page, 'Logs');
        // The zone's own entries (shipped by node_daemon) fill the first page.
        await results(page).getByRole('listitem').first().waitFor({ timeout: 30_000 });
        await shot('first-page');
        await audit('logs first page');
        await assertNoSideScroll(page, 'first page');

        // Words, service and level together find exactly the entries appended here.
        await append([
          { msg: `needle ${tag} disk quota exceeded`, level: 'warn', trace, fields: { volume: 'main', used_bytes: 123 } },
          { msg: `needle ${tag} routine check`, level: 'info', trace },
          { msg: `needle ${tag} other service`, service: 'ui-other', level: 'error' },
        ]);
        await search(page, { words: `needle ${tag}`, service: 'ui-test', level: 'warn' });
        await entry(page, `needle ${tag} disk quota exceeded`).waitFor();
        assert.equal(await results(page).getByRole('listitem').count(), 1, 'the info entry and the other service are filtered out');
        await shot('search');

        // An entry opens in place: its id, device, trace id and fields.
        const found = entry(page, `needle ${tag} disk quota exceeded`);
        await found.getByRole('button', { name: /disk quota exceeded/ }).click();
        assert.equal(await found.getByRole('button', { name: /disk quota exceeded/ }).getAttribute('aria-expanded'), 'true');
        await found.getByText(trace, { exact: true }).waitFor();
        await found.getByText(node, { exact: true }).waitFor();
        assert.match(await found.locator('pre').innerText(), /"used_bytes": 123/);
        await shot('entry-open');
        await audit('entry open');
        await assertNoSideScroll(page, 'entry open');

        // "This request's entries": everything with that trace id, whatever its level or the words.
        await found.getByRole('button', { name: 'Show this request’s entries' }).click();
        await page.getByText(`Showing one request only (trace ${trace}).`).waitFor();
        await entry(page, `needle ${tag} routine check`).waitFor();
        assert.equal(await results(page).getByRole('listitem').count(), 2);
        assert.equal(await page.getByRole('button', { name: 'Follow', exact: true }).isDisabled(), true, 'a trace cannot be followed');
        await page.getByRole('button', { name: 'Show all entries', exact: true }).click();
        await page.getByText(/^Showing one request only/).waitFor({ state: 'detached' });

        // Bad input is caught beside its field, and nothing is searched.
        await field(page, 'Words').fill('x'.repeat(257));
        await page.getByRole('button', { name: 'Search', exact: true }).click();
        await page.getByText('At most 256 characters.').waitFor();
        const words = await fieldMessage(page, 'Words');
        assert.equal(words.invalid, 'true');
        assert.match(words.message, /At most 256 characters\./);
        await field(page, 'Words').fill('');
        await openFilters(page);
        await page.getByLabel('Time').selectOption('custom');
        await field(page, 'From').fill('2026-11-24T10:00');
        await field(page, 'To').fill('2026-11-24T09:00');
        await page.getByRole('button', { name: 'Search', exact: true }).click();
        await page.getByText('The end is before the start.').waitFor();
        assert.equal((await fieldMessage(page, 'To')).invalid, 'true');
        await shot('search-errors');
        await audit('search errors');
        await page.getByLabel('Time').selectOption('1h');
        if (vp.options.isMobile) {
          // Folded again, the button still counts what is set.
          await page.getByRole('button', { name: 'More filters (1 set)' }).click();
          assert.equal(await page.getByLabel('Time').isVisible(), false);
          await shot('filters-folded', false);
          await audit('filters folded');
        }

        // Follow: new matching entries appear at the top; paused, they wait; resumed, they show.
        await search(page, { words: '', service: 'ui-test', level: '' });
        await entry(page, `needle ${tag} routine check`).waitFor();
        await page.getByRole('button', { name: 'Follow', exact: true }).click();
        await page.getByText('Following: new entries appear at the top as they arrive.').waitFor();
        await append([{ msg: `followed ${tag} one` }, { msg: `followed ${tag} elsewhere`, service: 'ui-other' }]);
        await entry(page, `followed ${tag} one`).waitFor({ timeout: 30_000 });
        assert.match(await results(page).getByRole('listitem').first().innerText(), new RegExp(`followed ${tag} one`), 'newest first');
        assert.equal(await entry(page, `followed ${tag} elsewhere`).count(), 0, 'the search\'s filters apply while following');
        await shot('following');
        await audit('following');

        await page.getByRole('button', { name: 'Pause', exact: true }).click();
        await append([{ msg: `followed ${tag} two` }]);
        await page.getByText('Paused. New entries waiting: 1.').waitFor({ timeout: 30_000 });
        assert.equal(await entry(page, `followed ${tag} two`).count(), 0, 'not shown while paused');
        await shot('paused');
        await page.getByRole('button', { name: 'Resume', exact: true }).click();
        await entry(page, `followed ${tag} two`).waitFor();
        await page.getByRole('button', { name: 'Stop following', exact: true }).click();
        await page.getByRole('button', { name: 'Follow', exact: true }).waitFor();

        // Older pages: 60 entries show as 50, then all 60.
        const bulk = `bulk-${tag}`;
        await append(Array.from({ length: 60 }, (_, i) => ({ msg: `entry ${i}`, service: bulk })));
        await search(page, { service: bulk });
        await page.getByText('50 shown, newest first').waitFor();
        await page.getByRole('button', { name: 'Load older entries', exact: true }).click();
        await page.getByText('60 shown, newest first').waitFor();
        await page.getByText('No older entries.').waitFor();
        assert.match(await results(page).getByRole('listitem').last().innerText(), /entry 0$/m);

        // The audit log: the tamper check's verdict, and this sign-in among the events.
        await page.getByRole('tab', { name: 'Audit log' }).click();
        await page.getByText(/^All [\d,]+ events follow one another, unaltered\.$/).waitFor();
        await page.getByText('Intact', { exact: true }).waitFor();
        const verify = await klog.audit_verify({});
        assert.ok(verify.ok);
        await page.getByText(`Latest hash: ${verify.head_hash}`, { exact: false }).waitFor();
        await page.getByLabel('Kind of event').selectOption('login');
        await field(page, 'Who').fill(OWNER);
        await page.getByRole('button', { name: 'Search', exact: true }).click();
        const events = page.getByRole('list', { name: 'Audit log' }).getByRole('listitem');
        // The list shows the earlier, unfiltered answer until the search's arrives: wait until every event fits it.
        const fits = new RegExp(`sign-in[\\s\\S]*${OWNER}`, 'i');
        await until('the audit list shows only the owner\'s sign-ins', async () => {
          const texts = await events.allInnerTexts();
          return texts.length > 0 && texts.every((t) => fits.test(t)) ? true : undefined;
        }, 15_000);
        await events.first().getByRole('button').click();
        await events.first().getByText('Hash', { exact: true }).waitFor();
        await events.first().getByText('verify-hub', { exact: true }).waitFor();
        await shot('audit');
        await audit('audit log');
        await assertNoSideScroll(page, 'audit log');

        assertClean();
      } finally {
        await context.close();
      }
    });

    it(`changes the zone's settings and the language, refusing bad input, at a ${vp.name} viewport`, async () => {
      const { context, page, errors, shot, audit, assertClean } = await openPage(ui.browser, vp, 'settings');
      const timeZone = vp.name === 'phone' ? 'Europe/Paris' : 'Asia/Shanghai';
      const displayName = `Alice’s home (${vp.name})`;
      try {
        await signIn(page, ui.zone.uiUrl);
        await openFromNav(page, 'Settings');
        await field(page, 'Display name').waitFor();
        assert.equal(await field(page, 'Zone address').inputValue(), ZONE_NAME);
        assert.notEqual(await field(page, 'Zone address').getAttribute('readonly'), null, 'the DNS name cannot be edited');
        await shot('settings');
        await audit('settings');
        await assertNoSideScroll(page, 'settings');

        // Refused input: messages beside the fields, and system-config unchanged.
        const before = await config.get({ key: ZONE_SETTINGS_KEY });
        const save = page.getByRole('button', { name: 'Save zone settings' });
        await field(page, 'Display name').fill('   ');
        await field(page, 'Time zone').fill('Mars/Olympus');
        await save.click();
        await page.getByText('Enter a display name.').waitFor();
        assert.equal((await fieldMessage(page, 'Display name')).invalid, 'true');
        assert.match((await fieldMessage(page, 'Time zone')).message, /“Mars\/Olympus” is not a time zone\./);
        assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'display_name', 'focus on the first field in error');
        await shot('settings-errors');
        await audit('settings errors');
        await field(page, 'Display name').fill('x'.repeat(65));
        await field(page, 'Time zone').fill('');
        await save.click();
        await page.getByText('A display name is at most 64 characters.').waitFor();
        assert.match((await fieldMessage(page, 'Time zone')).message, /Enter a time zone\./);
        const unchanged = await config.get({ key: ZONE_SETTINGS_KEY });
        assert.deepEqual([unchanged.value, unchanged.revision], [before.value, before.revision], 'a refused save changed nothing');

        // Accepted: stored in system-config, audited, and used for times.
        await field(page, 'Display name').fill(`  ${displayName} `);
        await field(page, 'Time zone').fill(timeZone);
        await save.click();
        await page.getByText('Zone settings saved.').waitFor();
        const stored = await config.get({ key: ZONE_SETTINGS_KEY });
        assert.deepEqual(JSON.parse(stored.value!), { display_name: displayName, time_zone: timeZone });
        await page.getByText(new RegExp(`^Times are shown in ${timeZone.replace('/', '\\/')}\\.`)).waitFor();
        // The header names the zone by its new display name.
        await page.getByTestId('zone-name').filter({ hasText: displayName }).waitFor();
        await until('the change is audited', async () => {
          const changes = await klog.audit_query({ kind: 'config_change', limit: 5 });
          return changes.events.some((e) => e.actor === OWNER && e.target === `obj://config/${ZONE_SETTINGS_KEY}` && e.detail.revision === stored.revision) || undefined;
        }, 15_000);
        await shot('settings-saved');
        await audit('settings saved');

        // Two admins at once: a save over a change made since the page read the record is refused and shows the
        // other version; nothing of it is written.
        const elsewhere = JSON.stringify({ display_name: 'Changed elsewhere', time_zone: timeZone });
        const theirs = await config.set({ key: ZONE_SETTINGS_KEY, value: elsewhere });
        await field(page, 'Display name').fill('Mine');
        await save.click();
        await page.getByText('Someone else changed the zone’s settings while you were editing.', { exact: false }).waitFor();
        assert.equal(await field(page, 'Display name').inputValue(), 'Changed elsewhere');
        const kept = await config.get({ key: ZONE_SETTINGS_KEY });
        assert.deepEqual([kept.value, kept.revision], [elsewhere, theirs.revision]);
        // The browser reports the 409 that carried CONFLICT as a failed load; the page handled it.
        const conflict = errors.findIndex((e) => e.includes('status of 409') && e.includes('/kapi/system-config'));
        assert.notEqual(conflict, -1, `the refused save's answer: ${errors.join('; ')}`);
        errors.splice(conflict, 1);
        await field(page, 'Display name').fill(displayName);
        await save.click();
        await page.getByText('Zone settings saved.').waitFor();
        assert.equal(JSON.parse((await config.get({ key: ZONE_SETTINGS_KEY })).value!).display_name, displayName);

        // The logs page shows times in the zone's time zone, whatever the browser's.
        // Recent enough to outlive klog's retention, to the second as the page shows it.
        const ts = Math.floor(Date.now() / 1000) * 1000 - 3 * 3600_000;
        const marker = `timed-${vp.name}-${randomBytes(3).toString('hex')}`;
        await append([{ msg: marker, ts }]);
        await openFromNav(page, 'Logs');
        await search(page, { words: marker });
        await entry(page, marker).getByText(clock(ts, timeZone), { exact: false }).waitFor();
        await openFromNav(page, 'Settings');

        // The language: switched at once, kept with the account.
        await page.getByLabel('Language of these pages').selectOption('zh');
        await page.getByRole('heading', { name: '设置', level: 1 }).waitFor();
        await page.getByText('随你的账户保存：在任何地方登录都适用。').waitFor();
        await shot('settings-zh');
        await audit('settings in Chinese');
        await until('the language is kept with the account', async () => ((await config.get({ key: userUiSettingsKey(OWNER) })).value === '{"lang":"zh"}' ? true : undefined), 10_000);
        await page.getByLabel('页面语言').selectOption('en');
        await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
        await until('English is kept again', async () => ((await config.get({ key: userUiSettingsKey(OWNER) })).value === '{"lang":"en"}' ? true : undefined), 10_000);

        assertClean();
      } finally {
        await context.close();
      }
    });

    it(`shows a non-admin the settings read-only except their language, kept with their account, at a ${vp.name} viewport`, async () => {
      const { context, page, shot, audit, assertClean } = await openPage(ui.browser, vp, 'settings-user');
      try {
        await signIn(page, ui.zone.uiUrl, BOB, BOB_PASSWORD);
        const burger = page.getByRole('button', { name: 'Menu' });
        if (await burger.isVisible()) await burger.click();
        const nav = page.getByRole('navigation', { name: 'Main navigation' });
        await nav.getByRole('link', { name: 'Settings' }).waitFor();
        assert.equal(await nav.getByRole('link', { name: 'Logs' }).count(), 0, 'the logs are for admins');
        if (await burger.isVisible()) await burger.click();
        await openFromNav(page, 'Settings');
        await page.getByText('Only administrators can change the zone’s settings.').waitFor();
        const stored = JSON.parse((await config.get({ key: ZONE_SETTINGS_KEY })).value!) as { display_name: string; time_zone: string };
        assert.equal(await field(page, 'Display name').inputValue(), stored.display_name);
        assert.equal(await field(page, 'Time zone').inputValue(), stored.time_zone);
        for (const label of ['Display name', 'Time zone']) assert.notEqual(await field(page, label).getAttribute('readonly'), null, `${label} is read-only`);
        assert.equal(await page.getByRole('button', { name: 'Save zone settings' }).count(), 0);
        await shot('read-only');
        await audit('settings read-only');
        await assertNoSideScroll(page, 'settings read-only');

        await page.getByLabel('Language of these pages').selectOption('zh');
        await page.getByRole('heading', { name: '设置', level: 1 }).waitFor();
        const key = userUiSettingsKey(BOB);
        await until('the language is kept with the account', async () => ((await config.get({ key })).value === '{"lang":"zh"}' ? true : undefined), 10_000);

        // Another browser (nothing kept locally) signs in in English and switches to the account's language.
        const other = await ui.browser.newContext(vp.options);
        try {
          const fresh = await other.newPage();
          await fresh.goto(ui.zone.uiUrl);
          await field(fresh, 'User name').fill(BOB);
          await field(fresh, 'Password').fill(BOB_PASSWORD);
          await fresh.getByRole('button', { name: 'Sign in' }).click();
          await fresh.getByRole('heading', { name: '仪表盘', level: 1 }).waitFor();
        } finally {
          await other.close();
        }
        await page.getByLabel('页面语言').selectOption('en');
        await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
        await until('English is kept again', async () => ((await config.get({ key })).value === '{"lang":"en"}' ? true : undefined), 10_000);
        assertClean();
      } finally {
        await context.close();
      }
    });
  }
});
