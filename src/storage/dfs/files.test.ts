// Permission checks of the file layer (files.ts) over the real parts: a chunk store, the volume's metadata and the RBAC
// enforcer with the base policy. An operation on a folder acts on everything in it, so it must be allowed on
// everything in it, whatever the folder's own grant says.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { KrpcError, type Principal } from '../../lib/krpc/index.ts';
import { SUBTREE_CHECK_MAX } from './files.ts';
import { NODE, type TestFiles, VOLUME, openTestFiles, session } from './files.suite.ts';
import type { VolumeMeta } from './volume-meta.ts';

// alice is a member of the zone; the apps act for her. photos may read what is right inside Photos (a folder, or a
// file) and no deeper; viewer may read three levels into Photos; tidy may read, create and delete right inside
// Photos; sorter may read and delete all of Photos and create right inside Sorted; halves may read Photos/big/11 and
// its two halves, each whole; cleaner may delete anything in Photos but read only the folder Photos/2024. buckyos-cli
// acts with alice's own rights, which cover her whole home.
const TAIL = `g, alice, user
g2, photos, app
p2, photos, obj://dfs/home/home/alice/Photos/*, read
g2, viewer, app
p2, viewer, obj://dfs/home/home/alice/Photos/*, read
p2, viewer, obj://dfs/home/home/alice/Photos/*/*, read
p2, viewer, obj://dfs/home/home/alice/Photos/*/*/*, read
g2, tidy, app
p2, tidy, obj://dfs/home/home/alice/Photos/*, read|create|delete
g2, sorter, app
p2, sorter, obj://dfs/home/home/alice/Photos/**, read|delete
p2, sorter, obj://dfs/home/home/alice/Sorted/*, create
g2, halves, app
p2, halves, obj://dfs/home/home/alice/Photos/big/11, read
p2, halves, obj://dfs/home/home/alice/Photos/big/11/a/**, read
p2, halves, obj://dfs/home/home/alice/Photos/big/11/b/**, read
g2, cleaner, app
p2, cleaner, obj://dfs/home/home/alice/Photos/**, delete
p2, cleaner, obj://dfs/home/home/alice/Photos/2024, read
`;

const owner = session('alice', 'buckyos-cli');
const photos = session('alice', 'photos');
const viewer = session('alice', 'viewer');
const tidy = session('alice', 'tidy');
const sorter = session('alice', 'sorter');
const halves = session('alice', 'halves');
const cleaner = session('alice', 'cleaner');

function refused(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof KrpcError, `expected a KrpcError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe('permissions on folders (files.ts)', () => {
  let t: TestFiles;
  let meta: VolumeMeta;
  const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
  const store = (path: string) => meta.writeFile(path, { content_id: sha(path), size: 1, chunks: [{ id: sha(path), size: 1 }] }, { user: 'alice' });
  const exists = (path: string) => meta.tryStat(path) !== null;
  /** Checks and then does what the WebDAV and kRPC layers do, the way they do it. */
  const copy = (p: Principal, from: string, to: string, depth: 0 | 'infinity' = 'infinity', overwrite = false) => {
    t.files.checkTransfer(p, 'copy', VOLUME, from, to, { overwrite, depth });
    meta.copy(from, to, { user: p.userId, overwrite, depth });
  };
  const move = (p: Principal, from: string, to: string, overwrite = false) => {
    t.files.checkTransfer(p, 'move', VOLUME, from, to, { overwrite });
    meta.rename(from, to, { user: p.userId, overwrite });
  };
  const remove = (p: Principal, path: string) => {
    t.files.checkRemove(p, VOLUME, path);
    return meta.remove(path, p.userId);
  };

  before(async () => {
    t = await openTestFiles(TAIL);
    meta = t.meta;
    meta.ensureHome('alice');
    for (const d of ['/home/alice/apps', '/home/alice/apps/photos', '/home/alice/apps/viewer', '/home/alice/apps/halves', '/home/alice/apps/cleaner', '/home/alice/Sorted']) {
      meta.mkdir(d, 'alice');
    }
  });
  after(async () => {
    await t.close();
  });
  beforeEach(() => {
    for (const p of ['/home/alice/Photos', '/home/alice/apps/photos/2024', '/home/alice/apps/viewer/2024', '/home/alice/Sorted/2024', '/home/alice/apps/cleaner/2024']) {
      if (exists(p)) meta.remove(p, 'alice');
    }
    meta.emptyTrash();
    meta.mkdir('/home/alice/Photos', 'alice');
    meta.mkdir('/home/alice/Photos/2024', 'alice');
    meta.mkdir('/home/alice/Photos/2024/private', 'alice');
    store('/home/alice/Photos/2024/private/secret.jpg');
    store('/home/alice/Photos/top.jpg');
  });

  it('a copy of a folder needs read on every entry in it, not only on the folder', () => {
    refused(
      () => copy(photos, '/home/alice/Photos/2024', '/home/alice/apps/photos/2024'),
      'PERMISSION_DENIED',
      /^alice \(app photos\) may not read home:\/home\/alice\/Photos\/2024\/private(\/secret\.jpg)?, which is inside home:\/home\/alice\/Photos\/2024$/,
    );
    assert.equal(exists('/home/alice/apps/photos/2024'), false);
    // What the grant does cover: a file right inside, and the folder alone (depth 0).
    copy(photos, '/home/alice/Photos/top.jpg', '/home/alice/apps/photos/top.jpg');
    copy(photos, '/home/alice/Photos/2024', '/home/alice/apps/photos/2024', 0);
    assert.deepEqual(meta.list('/home/alice/apps/photos/2024'), []);
  });

  it('grants that only together cover a folder allow it, checked entry by entry', () => {
    assert.equal(t.rbac.checkBelow({ user: 'alice', app: 'viewer', resource: 'obj://dfs/home/home/alice/Photos/2024', action: 'read' }), false);
    copy(viewer, '/home/alice/Photos/2024', '/home/alice/apps/viewer/2024');
    assert.ok(exists('/home/alice/apps/viewer/2024/private/secret.jpg'));
    // One level deeper than the grants reach, and the same copy is refused.
    meta.mkdir('/home/alice/Photos/2024/private/deeper', 'alice');
    store('/home/alice/Photos/2024/private/deeper/x.jpg');
    meta.remove('/home/alice/apps/viewer/2024', 'alice');
    refused(() => copy(viewer, '/home/alice/Photos/2024', '/home/alice/apps/viewer/2024'), 'PERMISSION_DENIED', /may not read home:\/home\/alice\/Photos\/2024\/private\/deeper\/x\.jpg,/);
  });

  it('a move needs delete on everything it takes away and create wherever each entry lands', () => {
    refused(
      () => move(sorter, '/home/alice/Photos/2024', '/home/alice/Sorted/2024'),
      'PERMISSION_DENIED',
      /^alice \(app sorter\) may not create home:\/home\/alice\/Sorted\/2024\/private(\/secret\.jpg)?, which is inside home:\/home\/alice\/Sorted\/2024$/,
    );
    refused(() => move(tidy, '/home/alice/Photos/2024', '/home/alice/Photos/2023'), 'PERMISSION_DENIED', /may not delete home:\/home\/alice\/Photos\/2024\/private/);
    assert.ok(exists('/home/alice/Photos/2024/private/secret.jpg'));
    assert.equal(exists('/home/alice/Sorted/2024') || exists('/home/alice/Photos/2023'), false);
    move(sorter, '/home/alice/Photos/top.jpg', '/home/alice/Sorted/top.jpg');
    move(owner, '/home/alice/Photos/2024', '/home/alice/Sorted/2024');
    assert.ok(exists('/home/alice/Sorted/2024/private/secret.jpg'));
  });

  it('a move needs read on what it takes too, so a caller that may only delete cannot move a file where it may read', () => {
    refused(() => move(cleaner, '/home/alice/Photos/top.jpg', '/home/alice/apps/cleaner/top.jpg'), 'PERMISSION_DENIED', /^alice \(app cleaner\) may not read home:\/home\/alice\/Photos\/top\.jpg$/);
    refused(
      () => move(cleaner, '/home/alice/Photos/2024', '/home/alice/apps/cleaner/2024'),
      'PERMISSION_DENIED',
      /^alice \(app cleaner\) may not read home:\/home\/alice\/Photos\/2024\/private(\/secret\.jpg)?, which is inside home:\/home\/alice\/Photos\/2024$/,
    );
    assert.ok(exists('/home/alice/Photos/top.jpg') && exists('/home/alice/Photos/2024/private/secret.jpg'));
    assert.equal(exists('/home/alice/apps/cleaner/top.jpg') || exists('/home/alice/apps/cleaner/2024'), false);
    // Removing needs delete alone.
    remove(cleaner, '/home/alice/Photos/top.jpg');
  });

  it('removing a folder, or replacing one, needs delete on everything in it', () => {
    refused(() => remove(tidy, '/home/alice/Photos/2024'), 'PERMISSION_DENIED', /^alice \(app tidy\) may not delete home:\/home\/alice\/Photos\/2024\/private/);
    refused(
      () => move(tidy, '/home/alice/Photos/top.jpg', '/home/alice/Photos/2024', true),
      'PERMISSION_DENIED',
      /may not delete home:\/home\/alice\/Photos\/2024\/private/,
    );
    refused(
      () => copy(tidy, '/home/alice/Photos/top.jpg', '/home/alice/Photos/2024', 'infinity', true),
      'PERMISSION_DENIED',
      /may not delete home:\/home\/alice\/Photos\/2024\/private/,
    );
    assert.ok(exists('/home/alice/Photos/2024/private/secret.jpg') && exists('/home/alice/Photos/top.jpg'));
    assert.deepEqual(meta.trashList(), []);
    meta.remove('/home/alice/Photos/2024/private', 'alice');
    remove(tidy, '/home/alice/Photos/2024');
    remove(tidy, '/home/alice/Photos/top.jpg');
  });

  it('restoring or purging a trashed folder needs the same on everything it holds', () => {
    const item = remove(owner, '/home/alice/Photos/2024');
    refused(
      () => t.files.checkRestore(photos, VOLUME, item, '/home/alice/apps/photos/2024'),
      'PERMISSION_DENIED',
      /may not read home:\/home\/alice\/Photos\/2024\/private(\/secret\.jpg)?, which is inside home:\/home\/alice\/Photos\/2024$/,
    );
    refused(() => t.files.checkPurge(tidy, VOLUME, item), 'PERMISSION_DENIED', /may not delete home:\/home\/alice\/Photos\/2024\/private/);
    t.files.checkRestore(owner, VOLUME, item, '/home/alice/Photos/2024');
    t.files.checkPurge(owner, VOLUME, item);
  });

  it('refuses without a principal', () => {
    refused(() => t.files.checkRemove(null, VOLUME, '/home/alice/Photos'), 'UNAUTHENTICATED', /files need a token/);
  });

  it(`checks at most ${SUBTREE_CHECK_MAX} entries one by one, and refuses a larger folder no single grant covers`, (ctx) => {
    // Folders doubled by copies: level k holds two copies of level k-1, so level 11 holds 6,142 entries, level 12 12,286.
    meta.mkdir('/home/alice/Photos/big', 'alice');
    meta.mkdir('/home/alice/Photos/big/0', 'alice');
    store('/home/alice/Photos/big/0/f');
    for (let k = 1; k <= 12; k++) {
      meta.mkdir(`/home/alice/Photos/big/${k}`, 'alice');
      meta.copy(`/home/alice/Photos/big/${k - 1}`, `/home/alice/Photos/big/${k}/a`, { user: 'alice' });
      meta.copy(`/home/alice/Photos/big/${k - 1}`, `/home/alice/Photos/big/${k}/b`, { user: 'alice' });
    }
    assert.equal(meta.below('/home/alice/Photos/big/12', 20_000).paths.length, 12_286);
    assert.throws(
      () => copy(viewer, '/home/alice/Photos/big/12', '/home/alice/apps/viewer/big'),
      (err: unknown) => {
        assert.ok(err instanceof KrpcError && err.code === 'PERMISSION_DENIED', String(err));
        assert.equal(
          err.message,
          `alice (app viewer) holds no grant to read all of home:/home/alice/Photos/big/12 and below, and home:/home/alice/Photos/big/12 holds more than ${SUBTREE_CHECK_MAX} entries, too many to check one by one`,
        );
        assert.deepEqual(err.data, { reason: 'SUBTREE_TOO_LARGE', max_entries: SUBTREE_CHECK_MAX });
        return true;
      },
    );
    // Under the bound, grants that only together cover the folder: every entry is checked, and all are allowed.
    const started = performance.now();
    t.files.checkTransfer(halves, 'copy', VOLUME, '/home/alice/Photos/big/11', '/home/alice/apps/halves/big', { overwrite: false });
    ctx.diagnostic(`6,142 entries read and checked one by one in ${(performance.now() - started).toFixed(1)} ms`);
    // A grant that covers the whole folder needs no walk, whatever its size.
    t.files.checkTransfer(owner, 'copy', VOLUME, '/home/alice/Photos/big/12', '/home/alice/Photos/big/copy', { overwrite: false });
  });
});

// alice and bob are members of the zone, carol an admin; all through the CLI, which acts with their own rights. In
// alice's Inbox, dropper may only create files (an upload drop) and editor may only write over them.
const SHARED_TAIL = `g, alice, user
g, bob, user
g, carol, admin
g2, dropper, app
p2, dropper, obj://dfs/home/home/alice/Inbox/*, create
g2, editor, app
p2, editor, obj://dfs/home/home/alice/Inbox/*, write
`;

describe('the shared /public folder, the volume\'s own folders, and writes that race (files.ts)', () => {
  let t: TestFiles;
  let meta: VolumeMeta;
  const [alice, bob, carol] = ['alice', 'bob', 'carol'].map((u) => session(u, 'buckyos-cli'));
  const kernel: Principal = { userId: 'dfs', appId: 'dfs', kind: 'service', expiresAt: 0, deviceName: NODE, deviceRole: 'core' };
  const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
  const store = (path: string, user: string, tag = path) =>
    meta.writeFile(path, { content_id: sha(tag), size: tag.length, chunks: [{ id: sha(tag), size: tag.length }] }, { user });
  const exists = (path: string) => meta.tryStat(path) !== null;
  const move = (p: Principal, from: string, to: string, overwrite = false) => {
    t.files.checkTransfer(p, 'move', VOLUME, from, to, { overwrite });
    return meta.rename(from, to, { user: p.userId, overwrite });
  };
  const copy = (p: Principal, from: string, to: string, overwrite = false) => {
    t.files.checkTransfer(p, 'copy', VOLUME, from, to, { overwrite });
    return meta.copy(from, to, { user: p.userId, overwrite });
  };
  const remove = (p: Principal, path: string) => {
    t.files.checkRemove(p, VOLUME, path);
    return meta.remove(path, p.userId);
  };
  const bytes = async function* (text: string, gate?: Promise<void>) {
    yield Buffer.from(text.slice(0, 1));
    await gate;
    yield Buffer.from(text.slice(1));
  };

  before(async () => {
    t = await openTestFiles(SHARED_TAIL);
    meta = t.meta;
    for (const u of ['alice', 'bob', 'carol']) meta.ensureHome(u);
  });
  after(async () => {
    await t.close();
  });
  beforeEach(() => {
    for (const e of [...meta.list('/public'), ...meta.list('/home/alice'), ...meta.list('/home/bob')]) meta.remove(e.path, 'kernel');
    meta.emptyTrash();
    meta.mkdir('/public/album', 'alice');
    store('/public/album/wedding.jpg', 'alice');
    store('/public/readme.txt', 'alice');
    store('/public/bob.txt', 'bob');
  });

  it('in /public only an entry\'s owner may move, rename, delete or replace it, and write into it stays open', () => {
    const notOwner = (fn: () => unknown, message: RegExp) => {
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof KrpcError && err.code === 'PERMISSION_DENIED', String(err));
        assert.match(err.message, message);
        assert.deepEqual(err.data, { reason: 'NOT_OWNER', owner: 'alice' });
        return true;
      });
    };
    notOwner(() => move(bob, '/public/readme.txt', '/home/bob/mine.txt'), /^bob \(app buckyos-cli\) may not move home:\/public\/readme\.txt, which alice owns; in \/public only an entry's owner or an admin may move, rename or delete it$/);
    notOwner(() => move(bob, '/public/readme.txt', '/public/renamed.txt'), /may not move home:\/public\/readme\.txt, which alice owns/);
    notOwner(() => remove(bob, '/public/readme.txt'), /may not delete home:\/public\/readme\.txt, which alice owns/);
    notOwner(() => copy(bob, '/public/bob.txt', '/public/readme.txt', true), /may not replace home:\/public\/readme\.txt, which alice owns/);
    notOwner(() => move(bob, '/public/bob.txt', '/public/album', true), /may not replace home:\/public\/album, which alice owns/);
    // A folder of his own holding someone else's file goes only with it.
    meta.mkdir('/public/bobs', 'bob');
    store('/public/bobs/from-alice.txt', 'alice');
    notOwner(() => remove(bob, '/public/bobs'), /may not delete home:\/public\/bobs: alice owns home:\/public\/bobs\/from-alice\.txt in it;/);
    notOwner(() => move(bob, '/public/bobs', '/home/bob/bobs'), /may not move home:\/public\/bobs: alice owns home:\/public\/bobs\/from-alice\.txt in it;/);
    assert.ok(['/public/readme.txt', '/public/album/wedding.jpg', '/public/bobs/from-alice.txt', '/public/bob.txt'].every(exists));
    assert.deepEqual(meta.trashList(), []);
    // Writing into a shared file is allowed, as is moving a file over it, which writes it: it stays alice's.
    t.files.checkPut(bob, VOLUME, '/public/readme.txt', true);
    const r = move(bob, '/public/bob.txt', '/public/readme.txt', true);
    assert.deepEqual([r.entry.owner, r.entry.content_id, meta.versions('/public/readme.txt').length], ['alice', sha('/public/bob.txt'), 2]);
    // His own he may move and delete; an admin and the kernel may take anyone's.
    store('/public/bob2.txt', 'bob');
    move(bob, '/public/bob2.txt', '/home/bob/bob2.txt');
    remove(bob, '/home/bob/bob2.txt');
    t.files.checkRemove(kernel, VOLUME, '/public/bobs');
    move(carol, '/public/readme.txt', '/public/album/readme.txt');
    remove(carol, '/public/bobs');
  });

  it('a trashed entry of /public is restored or purged only by its owner', () => {
    const item = remove(alice, '/public/album');
    for (const to of ['/home/bob/album', '/public/album']) {
      assert.throws(() => t.files.checkRestore(bob, VOLUME, item, to), /^KrpcError: bob \(app buckyos-cli\) may not restore home:\/public\/album, which alice owns;/);
    }
    assert.throws(() => t.files.checkPurge(bob, VOLUME, item), /may not purge home:\/public\/album, which alice owns;/);
    t.files.checkPurge(alice, VOLUME, item);
    t.files.checkRestore(alice, VOLUME, item, '/home/alice/album');
    t.files.checkPurge(carol, VOLUME, item);
  });

  it('the root, /home, /public and each home folder are moved, renamed or deleted only by an admin or the kernel', () => {
    const own = (fn: () => unknown, message: RegExp) => {
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof KrpcError && err.code === 'PERMISSION_DENIED', String(err));
        assert.match(err.message, message);
        assert.deepEqual(err.data, { reason: 'SYSTEM_FOLDER' });
        return true;
      });
    };
    own(() => move(bob, '/public', '/home/bob/all-public'), /^bob \(app buckyos-cli\) may not move home:\/public: it is one of the volume's own folders \(\/, \/home, \/public, \/home\/<user>\), which only an admin may move, rename or delete$/);
    own(() => move(bob, '/home/bob', '/public/bob-home'), /may not move home:\/home\/bob: it is one of the volume's own folders/);
    own(() => remove(bob, '/home/bob'), /may not delete home:\/home\/bob: it is one/);
    own(() => remove(bob, '/public'), /may not delete home:\/public: it is one/);
    own(() => move(bob, '/public/bob.txt', '/public', true), /may not replace home:\/public: it is one/);
    assert.ok(exists('/public/bob.txt') && exists('/home/bob'));
    for (const p of [kernel, carol]) {
      t.files.checkRemove(p, VOLUME, '/home/bob');
      t.files.checkTransfer(p, 'move', VOLUME, '/public', '/home/carol/public', { overwrite: false });
    }
    move(carol, '/home/bob', '/home/bob-old');
    move(carol, '/home/bob-old', '/home/bob');
  });

  it('a write checked as a create, that finds a file at its commit, is checked again as a write of it', async () => {
    meta.mkdir('/home/alice/Inbox', 'alice');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const dropped = t.files.write(VOLUME, '/home/alice/Inbox/report.pdf', bytes('from dropper', gate), session('alice', 'dropper'));
    // Once write() returned its promise, its permission was checked: nothing was there.
    const saved = await t.files.write(VOLUME, '/home/alice/Inbox/report.pdf', bytes('ALICE'), alice);
    assert.equal(saved.created, true);
    release();
    await assert.rejects(dropped, (err: unknown) => err instanceof KrpcError && err.code === 'PERMISSION_DENIED' && /^alice \(app dropper\) may not write home:\/home\/alice\/Inbox\/report\.pdf$/.test(err.message));
    assert.deepEqual(meta.versions('/home/alice/Inbox/report.pdf').map((v) => v.version_id), [saved.entry.version_id]);
    // One allowed both ways commits, and says it replaced a file.
    let release2!: () => void;
    const gate2 = new Promise<void>((r) => (release2 = r));
    const both = t.files.write(VOLUME, '/home/alice/Inbox/other.pdf', bytes('first', gate2), alice);
    await t.files.write(VOLUME, '/home/alice/Inbox/other.pdf', bytes('second'), alice);
    release2();
    assert.equal((await both).created, false);
    assert.equal(meta.versions('/home/alice/Inbox/other.pdf').length, 2);
  });

  it('a write checked as a write, that finds the file gone at its commit, is checked again as a create', async () => {
    meta.mkdir('/home/alice/Inbox', 'alice');
    store('/home/alice/Inbox/report.pdf', 'alice');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const edited = t.files.write(VOLUME, '/home/alice/Inbox/report.pdf', bytes('from editor', gate), session('alice', 'editor'));
    meta.remove('/home/alice/Inbox/report.pdf', 'alice');
    release();
    await assert.rejects(edited, (err: unknown) => err instanceof KrpcError && err.code === 'PERMISSION_DENIED' && /may not write home:\/home\/alice\/Inbox\/report\.pdf$/.test(err.message));
    assert.equal(exists('/home/alice/Inbox/report.pdf'), false);
  });
});
