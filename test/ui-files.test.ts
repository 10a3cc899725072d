// The files page (Personal Station) in Chromium against a real zone with storage: a disk and a volume are added so
// the scheduler places dfs, then at a desktop and a phone viewport a person browses their home and /public, makes a
// folder (after the form refuses an empty, a too long, an invalid and a taken name), uploads files and a whole
// folder with progress, sees thumbnails drawn from an image and a video, previews an image, a video, audio, text and
// a PDF, downloads, renames, moves, searches, keeps and restores versions, deletes to the trash and restores or
// deletes for good, is stopped by the quota before anything is sent, and resumes an upload whose connection broke
// from the bytes the zone already held; an entry's open menu stays on its file while the list refreshes under it,
// and an overlapping listing of another folder is not shown. axe-core audits every state, the console stays clean
// (but for the refusals a step causes on purpose, which it removes by name), and screenshots land in
// test-artifacts/ui/. Beside the browser: dfs.search and trash_purge with their permissions and limits, ?version=
// downloads, and the LAN listener's dfs file routes against the real gateway.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { OWNER, PASSWORD, VIEWPORTS, fieldMessage, openFromNav, openPage, signIn, startUiZone, type UiZone } from './support/ui.ts';
import { until } from './support/wait.ts';
import { verifyHubApi } from '../src/lib/api/verify-hub.ts';
import { dfsApi } from '../src/lib/api/dfs.ts';
import { KrpcError, createClient } from '../src/lib/krpc/index.ts';

const BOB = 'bob';
const BOB_PW = 'Staple-Battery-42x';
const VOLUME = 'home';
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A WAV file: one second of a 440 Hz tone, 8 kHz mono 16-bit. */
function wav(): Buffer {
  const rate = 8000;
  const samples = Buffer.alloc(rate * 2);
  for (let i = 0; i < rate; i++) samples.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * i) / rate) * 8000), i * 2);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + samples.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(samples.length, 40);
  return Buffer.concat([h, samples]);
}

/** A one-page PDF saying "Hello PDF", with a correct cross-reference table. */
function pdf(): Buffer {
  const objs = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    '<< /Length 44 >>\nstream\nBT /F1 24 Tf 40 60 Td (Hello PDF) Tj ET\nendstream',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  objs.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')}`;
  out += `trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** A PNG and a short WebM video, drawn and recorded by Chromium itself (a real encoder, nothing downloaded). */
async function browserMedia(ui: UiZone): Promise<{ png: Buffer; webm: Buffer }> {
  const page = await ui.browser.newPage();
  try {
    // As source text: the test runs through a TypeScript loader whose helpers do not exist in the page.
    const [png, webm] = (await page.evaluate(`(async () => {
      const canvas = document.createElement('canvas');
      canvas.width = 320;
      canvas.height = 240;
      const ctx = canvas.getContext('2d');
      function draw(n) {
        const g = ctx.createLinearGradient(0, 0, 320, 240);
        g.addColorStop(0, 'hsl(' + n * 10 + ', 80%, 50%)');
        g.addColorStop(1, '#123456');
        ctx.fillStyle = g;
        ctx.fillRect(0, 0, 320, 240);
        ctx.fillStyle = '#fff';
        ctx.fillRect(40 + n * 4, 80, 60, 60);
      }
      draw(0);
      const pngUrl = canvas.toDataURL('image/png');
      const rec = new MediaRecorder(canvas.captureStream(25), { mimeType: 'video/webm' });
      const parts = [];
      rec.ondataavailable = (e) => parts.push(e.data);
      const stopped = new Promise((r) => (rec.onstop = r));
      rec.start();
      for (let n = 1; n <= 30; n++) {
        draw(n);
        await new Promise((r) => setTimeout(r, 40));
      }
      rec.stop();
      await stopped;
      const buf = new Uint8Array(await new Blob(parts, { type: 'video/webm' }).arrayBuffer());
      let bin = '';
      for (const b of buf) bin += String.fromCharCode(b);
      return [pngUrl.slice(pngUrl.indexOf(',') + 1), btoa(bin)];
    })()`)) as [string, string];
    return { png: Buffer.from(png, 'base64'), webm: Buffer.from(webm, 'base64') };
  } finally {
    await page.close();
  }
}

const row = (page: Page, name: string) => page.locator(`li[data-entry="${name}"]`);

/**
 * Opens an entry's menu and picks `action`. A refresh landing meanwhile no longer moves the menu (the page holds the
 * rows still under an open menu; the test below checks it), but in CI a menu has still been seen to close before the
 * click landed ("<p> from <div id=root> intercepts pointer events", then the item not visible), after the clean-clone
 * run of the eleventh session, with no refresh under way: the menu is opened again, up to three times, as a person
 * would, until that is understood.
 */
async function entryAction(page: Page, name: string, action: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await page.getByRole('button', { name: `Actions for ${name}`, exact: true }).click();
    try {
      await page.getByRole('menuitem', { name: action, exact: true }).click({ timeout: 5_000 });
      return;
    } catch (err) {
      if (attempt === 3) throw err;
      await page.keyboard.press('Escape');
    }
  }
}

/** Waits for a notice and closes it, so that the next one is not mistaken for it. */
async function notice(page: Page, text: string): Promise<void> {
  const n = page.getByRole('status').filter({ hasText: text });
  await n.waitFor();
  await n.getByRole('button', { name: 'Close' }).click();
}

/** Removes the console errors a step caused on purpose (the browser logs every refused or broken request); fails
 * when there is none. */
function expectErrors(errors: string[], what: string, match: (e: string) => boolean): void {
  const before = errors.length;
  const rest = errors.filter((e) => !match(e));
  assert.ok(rest.length < before, `${what}: expected a console error, got: ${errors.join('; ')}`);
  errors.splice(0, errors.length, ...rest);
}

describe('the files page in Chromium against a real zone with storage', { timeout: 600_000 }, () => {
  let ui: UiZone;
  let zone: UiZone['zone'];
  let dir: string;
  let alice: string;
  let bob: string;
  let media: { png: Buffer; webm: Buffer };
  const dfsAs = (token: string) => createClient(dfsApi, { baseUrl: zone.gatewayUrl, token });

  const login = async (user: string, pw: string) => {
    const hub = createClient(verifyHubApi, { baseUrl: zone.gatewayUrl });
    const { nonce } = await hub.login_nonce({});
    return (await hub.login_password({ username: user, password: pw, nonce, app_id: 'control-panel' })).session_token;
  };

  before(async () => {
    dir = join(tmpdir(), `ui-files-${randomBytes(4).toString('hex')}`);
    mkdirSync(join(dir, 'disk1'), { recursive: true });
    ui = await startUiZone();
    zone = ui.zone;
    // dfs runs only where storage is: a disk and a volume make the scheduler place it.
    for (const args of [['fs', 'disk', 'add', join(dir, 'disk1'), '--id', 'd1'], ['fs', 'volume', 'create', VOLUME, '--copies', '1', '--domain', 'disk']]) {
      const r = await zone.cli(args);
      assert.equal(r.code, 0, r.stderr);
    }
    await zone.waitFor((s) => s.children.some((c) => c.name === 'dfs' && c.healthy), 60_000, 'dfs running');
    await zone.waitRoutable(['dfs']);
    alice = await login(OWNER, PASSWORD);
    await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: alice }).user_create({ name: BOB, password: BOB_PW, role: 'user' });
    bob = await login(BOB, BOB_PW);
    await until('both homes exist', async () => {
      const d = dfsAs(alice);
      const ok = await Promise.all([d.stat({ volume: VOLUME, path: `/home/${OWNER}` }), d.stat({ volume: VOLUME, path: `/home/${BOB}` })]).then(() => true, () => undefined);
      return ok;
    });
    media = await browserMedia(ui);
  });

  after(async () => {
    await ui?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('searches by name under a folder with limits and permissions, purges trash, and serves kept versions', async () => {
    const a = dfsAs(alice);
    const b = dfsAs(bob);
    const put = async (token: string, path: string, body: string) => {
      const r = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/${VOLUME}${path}`, { method: 'PUT', headers: { authorization: `Bearer ${token}` }, body });
      assert.ok(r.ok, `PUT ${path}: ${r.status} ${await r.text()}`);
    };
    await a.mkdir({ volume: VOLUME, path: `/home/${OWNER}/api/Trip/Day 1`, parents: true });
    await put(alice, `/home/${OWNER}/api/Trip/Day 1/Beach-Photo.JPG`, 'jpg');
    await put(alice, `/home/${OWNER}/api/Trip/photo-notes.txt`, 'notes');
    await put(alice, `/home/${OWNER}/api/other.txt`, 'other');
    await put(bob, '/public/bob-photo.txt', 'bob');

    const found = await a.search({ volume: VOLUME, path: `/home/${OWNER}/api`, query: 'PHOTO' });
    assert.deepEqual(found.entries.map((e) => e.path), [`/home/${OWNER}/api/Trip/photo-notes.txt`, `/home/${OWNER}/api/Trip/Day 1/Beach-Photo.JPG`], 'nearest first, case-insensitive');
    assert.equal(found.truncated, false);
    const one = await a.search({ volume: VOLUME, path: `/home/${OWNER}/api`, query: 'photo', limit: 1 });
    assert.equal(one.entries.length, 1);
    assert.equal(one.truncated, true);
    assert.deepEqual((await a.search({ volume: VOLUME, path: `/home/${OWNER}/api`, query: 'day' })).entries.map((e) => [e.path, e.type]), [[`/home/${OWNER}/api/Trip/Day 1`, 'dir']]);
    // Bob may not search Alice's home, and searching /public does not reach into it.
    await assert.rejects(b.search({ volume: VOLUME, path: `/home/${OWNER}`, query: 'photo' }), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
    assert.deepEqual((await b.search({ volume: VOLUME, path: '/public', query: 'photo' })).entries.map((e) => e.path), ['/public/bob-photo.txt']);
    for (const [params, code] of [
      [{ query: '   ' }, 'INVALID_PARAMS'],
      [{ query: '' }, 'INVALID_PARAMS'],
      [{ query: 'x'.repeat(256) }, 'INVALID_PARAMS'],
      [{ query: 'a\nb' }, 'INVALID_PARAMS'],
      [{ query: 'a', limit: 501 }, 'INVALID_PARAMS'],
      [{ query: 'a', path: `/home/${OWNER}/api/other.txt` }, 'FAILED_PRECONDITION'],
      [{ query: 'a', path: `/home/${OWNER}/nowhere` }, 'NOT_FOUND'],
      [{ query: 'a', path: `/home/${OWNER}/../${BOB}` }, 'INVALID_PARAMS'],
    ] as const) {
      await assert.rejects(a.search({ volume: VOLUME, path: `/home/${OWNER}/api`, ...params }), (e: KrpcError) => e.code === code, JSON.stringify(params));
    }

    // Versions: an older one is downloadable by id, by whoever may read the file.
    await put(alice, `/home/${OWNER}/api/other.txt`, 'other, second');
    const versions = (await a.versions({ volume: VOLUME, path: `/home/${OWNER}/api/other.txt` })).versions;
    assert.equal(versions.length, 2);
    const old = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/${VOLUME}/home/${OWNER}/api/other.txt?version=${versions[1]!.version_id}`, { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(await old.text(), 'other');
    const wrong = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/${VOLUME}/home/${OWNER}/api/Trip/photo-notes.txt?version=${versions[1]!.version_id}`, { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(wrong.status, 404, 'a version of another file is not this file\'s');

    // Purge: only whoever may delete where the item was; afterwards it cannot be restored.
    const { trash_id } = await a.delete({ volume: VOLUME, path: `/home/${OWNER}/api/other.txt` });
    await assert.rejects(b.trash_purge({ volume: VOLUME, trash_id }), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
    assert.deepEqual(await a.trash_purge({ volume: VOLUME, trash_id }), { purged: true });
    assert.ok(!(await a.trash_list({ volume: VOLUME })).items.some((t) => t.trash_id === trash_id));
    await assert.rejects(a.restore({ volume: VOLUME, trash_id }), (e: KrpcError) => e.code === 'NOT_FOUND');
    await assert.rejects(a.trash_purge({ volume: VOLUME, trash_id }), (e: KrpcError) => e.code === 'NOT_FOUND');
    await a.delete({ volume: VOLUME, path: `/home/${OWNER}/api` }).then((t) => a.trash_purge({ volume: VOLUME, trash_id: t.trash_id }));
    await b.delete({ volume: VOLUME, path: '/public/bob-photo.txt' }).then((t) => b.trash_purge({ volume: VOLUME, trash_id: t.trash_id }));
  });

  it('passes the page\'s file requests through the LAN listener with a token only', async () => {
    const a = dfsAs(alice);
    const data = randomBytes(100_000);
    const path = `/home/${OWNER}/listener.bin`;
    const { upload_id } = await a.upload_begin({ volume: VOLUME, path, size: data.length, overwrite: true });
    const part = (from: number, to: number, headers: Record<string, string> = { authorization: `Bearer ${alice}` }) =>
      fetch(`${zone.uiUrl}/kapi/dfs/uploads/${upload_id}?offset=${from}`, { method: 'PUT', headers, body: data.subarray(from, to) });
    assert.equal((await part(0, 10, {})).status, 401, 'no token, no part');
    assert.deepEqual(await (await part(0, 60_000)).json(), { offset: 60_000 });
    assert.equal((await part(0, 10)).status, 409, 'a part must start where the upload stands');
    assert.deepEqual(await (await part(60_000, data.length)).json(), { offset: data.length });
    assert.equal((await a.upload_commit({ upload_id, content_id: sha(data) })).size, data.length);

    const url = `${zone.uiUrl}/kapi/dfs/files/${VOLUME}${path}`;
    const ranged = await fetch(url, { headers: { authorization: `Bearer ${alice}`, range: 'bytes=10-19' } });
    assert.equal(ranged.status, 206);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), data.subarray(10, 20));
    assert.equal(ranged.headers.get('etag'), `"${sha(data)}"`);
    assert.equal(ranged.headers.get('x-content-type-options'), 'nosniff');
    assert.equal((await fetch(url)).status, 401);
    assert.equal((await fetch(`${url}?token=${alice}`)).status, 404, 'a token in a URL is no way in');
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${bob}` } })).status, 403, 'dfs checks the caller\'s rights');
    assert.equal((await fetch(`${zone.uiUrl}/kapi/dfs/dav/${VOLUME}${path}`, { headers: { authorization: `Bearer ${alice}` } })).status, 404, 'no WebDAV from the LAN');
    await a.delete({ volume: VOLUME, path }).then((t) => a.trash_purge({ volume: VOLUME, trash_id: t.trash_id }));
  });

  it('keeps an open entry menu on its file while the list refreshes under it, closes it when the file goes, and shows only the last listing asked for', async () => {
    const { context, page, assertClean } = await openPage(ui.browser, VIEWPORTS[0]!, 'files-menu');
    const a = dfsAs(alice);
    const folder = `/home/${OWNER}/Menu`;
    const local = join(dir, 'menu');
    mkdirSync(local, { recursive: true });
    const put = async (name: string) => {
      const r = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/${VOLUME}${folder}/${name}`, { method: 'PUT', headers: { authorization: `Bearer ${alice}` }, body: name });
      assert.ok(r.ok, `PUT ${name}: ${r.status}`);
    };
    const names = () => page.locator('li[data-entry]').evaluateAll((els) => els.map((e) => e.getAttribute('data-entry')));
    // The list refreshes when an upload finishes: each upload's part is held until the menu is open, then let go.
    const held: (() => void)[] = [];
    await page.route('**/kapi/dfs/uploads/**', async (route) => {
      await new Promise<void>((r) => held.push(r));
      await route.continue();
    });
    const heldUpload = async (name: string) => {
      writeFileSync(join(local, name), name);
      await page.locator('input[data-pick="files"]').setInputFiles(join(local, name));
      await until(`${name} held`, () => (held.length > 0 ? true : undefined), 10_000);
    };
    /** Lets the held upload go and waits until the refresh after it has been rendered (the space used grows). */
    const refresh = async (name: string) => {
      const usage = page.getByText(/ used$/);
      const before = await usage.innerText();
      held.shift()!();
      await page.locator(`li[data-upload="${name}"][data-state="done"]`).waitFor();
      await until('the refreshed listing', async () => ((await usage.innerText()) !== before ? true : undefined), 10_000);
    };
    try {
      await a.mkdir({ volume: VOLUME, path: folder, parents: false });
      for (const name of ['b.txt', 'd.txt', 'f.txt', 'h.txt']) await put(name);
      await signIn(page, zone.uiUrl);
      await page.goto(`${zone.uiUrl}/files?dir=${encodeURIComponent(folder)}`);
      await row(page, 'h.txt').waitFor();

      // A person opens f.txt's menu and points at Rename; meanwhile two files arrive before it in the list (one put
      // by another device, one uploaded from this page) and the list refreshes. The click lands where Rename was.
      await heldUpload('c.txt');
      await page.getByRole('button', { name: 'Actions for f.txt', exact: true }).click();
      const rename = page.getByRole('menuitem', { name: 'Rename', exact: true });
      await (await rename.elementHandle())!.waitForElementState('stable');
      const box = (await rename.boundingBox())!;
      await put('a.txt');
      await refresh('c.txt');
      // Two frames: a menu following a moved row has been placed anew by then.
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      assert.deepEqual(await names(), ['b.txt', 'd.txt', 'f.txt', 'h.txt'], 'the rows stay as they were under the open menu');
      await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
      await until('the click done', async () => ((await page.getByRole('dialog').count()) > 0 || (await page.getByRole('menu').count()) === 0 ? true : undefined), 10_000);
      assert.deepEqual(await page.getByRole('dialog').locator('h2').allInnerTexts(), ['Rename f.txt'], 'the click acted on the file the menu was opened for');
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
      await until('the refreshed rows once the menu closed', async () => (JSON.stringify(await names()) === JSON.stringify(['a.txt', 'b.txt', 'c.txt', 'd.txt', 'f.txt', 'h.txt']) ? true : undefined), 10_000);

      // The menu's file goes while its menu is open: the menu closes with the refresh that no longer lists it.
      await heldUpload('e.txt');
      await page.getByRole('button', { name: 'Actions for d.txt', exact: true }).click();
      await page.getByRole('menu').waitFor();
      await a.delete({ volume: VOLUME, path: `${folder}/d.txt` });
      await refresh('e.txt');
      await page.getByRole('menu').waitFor({ state: 'detached' });
      await row(page, 'd.txt').waitFor({ state: 'detached' });
      assert.deepEqual(await names(), ['a.txt', 'b.txt', 'c.txt', 'e.txt', 'f.txt', 'h.txt']);
      // Another menu opens and acts on its own file as usual.
      await entryAction(page, 'h.txt', 'Rename');
      await page.getByRole('dialog', { name: 'Rename h.txt' }).waitFor();
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();

      // Listings overlap: this folder's, asked for when an upload finished, answers only after the person has gone
      // up to their home, and is not shown there.
      const heldLists: (() => void)[] = [];
      const isMenuList = (body: string | null) => {
        const call = JSON.parse(body ?? '{}') as { method?: string; params?: { path?: string } };
        return call.method === 'list' && call.params?.path === folder;
      };
      await page.route('**/kapi/dfs', async (route) => {
        if (isMenuList(route.request().postData())) await new Promise<void>((r) => heldLists.push(r));
        await route.continue();
      });
      await heldUpload('g.txt');
      held.shift()!();
      await until('the listing held', () => (heldLists.length > 0 ? true : undefined), 10_000);
      await page.getByRole('navigation', { name: 'Folder path' }).getByRole('button', { name: 'My files' }).click();
      await row(page, 'Menu').waitFor();
      const late = page.waitForResponse((r) => isMenuList(r.request().postData()));
      heldLists.shift()!();
      await (await late).finished();
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      assert.deepEqual(await names(), ['Menu'], 'the home folder still shows its own listing');
      assertClean();
    } finally {
      await context.close();
      await a.delete({ volume: VOLUME, path: folder }).then((t) => a.trash_purge({ volume: VOLUME, trash_id: t.trash_id }), () => undefined);
      const trash = await a.trash_list({ volume: VOLUME });
      for (const item of trash.items.filter((t) => t.path.startsWith(`${folder}/`))) await a.trash_purge({ volume: VOLUME, trash_id: item.trash_id });
    }
  });

  for (const vp of VIEWPORTS) {
    it(`browses, uploads, previews, changes and restores files at a ${vp.name} viewport`, async () => {
      const { context, page, errors, shot, audit, assertClean } = await openPage(ui.browser, vp, 'files');
      const work = `Work ${vp.name}`;
      const workPath = `/home/${OWNER}/${work}`;
      const local = join(dir, vp.name);
      mkdirSync(join(local, 'Album', 'Day 1'), { recursive: true });
      const files = {
        'photo.png': media.png,
        'clip.webm': media.webm,
        'tone.wav': wav(),
        'notes.txt': Buffer.from('First notes.\nLine two.\n'),
        'doc.pdf': pdf(),
      };
      for (const [name, data] of Object.entries(files)) writeFileSync(join(local, name), data);
      writeFileSync(join(local, 'Album', 'cover.png'), media.png);
      writeFileSync(join(local, 'Album', 'Day 1', 'diary.txt'), 'Day one.');
      try {
        await signIn(page, zone.uiUrl);
        await openFromNav(page, 'Files');
        await page.locator('section[data-state="ready"]').waitFor();
        await page.getByRole('navigation', { name: 'Folder path' }).getByText('My files').waitFor();
        await shot('home');
        await audit('home folder');

        // A new folder: every bad name is refused beside the field, and nothing is created.
        await page.getByRole('button', { name: 'New folder' }).click();
        const dialog = page.getByRole('dialog');
        await dialog.getByRole('button', { name: 'Create' }).click();
        assert.deepEqual(await fieldMessage(page, 'Name'), { invalid: 'true', message: 'Enter a name.' });
        await shot('mkdir-empty');
        await audit('new folder with an error');
        for (const [name, message] of [
          ['a/b', 'A name cannot be . or .., nor contain /, \\ or control characters.'],
          ['..', 'A name cannot be . or .., nor contain /, \\ or control characters.'],
          ['x'.repeat(256), 'A name has at most 255 bytes (a Chinese character takes 3).'],
          ['文'.repeat(86), 'A name has at most 255 bytes (a Chinese character takes 3).'],
          [' padded', 'A name cannot start or end with a space.'],
        ]) {
          await page.getByLabel(/^Name/).fill(name);
          await dialog.getByRole('button', { name: 'Create' }).click();
          await until(`the message for ${JSON.stringify(name.slice(0, 10))}`, async () => ((await fieldMessage(page, 'Name')).message === message ? true : undefined), 5_000);
        }
        await page.getByLabel(/^Name/).fill(work);
        await dialog.getByRole('button', { name: 'Create' }).click();
        await notice(page, `Folder ${work} was created.`);
        await row(page, work).waitFor();
        // The same name again is taken.
        await page.getByRole('button', { name: 'New folder' }).click();
        await page.getByLabel(/^Name/).fill(work);
        await dialog.getByRole('button', { name: 'Create' }).click();
        assert.equal((await fieldMessage(page, 'Name')).message, 'Something with this name is already here: choose another name.');
        await dialog.getByRole('button', { name: 'Cancel' }).click();
        const home = (await dfsAs(alice).list({ volume: VOLUME, path: `/home/${OWNER}` })).entries.map((e) => e.path);
        assert.deepEqual(home, [workPath], 'only the good folder was made');

        await page.getByRole('button', { name: `Open folder ${work}` }).click();
        await page.getByRole('navigation', { name: 'Folder path' }).getByText(work).waitFor();
        await page.getByText('This folder is empty. Upload files or create a folder.').waitFor();

        // Uploads with progress; thumbnails drawn from the image and the video.
        await page.locator('input[data-pick="files"]').setInputFiles(Object.keys(files).map((n) => join(local, n)));
        for (const name of Object.keys(files)) await page.locator(`li[data-upload="${name}"][data-state="done"]`).waitFor({ timeout: 60_000 });
        for (const name of Object.keys(files)) await row(page, name).waitFor();
        for (const name of ['photo.png', 'clip.webm']) {
          // Drawn when the row comes into view.
          await row(page, name).scrollIntoViewIfNeeded();
          const thumb = row(page, name).locator('img[data-thumb="drawn"]');
          await thumb.waitFor({ timeout: 30_000 });
          assert.match((await thumb.getAttribute('src')) ?? '', /^blob:/);
          assert.ok(await thumb.evaluate((img: HTMLImageElement) => img.naturalWidth > 0 && img.naturalWidth <= 160), `${name}: a real, small thumbnail`);
        }
        await shot('uploaded');
        await audit('folder with uploads');

        // Previews, each from a blob the page typed itself.
        const preview = async (name: string, selector: string, ready: (el: Page) => Promise<unknown>) => {
          await page.getByRole('button', { name: `Open ${name}`, exact: true }).click();
          await page.getByRole('dialog', { name }).locator(selector).waitFor();
          await ready(page);
          await shot(`preview-${name.replace('.', '-')}`, false);
          await audit(`preview of ${name}`);
          await page.getByRole('dialog', { name }).getByRole('button', { name: 'Close' }).first().click();
          await page.getByRole('dialog').waitFor({ state: 'detached' });
        };
        await preview('photo.png', 'img[data-preview="image"]', (p) => p.waitForFunction(() => (document.querySelector('img[data-preview="image"]') as HTMLImageElement | null)?.naturalWidth === 320));
        await preview('clip.webm', 'video[data-preview="video"]', (p) => p.waitForFunction(() => ((document.querySelector('video[data-preview="video"]') as HTMLVideoElement | null)?.readyState ?? 0) >= 1));
        await preview('tone.wav', 'audio[data-preview="audio"]', (p) => p.waitForFunction(() => Math.round((document.querySelector('audio[data-preview="audio"]') as HTMLAudioElement | null)?.duration ?? 0) === 1));
        await preview('notes.txt', 'pre[data-preview="text"]', async (p) => assert.equal(await p.locator('pre[data-preview="text"]').innerText(), 'First notes.\nLine two.\n'));
        await preview('doc.pdf', 'iframe[data-preview="pdf"]', async (p) => {
          const src = await p.locator('iframe[data-preview="pdf"]').getAttribute('src');
          assert.match(src ?? '', /^blob:/);
          // The browser's own viewer opens the blob in the frame.
          await until('the PDF frame', () => (p.frames().some((f) => f.url() === src) ? true : undefined), 10_000);
        });

        // Download: the bytes arrive whole, fetched with the token in a header.
        const saved = page.waitForEvent('download');
        await entryAction(page, 'photo.png', 'Download');
        const dl = await saved;
        assert.equal(dl.suggestedFilename(), 'photo.png');
        assert.deepEqual(readFileSync((await dl.path())!), media.png);

        // Rename: the same name, a taken one and an empty one are refused; then a good one.
        await entryAction(page, 'notes.txt', 'Rename');
        await page.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
        assert.equal((await fieldMessage(page, 'Name')).message, 'That is its name already: type a new one.');
        await page.getByLabel(/^Name/).fill('photo.png');
        await page.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
        await until('taken', async () => ((await fieldMessage(page, 'Name')).message === 'Something with this name is already here: choose another name.' ? true : undefined), 5_000);
        await page.getByLabel(/^Name/).fill('');
        await page.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
        await until('empty', async () => ((await fieldMessage(page, 'Name')).message === 'Enter a name.' ? true : undefined), 5_000);
        await shot('rename-error', false);
        await audit('rename with an error');
        await page.getByLabel(/^Name/).fill('journal.txt');
        await page.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
        await notice(page, 'notes.txt is now called journal.txt.');
        await row(page, 'journal.txt').waitFor();

        // Versions: uploading again keeps the earlier content; it can be previewed, downloaded and restored.
        writeFileSync(join(local, 'journal.txt'), 'Second notes.\n');
        await page.locator('input[data-pick="files"]').setInputFiles(join(local, 'journal.txt'));
        await page.locator('li[data-upload="journal.txt"][data-state="done"]').waitFor();
        await entryAction(page, 'journal.txt', 'Versions');
        const versions = page.getByRole('list', { name: 'Versions of journal.txt' });
        await until('two versions', async () => ((await versions.getByRole('listitem').count()) === 2 ? true : undefined), 10_000);
        await shot('versions', false);
        await audit('versions');
        const older = versions.getByRole('listitem').nth(1);
        const savedOld = page.waitForEvent('download');
        await older.getByRole('button', { name: 'Download' }).click();
        assert.equal(readFileSync((await (await savedOld).path())!, 'utf8'), 'First notes.\nLine two.\n');
        await older.getByRole('button', { name: 'Restore' }).click();
        await notice(page, 'of journal.txt is current again.');
        await page.getByRole('button', { name: 'Open journal.txt', exact: true }).click();
        await until('the restored text', async () => ((await page.locator('pre[data-preview="text"]').innerText().catch(() => '')) === 'First notes.\nLine two.\n' ? true : undefined), 10_000);
        await page.getByRole('dialog').getByRole('button', { name: 'Close' }).first().click();

        // Move: a folder elsewhere, a missing one, then home.
        await entryAction(page, 'journal.txt', 'Move');
        await page.getByLabel(/^Move to folder/).fill('/home/bob');
        await page.getByRole('dialog').getByRole('button', { name: 'Move' }).click();
        // The field's hint follows its error in what a screen reader hears.
        const hint = `A folder path, such as /home/${OWNER}/Photos or /public.`;
        assert.equal((await fieldMessage(page, 'Move to folder')).message, `Choose a folder in your own files or in /public. ${hint}`);
        await page.getByLabel(/^Move to folder/).fill(`/home/${OWNER}/no such folder`);
        await page.getByRole('dialog').getByRole('button', { name: 'Move' }).click();
        await until('missing', async () => ((await fieldMessage(page, 'Move to folder')).message === `There is no such folder. ${hint}` ? true : undefined), 5_000);
        expectErrors(errors, 'listing a missing folder', (e) => e.includes('404'));
        await page.getByLabel(/^Move to folder/).fill(`${workPath}/Album`);
        await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();

        // A whole folder, with its sub-folders.
        await page.locator('input[data-pick="folder"]').setInputFiles(join(local, 'Album'));
        for (const name of ['cover.png', 'diary.txt']) await page.locator(`li[data-upload="${name}"][data-state="done"]`).waitFor({ timeout: 30_000 });
        await page.getByRole('button', { name: 'Open folder Album' }).click();
        await row(page, 'cover.png').waitFor();
        await page.getByRole('button', { name: 'Open folder Day 1' }).click();
        await row(page, 'diary.txt').waitFor();
        const crumbs = page.getByRole('navigation', { name: 'Folder path' });
        assert.deepEqual(await crumbs.getByRole('listitem').allInnerTexts().then((xs) => xs.map((x) => x.replace('/', '').trim())), ['My files', work, 'Album', 'Day 1']);
        await shot('subfolder');
        await crumbs.getByRole('button', { name: work }).click();
        await row(page, 'journal.txt').waitFor();

        await entryAction(page, 'journal.txt', 'Move');
        await page.getByLabel(/^Move to folder/).fill(`${workPath}/Album`);
        await page.getByRole('dialog').getByRole('button', { name: 'Move' }).click();
        await notice(page, `journal.txt was moved to ${workPath}/Album.`);
        await row(page, 'journal.txt').waitFor({ state: 'detached' });

        // Search from the home folder: an empty search is refused beside the field.
        await crumbs.getByRole('button', { name: 'My files' }).click();
        await page.getByRole('button', { name: 'Search', exact: true }).click();
        assert.deepEqual(await fieldMessage(page, 'Search this folder'), { invalid: 'true', message: `Enter a name or part of one. By name, in /home/${OWNER} and every folder inside it.` });
        await page.getByLabel(/^Search this folder/).fill('JOURNAL');
        await page.getByRole('button', { name: 'Search', exact: true }).click();
        await page.getByRole('heading', { name: 'Found for "JOURNAL": 1' }).waitFor();
        await row(page, 'journal.txt').getByText(`in ${workPath}/Album`).waitFor();
        await shot('search');
        await audit('search results');
        await page.getByRole('button', { name: 'Clear' }).click();
        await page.getByRole('heading', { name: 'In this folder' }).waitFor();

        // Delete (confirmed), restore from the trash, delete again and for good.
        await page.getByRole('button', { name: `Open folder ${work}` }).click();
        await entryAction(page, 'tone.wav', 'Delete');
        await page.getByRole('dialog', { name: 'Delete tone.wav?' }).waitFor();
        await shot('delete-confirm', false);
        await audit('delete confirmation');
        await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
        await notice(page, 'tone.wav was moved to the trash.');
        await row(page, 'tone.wav').waitFor({ state: 'detached' });
        await page.getByRole('tab', { name: 'Trash' }).click();
        const trashed = page.locator('li[data-trash="tone.wav"]');
        await trashed.waitFor();
        await shot('trash');
        await audit('trash');
        await trashed.getByRole('button', { name: 'Restore' }).click();
        await notice(page, `tone.wav is back in ${workPath}.`);
        await trashed.waitFor({ state: 'detached' });
        await dfsAs(alice).stat({ volume: VOLUME, path: `${workPath}/tone.wav` });
        const { trash_id } = await dfsAs(alice).delete({ volume: VOLUME, path: `${workPath}/tone.wav` });
        await page.getByRole('tab', { name: 'My files' }).click();
        await page.getByRole('tab', { name: 'Trash' }).click();
        await trashed.getByRole('button', { name: 'Delete for good' }).click();
        await page.getByRole('dialog', { name: 'Delete tone.wav for good?' }).getByRole('button', { name: 'Delete for good' }).click();
        await notice(page, 'tone.wav was deleted for good.');
        assert.ok(!(await dfsAs(alice).trash_list({ volume: VOLUME })).items.some((t) => t.trash_id === trash_id));

        // The quota stops an upload before anything is sent, with the reason beside the upload buttons.
        const usage = await dfsAs(alice).usage({ volume: VOLUME });
        await dfsAs(alice).quota_set({ volume: VOLUME, user: OWNER, quota_bytes: usage.used_bytes + 1024 });
        try {
          await page.getByRole('tab', { name: 'My files' }).click();
          await page.getByRole('button', { name: `Open folder ${work}` }).click();
          writeFileSync(join(local, 'big.bin'), randomBytes(64 * 1024));
          await page.locator('input[data-pick="files"]').setInputFiles(join(local, 'big.bin'));
          await page.locator('[data-problem="upload"]').getByText(/^Not enough space left in your quota: these files need 64 kB, 1 kB is left\.$/).waitFor();
          await shot('quota');
          await audit('quota refusal');
          await assert.rejects(dfsAs(alice).stat({ volume: VOLUME, path: `${workPath}/big.bin` }), (e: KrpcError) => e.code === 'NOT_FOUND');
        } finally {
          await dfsAs(alice).quota_set({ volume: VOLUME, user: OWNER, quota_bytes: null });
        }

        // An upload whose connection breaks resumes from the bytes the zone holds, not from the start: once with the
        // Resume button, and once after a reload, by picking the same file again.
        const MiB8 = 8 * 1024 * 1024;
        const big = randomBytes(2 * MiB8 + 4 * 1024 * 1024 + 777);
        writeFileSync(join(local, 'video.bin'), big);
        const offsets: number[] = [];
        /** Parts from this offset on fail as a reset connection. */
        let cutFrom = Infinity;
        await page.route('**/kapi/dfs/uploads/**', async (route) => {
          const offset = Number(new URL(route.request().url()).searchParams.get('offset'));
          if (offset >= cutFrom) return route.abort('connectionreset');
          offsets.push(offset);
          await route.continue();
        });
        const upload = page.locator('li[data-upload="video.bin"]');
        const interrupted = page.locator('li[data-upload="video.bin"][data-state="interrupted"]');
        cutFrom = 1;
        await page.locator('input[data-pick="files"]').setInputFiles(join(local, 'video.bin'));
        await interrupted.waitFor({ timeout: 60_000 });
        await upload.getByText('Interrupted: the connection broke. Resume continues from what already arrived.').waitFor();
        await shot('upload-interrupted');
        await audit('interrupted upload');
        assert.deepEqual(offsets, [0], 'only the first part got through');
        cutFrom = 2 * MiB8;
        await upload.getByRole('button', { name: 'Resume' }).click();
        await interrupted.waitFor({ timeout: 60_000 });
        assert.deepEqual(offsets, [0, MiB8], 'Resume went on at the second part');
        expectErrors(errors, 'the broken parts and their retries', (e) => e.includes('ERR_CONNECTION_RESET') || e.includes('/kapi/dfs/uploads/'));
        await assert.rejects(dfsAs(alice).stat({ volume: VOLUME, path: `${workPath}/video.bin` }), (e: KrpcError) => e.code === 'NOT_FOUND', 'nothing visible before the commit');
        cutFrom = Infinity;
        await page.reload();
        await row(page, 'photo.png').waitFor();
        await page.locator('input[data-pick="files"]').setInputFiles(join(local, 'video.bin'));
        await page.locator('li[data-upload="video.bin"][data-state="done"]').waitFor({ timeout: 60_000 });
        assert.deepEqual(offsets, [0, MiB8, 2 * MiB8], 'after a reload the same file went on at the third part');
        await page.unroute('**/kapi/dfs/uploads/**');
        assert.equal((await dfsAs(alice).stat({ volume: VOLUME, path: `${workPath}/video.bin` })).content_id, sha(big));

        // Public, and the page in Chinese.
        await page.getByRole('tab', { name: 'Public' }).click();
        await page.getByRole('navigation', { name: 'Folder path' }).getByText('Public').waitFor();
        await page.locator('section[data-state="ready"]').waitFor();
        await shot('public');
        await audit('public folder');
        if (vp.name === 'desktop') {
          await page.getByRole('button', { name: 'Language' }).click();
          await page.getByRole('menuitem', { name: '中文' }).click();
          await page.getByRole('tab', { name: '我的文件' }).click();
          await page.getByRole('button', { name: '上传文件夹' }).waitFor();
          await page.locator('section[data-state="ready"]').waitFor();
          await row(page, work).waitFor();
          await shot('home-zh');
          await audit('files in Chinese');
          await page.getByRole('button', { name: '语言' }).click();
          await page.getByRole('menuitem', { name: 'English' }).click();
          await page.getByRole('tab', { name: 'My files' }).waitFor();
        }
        assertClean();
      } finally {
        await context.close();
        // The next viewport starts from an empty home.
        const a = dfsAs(alice);
        await a.delete({ volume: VOLUME, path: workPath }).then((t) => a.trash_purge({ volume: VOLUME, trash_id: t.trash_id }), () => undefined);
      }
    });
  }
});
