// Activation from the browser (docs/ui-activation.md), in Chromium against a real unactivated device, once at a
// desktop viewport and once at a phone viewport (a fresh device each): the device's description, a bad address,
// new recovery words made in the page, a wrong word typed back, an invalid zone name and a weak password (each
// explained beside its field), then activation, the page opening the zone's system UI by itself, and signing in.
// Every request the page made is kept: none carries the words or the owner key. axe on every step, no console
// errors, screenshots in test-artifacts/ui/. Then LAN discovery: two unactivated devices in network namespaces on one
// bridge, where one device's activation service lists the other (mDNS), until the other is activated.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, Request } from 'playwright-core';
import { launchChromium } from './support/browser.ts';
import { ARTIFACTS, KERNEL, OWNER, PASSWORD, VIEWPORTS, field, fieldMessage, openPage, signIn } from './support/ui.ts';
import { startZone, type TestZone } from './support/zone.ts';
import { MNEMONIC, type TestDevice, destroyDevice, startDevice } from './support/devices.ts';
import { type TestNet, netnsUnavailableReason, startNet } from './support/netns.ts';
import { until } from './support/wait.ts';
import type { DiscoveredDevice } from '../src/lib/api/activation.ts';
import { UI_OUT, ensureUiBuilt } from '../scripts/build-ui.ts';
import { ownerKeyFromMnemonic, ownerSeedFromMnemonic } from '../src/lib/identity/mnemonic.ts';
import { WORDLIST } from '../src/lib/identity/recovery-phrase.ts';
import { VAULT_STORAGE_PREFIX, type VaultRecord, openOwnerKey } from '../src/ui/activation/vault.ts';

const ZONE_NAME = 'home.example.com';

describe('activation in the browser', () => {
  let browser: Browser;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await ensureUiBuilt();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  it('keeps each page\'s initial JavaScript within 300 KB gzipped', () => {
    for (const page of ['activation.html', 'index.html']) {
      const html = readFileSync(join(UI_OUT, page), 'utf8');
      const scripts = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.js)"/g)].map((m) => m[1]!);
      assert.ok(scripts.length > 0, `${page} loads its scripts`);
      const gz = scripts.reduce((n, f) => n + gzipSync(readFileSync(join(UI_OUT, f)), { level: 9 }).length, 0);
      assert.ok(gz <= 300 * 1024, `${page}: ${(gz / 1024).toFixed(1)} KB of initial JavaScript gzipped`);
    }
  });

  for (const viewport of VIEWPORTS) {
    it(`activates a fresh device and opens its zone (${viewport.name})`, { timeout: 240_000 }, async () => {
      const zone: TestZone = await startZone();
      const ui = await openPage(browser, viewport, 'activation');
      const { page } = ui;
      const sent: { url: string; body: string }[] = [];
      page.on('request', (r: Request) => sent.push({ url: r.url(), body: r.postData() ?? '' }));
      try {
        // The device describes itself; a device listening on loopback does not look for others.
        await page.goto(zone.activationUrl);
        await page.getByRole('heading', { name: 'Set up your BuckyOS device', level: 1 }).waitFor();
        await page.getByText('This device does not look for others').waitFor();
        await page.getByRole('button', { name: 'Set up this device' }).waitFor();
        await ui.audit('device');
        await ui.shot('1-device');

        // An address that is not one is explained beside its field.
        await field(page, 'Open a device by its address').fill('not an address!');
        await page.getByRole('button', { name: 'Open', exact: true }).click();
        assert.match((await fieldMessage(page, 'Open a device by its address')).message, /This is not an address/);

        // The page speaks Chinese too, and switches back.
        await page.getByRole('button', { name: 'Language' }).click();
        await page.getByRole('menuitem', { name: '中文' }).click();
        await page.getByRole('heading', { name: '设置你的 BuckyOS 设备', level: 1 }).waitFor();
        assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
        await ui.audit('device-zh');
        await page.getByRole('button', { name: '语言' }).click();
        await page.getByRole('menuitem', { name: 'English' }).click();
        await page.getByRole('heading', { name: 'Set up your BuckyOS device', level: 1 }).waitFor();

        // Words typed from paper are checked beside their field.
        await page.getByRole('button', { name: 'Set up this device' }).click();
        await page.getByRole('heading', { name: 'Your recovery words', level: 1 }).waitFor();
        await page.getByLabel('I already have words').check();
        await field(page, 'Your 12 recovery words').fill('legal winner');
        await page.getByRole('button', { name: 'Continue' }).click();
        const typed = await fieldMessage(page, 'Your 12 recovery words');
        assert.equal(typed.invalid, 'true');
        assert.match(typed.message, /A recovery phrase has 12 words; this one has 2/);
        await ui.audit('words-restore');

        // New words, made in the page.
        await page.getByLabel('Create new words').check();
        const words = await page.locator('ol.bk-words .bk-w').allInnerTexts();
        assert.equal(words.length, 12);
        const mnemonic = words.join(' ');
        ownerSeedFromMnemonic(mnemonic); // a valid BIP-39 phrase, or this throws
        await ui.audit('words');
        await ui.shot('2-words');
        await page.getByRole('button', { name: 'Continue' }).click();
        await page.getByText('Confirm that you wrote the words down.').waitFor();
        await page.getByLabel('I have written down the 12 words in order').check();
        await page.getByRole('button', { name: 'Continue' }).click();

        // Three words asked back; a wrong one is named beside its field.
        await page.getByRole('heading', { name: 'Check that you wrote them down', level: 1 }).waitFor();
        const labels = await page.locator('label').filter({ hasText: /^Word \d+/ }).allInnerTexts();
        const positions = labels.map((l) => Number(/Word (\d+)/.exec(l)![1]));
        assert.equal(positions.length, 3);
        const wrongAt = positions[1]!;
        for (const n of positions) {
          const right = words[n - 1]!;
          await field(page, `Word ${n}`).fill(n === wrongAt ? WORDLIST.find((w) => w !== right)! : right);
        }
        await page.getByRole('button', { name: 'Continue' }).click();
        const wrong = await fieldMessage(page, `Word ${wrongAt}`);
        assert.equal(wrong.invalid, 'true');
        assert.match(wrong.message, new RegExp(`This is not word ${wrongAt} of your recovery words`));
        await ui.audit('confirm-wrong');
        await ui.shot('3-confirm-wrong');
        await field(page, `Word ${wrongAt}`).fill(words[wrongAt - 1]!);
        await page.getByRole('button', { name: 'Continue' }).click();

        // The zone: an invalid name and a weak password, each explained beside its field, nothing sent.
        await page.getByRole('heading', { name: 'Name your zone', level: 1 }).waitFor();
        assert.notEqual(await field(page, 'Device name').inputValue(), '', 'the device name is prefilled');
        await field(page, 'Zone name').fill('Not A Zone');
        await field(page, 'Your user name').fill(OWNER);
        await field(page, 'Administrator password').fill('short1');
        await field(page, 'Password again').fill('short1');
        const before = sent.length;
        await page.getByRole('button', { name: 'Activate' }).click();
        const zoneMsg = await fieldMessage(page, 'Zone name');
        assert.equal(zoneMsg.invalid, 'true');
        assert.match(zoneMsg.message, /A zone name is a DNS name/);
        const pwMsg = await fieldMessage(page, 'Administrator password');
        assert.equal(pwMsg.invalid, 'true');
        assert.match(pwMsg.message, /This password is too short/);
        assert.equal(sent.slice(before).filter((r) => r.url.includes('/kapi/activation') && /"(prepare|commit)"/.test(r.body)).length, 0, 'nothing was sent');
        await ui.audit('zone-errors');
        await ui.shot('4-zone-errors');

        // Activation: the page opens the zone's system UI itself once it answers.
        await field(page, 'Zone name').fill(ZONE_NAME);
        await field(page, 'Administrator password').fill(PASSWORD);
        await field(page, 'Password again').fill(PASSWORD);
        await page.getByRole('button', { name: 'Activate' }).click();
        await page.getByRole('heading', { name: `Activating ${ZONE_NAME}` }).waitFor();
        await ui.shot('5-progress', false);
        await page.waitForURL(`${zone.uiUrl}/`, { timeout: 180_000 });
        await page.getByRole('heading', { name: 'Sign in' }).waitFor();

        // The zone is the one signed in the browser, owned by the key of the words shown.
        const status = await zone.waitFor((s) => s.state === 'running' && KERNEL.every((n) => s.children.some((c) => c.name === n && c.healthy)), 90_000, 'every kernel service healthy');
        assert.equal(status.zone, ZONE_NAME);
        await zone.waitRoutable(KERNEL);
        await signIn(page, zone.uiUrl);
        await ui.audit('signed-in');
        await ui.shot('6-signed-in');

        // No request carried the words or the owner key; the commit carried its public half.
        const secret = Buffer.from(ownerSeedFromMnemonic(mnemonic));
        const forbidden = [mnemonic, secret.toString('base64url'), secret.toString('base64'), secret.toString('hex')];
        const commit = sent.find((r) => r.body.includes('"commit"'));
        assert.ok(commit, 'the page sent a commit');
        assert.ok(commit.body.includes(ownerKeyFromMnemonic(mnemonic).publicKeyB64), 'the commit names the owner key of the words shown');
        for (const r of sent) {
          for (const f of forbidden) assert.ok(!r.body.includes(f) && !r.url.includes(f), `a request to ${r.url} carries the owner's secret`);
          // Three words of the phrase in a row would be a leak too, whatever separates them.
          for (let i = 0; i + 3 <= words.length; i++) {
            assert.ok(!new RegExp(words.slice(i, i + 3).join('\\W{0,3}')).test(r.body), `a request to ${r.url} carries the recovery words`);
          }
        }
        // The owner key stayed in the browser: sealed in the activation page's localStorage, opening with the admin
        // password to the very secret of the words, and not readable without it.
        const storage = await ui.context.storageState();
        const origin = storage.origins.find((o) => o.origin === zone.activationUrl);
        const item = origin?.localStorage.find((e) => e.name === `${VAULT_STORAGE_PREFIX}${ZONE_NAME}`);
        assert.ok(item, 'the sealed owner key is in the activation origin\'s localStorage');
        for (const f of forbidden) assert.ok(!item.value.includes(f), 'the stored record holds no plaintext secret');
        const record = JSON.parse(item.value) as VaultRecord;
        assert.equal(record.public_key, ownerKeyFromMnemonic(mnemonic).publicKeyB64);
        assert.deepEqual(Buffer.from(await openOwnerKey(record, PASSWORD)), secret);
        await assert.rejects(openOwnerKey(record, `${PASSWORD}x`));
        ui.assertClean();
      } finally {
        await ui.context.close();
        await zone.destroy();
      }
    });
  }
});

describe('LAN discovery of unactivated devices (mDNS)', { skip: netnsUnavailableReason() ?? false, timeout: 300_000 }, () => {
  let net: TestNet;
  const devices: TestDevice[] = [];
  before(async () => {
    // `host`: the test process (and so Chromium) is on the LAN too, as the owner's laptop would be.
    net = await startNet({ devices: [{ name: 'ood1' }, { name: 'node2' }], host: 'home' });
    await ensureUiBuilt();
    netBrowser = await launchChromium();
  });
  after(async () => {
    await netBrowser?.close();
    for (const d of devices) await destroyDevice(d);
    await net?.destroy();
  });
  let netBrowser: Browser;

  /** What `discover` answers on `device`, asked from inside its namespace as the page served there would. */
  async function discover(device: string): Promise<{ searching: boolean; devices: DiscoveredDevice[] }> {
    const out = await net.exec(device, 'curl', ['-sS', '-X', 'POST', '-H', 'content-type: application/json', '--data', '{"method":"discover","params":{},"sys":[1]}', 'http://127.0.0.1:3182/kapi/activation']);
    return (JSON.parse(out) as { result: { searching: boolean; devices: DiscoveredDevice[] } }).result;
  }

  it('lists the other new device with its activation page, and drops it once it is activated', async () => {
    const a = await startDevice(net, 'ood1');
    devices.push(a);
    const b = await startDevice(net, 'node2');
    devices.push(b);
    const seen = await until('ood1 lists node2', async () => {
      const r = await discover('ood1');
      assert.equal(r.searching, true);
      return r.devices.find((d) => d.address === b.ip);
    }, 30_000);
    assert.equal(seen.port, 3182);
    assert.equal(seen.url, `http://${b.ip}:3182/`);
    assert.ok(!(await discover('ood1')).devices.some((d) => d.address === a.ip), 'a device does not list itself');
    // The page a device lists is the other device's activation page.
    const page = await net.exec('ood1', 'curl', ['-sS', seen.url]);
    assert.match(page, /<title>Activate BuckyOS<\/title>/);
    await until('node2 lists ood1', async () => ((await discover('node2')).devices.some((d) => d.address === a.ip) ? true : undefined), 30_000);

    // ood1's activation page lists node2, and its link opens node2's own activation page, where the owner activates
    // node2 with words they already have. Plain HTTP on a LAN address is not a secure context (no WebCrypto subtle):
    // the signing and the sealing must work without it.
    const ui = await openPage(netBrowser, VIEWPORTS[1]!, 'activation-lan');
    const sent: string[] = [];
    ui.page.on('request', (r: Request) => sent.push(r.postData() ?? ''));
    try {
      const { page } = ui;
      await page.goto(`http://${a.ip}:3182/`);
      const link = page.locator(`a[href="${seen.url}"]`);
      await link.waitFor();
      await ui.audit('lan-list');
      await ui.shot('1-list');
      await link.click();
      await page.waitForURL(seen.url);
      await page.getByRole('heading', { name: 'Set up your BuckyOS device', level: 1 }).waitFor();
      assert.equal(await page.evaluate(() => window.isSecureContext), false);
      await page.getByRole('button', { name: 'Set up this device' }).click();
      await page.getByLabel('I already have words').check();
      await field(page, 'Your 12 recovery words').fill(MNEMONIC);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.getByRole('heading', { name: 'Name your zone', level: 1 }).waitFor();
      await field(page, 'Zone name').fill('node2.example.com');
      await field(page, 'Your user name').fill(OWNER);
      await field(page, 'Administrator password').fill(PASSWORD);
      await field(page, 'Password again').fill(PASSWORD);
      await page.getByRole('button', { name: 'Activate' }).click();
      await page.waitForURL(`http://${b.ip}:3190/`, { timeout: 180_000 });
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await ui.shot('2-zone-opened');
      ui.assertClean();
      const status = await b.waitFor((st) => st.state === 'running', 90_000, 'node2 running');
      assert.equal(status.zone, 'node2.example.com');
      assert.ok(sent.some((body) => body.includes(ownerKeyFromMnemonic(MNEMONIC).publicKeyB64)), 'the commit names the owner key of the words typed');
      assert.ok(!sent.some((body) => body.includes('legal winner thank')), 'the words were not sent');
    } finally {
      await ui.context.close();
    }

    // Activated, node2 said goodbye and is no longer listed.
    await until('ood1 drops the activated node2', async () => ((await discover('ood1')).devices.some((d) => d.address === b.ip) ? undefined : true), 30_000);
  });
});
