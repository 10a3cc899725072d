// Resumable upload spools on a real directory: an id names the volume whose primary holds the spool (what routes an
// upload's calls and parts there), ids in any other form are refused naming the form, and a spool is found only by
// its own id, for the user and app that began it.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KrpcError, type Principal } from '../../lib/krpc/index.ts';
import { UPLOAD_TTL_MS, Uploads, uploadVolume } from './uploads.ts';

const alice: Principal = { userId: 'alice', appId: 'buckyos-cli', kind: 'session', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
const begin = (u: Uploads, volume: string, size: number) => u.create({ volume, path: '/home/alice/a.bin', size, user: 'alice', app: 'buckyos-cli', overwrite: true });
const parts = async function* (...bufs: string[]) {
  for (const b of bufs) yield Buffer.from(b);
};
const collect = async (it: AsyncIterable<Buffer>) => {
  const out: Buffer[] = [];
  for await (const b of it) out.push(b);
  return Buffer.concat(out).toString();
};
const code = (c: string, message?: RegExp) => (err: unknown) => err instanceof KrpcError && err.code === c && (!message || message.test(err.message));

describe('upload spools (uploads.ts)', () => {
  let dir: string;
  let uploads: Uploads;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uploads-'));
    uploads = new Uploads(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('gives ids that name the volume, which routes the upload to its primary', () => {
    const a = begin(uploads, 'home', 10);
    const b = begin(uploads, 'photos-2', 10);
    assert.match(a.id, /^home\.[A-Za-z0-9_-]{22}$/);
    assert.match(b.id, /^photos-2\.[A-Za-z0-9_-]{22}$/);
    assert.equal(uploadVolume(a.id), 'home');
    assert.equal(uploadVolume(b.id), 'photos-2');
    assert.notEqual(a.id.slice(5), begin(uploads, 'home', 10).id.slice(5), 'each upload its own random part');
  });

  it('refuses ids in any other form, naming the form, before any file is touched', () => {
    const r = 'A'.repeat(22);
    for (const id of ['', r, `.${r}`, `Home.${r}`, `1home.${r}`, `home.${r.slice(1)}`, `home.${r}A`, `home.${r.slice(2)}/.`, `home..${r}`, `home.${r}\n`, `${'v'.repeat(33)}.${r}`]) {
      assert.throws(() => uploadVolume(id), code('INVALID_PARAMS', /is not one upload_begin gives \(<volume>\.<22 characters>\)/), JSON.stringify(id));
      assert.throws(() => uploads.get(id, alice), code('INVALID_PARAMS'), JSON.stringify(id));
    }
    assert.throws(() => uploadVolume(`x.${'A'.repeat(200)}`), (err: Error) => err.message.length < 200, 'a long id is cut short in the message');
  });

  it('appends parts at the offset it holds, survives a restart, and reads back whole', async () => {
    const u = begin(uploads, 'home', 11);
    assert.equal(await uploads.append(u.id, alice, 0, parts('hello', ' '), 6), 6);
    await assert.rejects(uploads.append(u.id, alice, 3, parts('x'), 1), (err: KrpcError) => err.code === 'CONFLICT' && (err.data as { offset: number }).offset === 6);
    await assert.rejects(uploads.append(u.id, alice, 6, parts('world!'), 6), code('INVALID_PARAMS', /past the declared size 11/));
    const again = new Uploads(dir);
    assert.equal(again.get(u.id, alice).offset, 6);
    assert.equal(await again.append(u.id, alice, 6, parts('world'), null), 11);
    assert.equal(await collect(again.read(u.id)), 'hello world');
    again.drop(u.id);
    assert.throws(() => again.get(u.id, alice), code('NOT_FOUND', /committed, aborted or has expired/));
  });

  it('finds a spool only by its own id, for the user and app that began it', () => {
    const u = begin(uploads, 'home', 10);
    const key = u.id.slice('home.'.length);
    assert.throws(() => uploads.get(`photos.${key}`, alice), code('NOT_FOUND'), 'the random part under another volume is not the upload');
    assert.throws(() => uploads.get(u.id, { ...alice, userId: 'bob' }), code('NOT_FOUND'));
    assert.throws(() => uploads.get(u.id, { ...alice, appId: 'other-app' }), code('NOT_FOUND'));
    assert.equal(uploads.get(u.id, alice).volume, 'home');
  });

  it('sweeps expired spools, also those whose records no id can name', () => {
    const kept = begin(uploads, 'home', 10);
    const old = 'B'.repeat(22);
    writeFileSync(join(dir, `${old}.json`), JSON.stringify({ id: old, expires_at: Date.now() - 1 }));
    writeFileSync(join(dir, `${old}.part`), 'x');
    assert.equal(uploads.sweep(), 1);
    assert.deepEqual(readdirSync(dir).sort(), [`${kept.id.slice(5)}.json`, `${kept.id.slice(5)}.part`].sort());
    assert.equal(uploads.sweep(Date.now() + UPLOAD_TTL_MS + 1), 1);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('sweeps the temporary file of a begin a crash cut short, and answers NOT_FOUND for a record whose spool is gone', () => {
    writeFileSync(join(dir, `${'C'.repeat(22)}.json.tmp-123-456`), '{');
    assert.equal(uploads.sweep(), 0);
    assert.deepEqual(readdirSync(dir), []);
    const u = begin(uploads, 'home', 10);
    rmSync(join(dir, `${u.id.slice(5)}.part`));
    assert.throws(() => uploads.get(u.id, alice), code('NOT_FOUND', /no such upload/));
  });
});
