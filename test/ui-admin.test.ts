// The system UI's Devices and Users pages in Chromium against a real zone, at a desktop and a phone viewport: every
// form's bad input (empty, too long, invalid name, weak password, name taken, reserved name, wrong sudo password) is
// said beside its field and saves nothing; users are added, given another role, a new password, disabled and enabled
// and deleted; a join code is created and shown with its QR code and countdown; a device is removed. The sudo prompt
// asks once and its token is reused. After each action the kernel's own state is read back through kRPC with root's
// token. axe on every state, no console errors except the HTTP errors of refusals made on purpose, screenshots in
// test-artifacts/ui/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { OWNER, PASSWORD, VIEWPORTS, ZONE_NAME, field, openFromNav, openPage, signIn, startUiZone, type UiZone } from './support/ui.ts';
import { systemConfigApi } from '../src/lib/api/system-config.ts';
import { verifyHubApi } from '../src/lib/api/verify-hub.ts';
import { type Client, KrpcError, createClient } from '../src/lib/krpc/index.ts';
import { type DeviceDoc, openEnrolOffer, signDocument } from '../src/lib/identity/documents.ts';
import { didDev, generateKeyPair, loadKeyFile } from '../src/lib/identity/keys.ts';
import { qrPath } from '../src/ui/pages/devices/model.ts';

type Hub = Client<typeof verifyHubApi.methods>;

/** The browser logs every HTTP error answer, even one the page handled; drop the one a refusal made on purpose. */
async function expectHttpError(errors: string[], status: number): Promise<void> {
  for (let i = 0; i < 40; i++) {
    const at = errors.findIndex((e) => e.includes(`status of ${status}`) && e.includes('/kapi/verify-hub'));
    if (at !== -1) {
      errors.splice(at, 1);
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`expected the browser to log an HTTP ${status} from verify-hub; it logged: ${errors.join('; ')}`);
}

/** The input is marked invalid and its described-by text (error, then any hint) holds `text`. */
async function saysBeside(page: Page, label: string | ReturnType<Page['getByLabel']>, text: string): Promise<void> {
  const input = typeof label === 'string' ? field(page, label) : label;
  await input.page().getByText(text, { exact: true }).first().waitFor();
  assert.equal(await input.getAttribute('aria-invalid'), 'true', `${String(label)} is marked invalid`);
  const ids = ((await input.getAttribute('aria-describedby')) ?? '').split(/\s+/).filter(Boolean);
  const described = (await Promise.all(ids.map((id) => page.locator(`[id="${id}"]`).innerText()))).join(' ');
  assert.ok(described.includes(text), `"${text}" is beside the field; it says: ${described}`);
}

async function login(gatewayUrl: string, username: string, password: string) {
  const anon = createClient(verifyHubApi, { baseUrl: gatewayUrl });
  const { nonce } = await anon.login_nonce({});
  return anon.login_password({ username, password, nonce, app_id: 'buckyos-cli' });
}

/** The new user's password (the list of its rules is labelled "Password rules" too). */
const pwField = (page: Page) => page.getByRole('region', { name: 'Add a user' }).getByRole('textbox', { name: 'Password', exact: true });

const sudoDialog = (page: Page) => page.getByRole('dialog', { name: 'Confirm it is you' });

async function answerSudo(page: Page, password: string): Promise<void> {
  const d = sudoDialog(page);
  await d.waitFor();
  await d.getByLabel(/^Your password/).fill(password);
  await d.getByRole('button', { name: 'Confirm' }).click();
}

describe('system UI: devices and users pages against a real zone', { timeout: 400_000 }, () => {
  let ui: UiZone;
  let hub: Hub;
  let config: Client<typeof systemConfigApi.methods>;

  before(async () => {
    ui = await startUiZone();
    const token = await ui.zone.localToken();
    hub = createClient(verifyHubApi, { baseUrl: ui.zone.gatewayUrl, token });
    config = createClient(systemConfigApi, { baseUrl: ui.zone.gatewayUrl, token });
  });
  after(async () => {
    await ui?.close();
  });

  const userNames = async () => (await hub.user_list({})).users.map((u) => u.name).sort();
  const userOf = async (name: string) => (await hub.user_list({})).users.find((u) => u.name === name);

  for (const vp of VIEWPORTS) {
    const s = vp.name[0]!;
    const bob = `bob-${s}`;
    const carol = `carol-${s}`;

    it(`manages users with clear messages and the sudo prompt at a ${vp.name} viewport`, async () => {
      const { context, page, errors, shot, audit, assertClean } = await openPage(ui.browser, vp, 'users');
      try {
        await signIn(page, ui.zone.uiUrl);
        await openFromNav(page, 'Users');
        await page.locator('[data-state="ready"]').waitFor();
        const owner = page.locator(`li[data-user="${OWNER}"]`);
        await owner.getByText('owner', { exact: false }).waitFor();
        assert.equal(await owner.getByRole('button').count(), 0, 'nothing is offered on the owner');
        await shot('list');
        await audit('users list');

        const before = await userNames();
        const form = page.getByRole('region', { name: 'Add a user' });
        const submit = form.getByRole('button', { name: 'Add user' });

        // Empty: both fields, nothing sent.
        await submit.click();
        await saysBeside(page, 'User name', 'Enter a user name.');
        await saysBeside(page, pwField(page), 'Enter a password.');
        await shot('create-empty');
        await audit('create with empty fields');

        await field(page, 'User name').fill('a'.repeat(33));
        await pwField(page).fill('Good-password-4711');
        await submit.click();
        await saysBeside(page, 'User name', 'A user name has at most 32 characters.');
        await field(page, 'User name').fill('Bob Smith');
        await submit.click();
        await saysBeside(page, 'User name', 'A user name is 2–32 lowercase letters, digits, _ or -, starting with a letter.');

        // The strength rules follow the typing.
        await field(page, 'User name').fill(bob);
        const rules = page.locator('#create-user-rules');
        await pwField(page).fill('short');
        assert.equal(await rules.locator('li[data-rule="length"]').getAttribute('data-ok'), 'false');
        assert.equal(await rules.locator('li[data-rule="kinds"]').getAttribute('data-ok'), 'false');
        await pwField(page).fill(`x-${bob}-Password`);
        assert.equal(await rules.locator('li[data-rule="length"]').getAttribute('data-ok'), 'true');
        assert.equal(await rules.locator('li[data-rule="no_name"]').getAttribute('data-ok'), 'false');
        await submit.click();
        await saysBeside(page, pwField(page), 'The password must not contain the user name.');
        await pwField(page).fill('abcdefghijkl');
        await submit.click();
        await saysBeside(page, pwField(page), 'Mix at least two kinds: lowercase, uppercase, digits, symbols.');
        await pwField(page).fill('short');
        await submit.click();
        await saysBeside(page, pwField(page), 'Use at least 10 characters.');
        await shot('create-weak');
        await audit('create with a weak password');

        // A name verify-hub reserves for the system: refused there, said beside the name.
        await field(page, 'User name').fill('scheduler');
        await pwField(page).fill('Good-password-4711');
        await submit.click();
        await saysBeside(page, 'User name', 'This name is reserved for the system: choose another.');
        await expectHttpError(errors, 400);
        assert.deepEqual(await userNames(), before, 'nothing saved by a refused form');

        await field(page, 'User name').fill(bob);
        await pwField(page).fill('Bright-river-4711');
        await submit.click();
        await page.getByRole('status').getByText(`User ${bob} was added as User.`).waitFor();
        await page.locator(`li[data-user="${bob}"]`).waitFor();
        assert.equal(await field(page, 'User name').inputValue(), '', 'the form is cleared');
        const created = await userOf(bob);
        assert.deepEqual(created && { role: created.role, state: created.state, owner: created.owner }, { role: 'user', state: 'active', owner: false });

        // The same name again.
        await field(page, 'User name').fill(bob);
        await pwField(page).fill('Other-stream-4711');
        await submit.click();
        await saysBeside(page, 'User name', 'This name is taken: choose another.');
        await expectHttpError(errors, 409);
        assert.deepEqual(await userOf(bob), created, 'the first account is untouched');
        await shot('create-taken');

        // An administrator needs the password again: a wrong one is said beside the field and creates nothing.
        await field(page, 'User name').fill(carol);
        await form.getByLabel(/^Role/).selectOption('admin');
        await form.getByText('Administrators manage devices, users and the whole zone.').waitFor();
        await pwField(page).fill('Quiet-forest-4711');
        await submit.click();
        const dialog = sudoDialog(page);
        await dialog.waitFor();
        await dialog.getByText('This action needs your password again.', { exact: false }).waitFor();
        await dialog.getByRole('button', { name: 'Confirm' }).click();
        await saysBeside(page, dialog.getByLabel(/^Your password/), 'Enter your password.');
        await answerSudo(page, 'Not-my-password-1');
        await saysBeside(page, dialog.getByLabel(/^Your password/), 'Wrong password.');
        await expectHttpError(errors, 401);
        await shot('sudo-wrong');
        await audit('sudo prompt with a wrong password');
        assert.equal(await userOf(carol), undefined, 'nothing created while the prompt is refused');
        await answerSudo(page, PASSWORD);
        await page.getByRole('status').getByText(`User ${carol} was added as Administrator.`).waitFor();
        await dialog.waitFor({ state: 'detached' });
        assert.equal((await userOf(carol))?.role, 'admin');

        // Another role: the same one is refused in the dialog; the sudo token is reused, so no prompt.
        const bobCard = page.locator(`li[data-user="${bob}"]`);
        await bobCard.getByRole('button', { name: 'Change role' }).click();
        const roleDialog = page.getByRole('dialog', { name: `Change the role of ${bob}` });
        await roleDialog.getByRole('button', { name: 'Change role' }).click();
        await saysBeside(page, roleDialog.getByLabel(/^Role/), 'Choose a role other than the current one.');
        await shot('role-same');
        await audit('role dialog');
        await roleDialog.getByLabel(/^Role/).selectOption('limited');
        await roleDialog.getByRole('button', { name: 'Change role' }).click();
        await page.getByRole('status').getByText(`${bob} is now Limited.`).waitFor();
        assert.equal(await sudoDialog(page).count(), 0, 'the sudo token was reused');
        assert.equal((await userOf(bob))?.role, 'limited');

        // A new password: weak ones are refused beside the field and change nothing.
        await bobCard.getByRole('button', { name: 'Reset password' }).click();
        const pwDialog = page.getByRole('dialog', { name: `Reset the password of ${bob}` });
        const newPw = pwDialog.getByLabel(/^New password/);
        await pwDialog.getByRole('button', { name: 'Set password' }).click();
        await saysBeside(page, newPw, 'Enter a password.');
        await newPw.fill(`My-${bob}-secret`);
        await pwDialog.getByRole('button', { name: 'Set password' }).click();
        await saysBeside(page, newPw, 'The password must not contain the user name.');
        await shot('reset-weak');
        await audit('reset password dialog');
        await newPw.fill('Fresh-meadow-2024');
        await pwDialog.getByRole('button', { name: 'Set password' }).click();
        await page.getByRole('status').getByText(`The password of ${bob} was reset`, { exact: false }).waitFor();
        await login(ui.zone.gatewayUrl, bob, 'Fresh-meadow-2024');

        // Disabled: cannot sign in, even with the right password; enabled again: can.
        await bobCard.getByRole('button', { name: 'Disable' }).click();
        await page.getByRole('status').getByText(`${bob} is disabled and signed out everywhere.`).waitFor();
        await bobCard.getByText('Disabled', { exact: true }).waitFor();
        assert.equal((await userOf(bob))?.state, 'disabled');
        await assert.rejects(login(ui.zone.gatewayUrl, bob, 'Fresh-meadow-2024'), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
        await shot('disabled');
        await audit('a disabled user');
        await bobCard.getByRole('button', { name: 'Enable' }).click();
        await page.getByRole('status').getByText(`${bob} can sign in again.`).waitFor();
        assert.equal((await userOf(bob))?.state, 'active');

        // Delete: Cancel keeps the account; confirming removes it.
        const carolCard = page.locator(`li[data-user="${carol}"]`);
        await carolCard.getByRole('button', { name: 'Delete' }).click();
        const delDialog = page.getByRole('dialog', { name: `Delete ${carol}?` });
        await delDialog.getByText('This cannot be undone.', { exact: false }).waitFor();
        await shot('delete-confirm');
        await audit('delete confirmation');
        await delDialog.getByRole('button', { name: 'Cancel' }).click();
        await delDialog.waitFor({ state: 'detached' });
        assert.ok(await userOf(carol), 'cancelled: still there');
        await carolCard.getByRole('button', { name: 'Delete' }).click();
        await delDialog.getByRole('button', { name: 'Delete user' }).click();
        await page.getByRole('status').getByText(`User ${carol} was deleted.`).waitFor();
        await carolCard.waitFor({ state: 'detached' });
        assert.equal(await userOf(carol), undefined);
        await shot('after');
        await audit('users after the changes');

        assertClean();
      } finally {
        await context.close();
      }
    });

    it(`lists, adds and removes devices at a ${vp.name} viewport`, async () => {
      // A second device to remove: a document signed by the zone's enrolment key, as verify-hub signs one at a join.
      const spare = `spare-${s}`;
      const enrolKey = loadKeyFile(join(ui.zone.paths.etc, 'enrol_key.pem'));
      const key = generateKeyPair();
      const iat = Math.floor(Date.now() / 1000);
      const doc: DeviceDoc = { typ: 'device', name: spare, zone: ZONE_NAME, did: didDev(key.publicKeyB64), key: key.publicKeyB64, role: 'storage', iat, exp: iat + 3600 };
      await config.set({ key: `devices/${spare}/doc`, value: await signDocument(doc, enrolKey.privateKey) });
      const offers = async () => (await config.list({ prefix: 'system/enrol/offers/', keys_only: true })).entries.map((e) => e.key);
      const offersBefore = await offers();

      const { context, page, errors, shot, audit, assertClean } = await openPage(ui.browser, vp, 'devices');
      try {
        await signIn(page, ui.zone.uiUrl);
        await openFromNav(page, 'Devices');
        await page.locator('[data-state="ready"]').waitFor();
        const self = page.locator(`li[data-device="${ui.node}"]`);
        await self.getByText('Online', { exact: true }).waitFor({ timeout: 30_000 });
        await self.getByText('this device', { exact: false }).waitFor();
        assert.equal(await self.getByRole('button').count(), 0, 'the device answering cannot be removed through itself');
        const spareCard = page.locator(`li[data-device="${spare}"]`);
        await spareCard.getByText('Unknown', { exact: true }).waitFor();
        await spareCard.getByText('never', { exact: true }).waitFor();
        await page.getByText('A device\'s role is fixed when it joins', { exact: false }).waitFor();
        await shot('list');
        await audit('devices list');

        const form = page.getByRole('region', { name: 'Add a device' });
        const submit = form.getByRole('button', { name: 'Create join code' });
        await form.getByLabel(/^Device name/).fill('NAS 2');
        await submit.click();
        await saysBeside(page, form.getByLabel(/^Device name/), 'A device name is 2–32 lowercase letters, digits or -, starting with a letter.');
        await form.getByLabel(/^Device name/).fill('n'.repeat(33));
        await submit.click();
        await saysBeside(page, form.getByLabel(/^Device name/), 'A device name has at most 32 characters.');
        assert.equal(await sudoDialog(page).count(), 0, 'a form with mistakes asks for no password');

        // Cancelling the prompt does nothing and says nothing.
        await form.getByLabel(/^Device name/).fill(ui.node);
        await submit.click();
        await sudoDialog(page).waitFor();
        await shot('sudo');
        await audit('sudo prompt');
        await sudoDialog(page).getByRole('button', { name: 'Cancel' }).click();
        await sudoDialog(page).waitFor({ state: 'detached' });
        assert.equal(await page.getByRole('alert').count(), 0);
        assert.deepEqual(await offers(), offersBefore);

        // A name already in the zone: refused beside the field, no offer stored.
        await submit.click();
        await answerSudo(page, PASSWORD);
        await saysBeside(page, form.getByLabel(/^Device name/), 'A device with this name is already in the zone: choose another name.');
        await expectHttpError(errors, 409);
        assert.deepEqual(await offers(), offersBefore, 'nothing stored for a refused offer');
        await shot('offer-taken');

        const joiner = `nas9-${s}`;
        await form.getByLabel(/^Role/).selectOption('storage');
        await form.getByLabel(/^Device name/).fill(joiner);
        await form.getByLabel(/^Valid for/).selectOption('3600');
        await submit.click();
        const offerCard = page.getByRole('region', { name: 'Join code for a new Storage device' });
        await offerCard.waitFor();
        assert.equal(await sudoDialog(page).count(), 0, 'the sudo token was reused');
        await offerCard.getByText(`It can only join as ${joiner}.`).waitFor();
        const code = (await offerCard.getByTestId('join-code').innerText()).trim();
        assert.ok(code.startsWith('bkjoin1.'), code.slice(0, 20));
        const { offer } = await openEnrolOffer(code);
        assert.equal(offer.role, 'storage');
        assert.equal(offer.name, joiner);
        assert.equal(offer.zone, ZONE_NAME);
        assert.ok(offer.exp - offer.iat === 3600);
        assert.deepEqual(await offers(), [...offersBefore, `system/enrol/offers/${offer.id}`].sort(), 'the offer is stored, its secret only as a hash');
        assert.equal(await offerCard.getAttribute('data-offer'), offer.id);
        // The QR code is the offer's URI, drawn module by module.
        const qr = offerCard.getByRole('img', { name: 'QR code of the join code' });
        assert.equal(await qr.locator('path').getAttribute('d'), qrPath(`buckyos://join?offer=${encodeURIComponent(code)}`).path);
        const timer = offerCard.getByRole('timer');
        const first = Number(await timer.getAttribute('data-seconds-left'));
        assert.ok(first > 3500 && first <= 3600, `about an hour left, not ${first} s`);
        assert.match(await timer.innerText(), /^Valid for another (1:00:00|59:\d\d)$/);
        await page.waitForFunction((n) => Number(document.querySelector('[role="timer"]')?.getAttribute('data-seconds-left')) < n, first);
        await offerCard.getByText('buckyos join', { exact: false }).waitFor();
        await shot('offer');
        await audit('join code shown');
        await offerCard.getByRole('button', { name: 'Done' }).click();
        await form.waitFor();

        // Remove the spare device: confirmation, then revoked for good.
        await spareCard.getByRole('button', { name: `Remove ${spare}` }).click();
        const removeDialog = page.getByRole('dialog', { name: `Remove ${spare}?` });
        await removeDialog.getByText('revoked at once and for good', { exact: false }).waitFor();
        await shot('remove-confirm');
        await audit('remove confirmation');
        await removeDialog.getByRole('button', { name: 'Remove device' }).click();
        await page.getByRole('status').getByText(`Device ${spare} was removed.`).waitFor();
        await spareCard.waitFor({ state: 'detached' });
        const listed = (await hub.device_list({})).devices.map((d) => d.name);
        assert.ok(!listed.includes(spare) && listed.includes(ui.node), `left: ${listed.join(', ')}`);
        const revoked = (await config.get({ key: `devices/${spare}/revoked` })).value;
        assert.ok(revoked && (JSON.parse(revoked) as string[]).includes(key.publicKeyB64), 'its key is revoked');
        await shot('after');
        await audit('devices after the removal');

        assertClean();
      } finally {
        await context.close();
      }
    });
  }
});
