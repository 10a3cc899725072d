// The dfs kRPC methods that act on whole folders (rename, copy, delete, restore, trash_purge), called over HTTP on an
// endpoint made of the real parts: each must be allowed on everything in the folder, not only on the folder.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dfsApi } from '../../lib/api/dfs.ts';
import { type Client, KrpcError, createClient } from '../../lib/krpc/index.ts';
import { until } from '../../../test/support/wait.ts';
import { dfsFaces } from './endpoint.suite.ts';
import { type TestFiles, VOLUME, openTestFiles, session } from './files.suite.ts';
import { PURGE_BATCH } from './volume-meta.ts';

const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

// photos may read what is right inside alice's Photos folder and no deeper; tidy may also create and delete there.
// bob is another member of the zone.
const TAIL = `g, alice, user
g, bob, user
g2, photos, app
p2, photos, obj://dfs/home/home/alice/Photos/*, read
g2, tidy, app
p2, tidy, obj://dfs/home/home/alice/Photos/*, read|create|delete
`;

describe('dfs kRPC methods on folders (service.ts)', () => {
  let t: TestFiles;
  let server: Server;
  /** A client whose token stands for `user` (alice unless named) using `app`. */
  let as: (app: string, user?: string) => Client<typeof dfsApi.methods>;

  before(async () => {
    t = await openTestFiles(TAIL);
    t.meta.ensureHome('alice');
    t.meta.ensureHome('bob');
    t.meta.mkdir('/home/alice/apps', 'alice');
    t.meta.mkdir('/home/alice/apps/photos', 'alice');
    // A token here is `<user>:<app>`.
    const { endpoint } = dfsFaces(t, async (token) => session(token.split(':')[0]!, token.split(':')[1]!));
    server = createServer((req, res) => void endpoint.handle(req, res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    as = (app, user = 'alice') => createClient(dfsApi, { baseUrl, token: `${user}:${app}` });
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await t.close();
  });
  beforeEach(() => {
    if (t.meta.tryStat('/home/alice/Photos')) t.meta.remove('/home/alice/Photos', 'alice');
    t.meta.emptyTrash();
    t.meta.mkdir('/home/alice/Photos', 'alice');
    t.meta.mkdir('/home/alice/Photos/2024', 'alice');
    t.meta.mkdir('/home/alice/Photos/2024/private', 'alice');
  });

  async function denied(call: Promise<unknown>, message: RegExp): Promise<void> {
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof KrpcError, String(err));
      assert.equal(err.code, 'PERMISSION_DENIED', err.message);
      assert.match(err.message, message);
      return true;
    });
  }

  it('refuses mkdir -p of a path that is a file, and an upload under a file before any byte is sent', async () => {
    t.meta.writeFile('/home/alice/Photos/note.txt', { content_id: 'sha256:' + 'a'.repeat(64), size: 0, chunks: [] }, { user: 'alice' });
    const c = as('control-panel');
    await assert.rejects(c.mkdir({ volume: VOLUME, path: '/home/alice/Photos/note.txt', parents: true }), (e: unknown) => e instanceof KrpcError && e.code === 'ALREADY_EXISTS' && /is a file, not a folder/.test(e.message));
    await assert.rejects(c.upload_begin({ volume: VOLUME, path: '/home/alice/Photos/note.txt/x.bin', size: 10, overwrite: false }), (e: unknown) => e instanceof KrpcError && e.code === 'FAILED_PRECONDITION' && /is a file, not a folder/.test(e.message));
  });

  it('copy, rename and delete of a folder are refused when something in it is not allowed, and change nothing', async () => {
    const base = { volume: VOLUME };
    await denied(as('photos').copy({ ...base, from: '/home/alice/Photos/2024', to: '/home/alice/apps/photos/2024' }), /may not read home:\/home\/alice\/Photos\/2024\/private/);
    await denied(as('tidy').rename({ ...base, from: '/home/alice/Photos/2024', to: '/home/alice/Photos/2023' }), /may not delete home:\/home\/alice\/Photos\/2024\/private/);
    await denied(as('tidy').delete({ ...base, path: '/home/alice/Photos/2024' }), /may not delete home:\/home\/alice\/Photos\/2024\/private/);
    assert.deepEqual((await as('buckyos-cli').list({ ...base, path: '/home/alice/Photos/2024' })).entries.map((e) => e.path), ['/home/alice/Photos/2024/private']);
    assert.equal(t.meta.tryStat('/home/alice/apps/photos/2024'), null);
    assert.deepEqual(t.meta.trashList(), []);
  });

  it('restore and trash_purge of a folder are refused when something it holds is not allowed', async () => {
    const { trash_id } = await as('buckyos-cli').delete({ volume: VOLUME, path: '/home/alice/Photos/2024' });
    await denied(as('photos').restore({ volume: VOLUME, trash_id, to: '/home/alice/apps/photos/2024' }), /may not read home:\/home\/alice\/Photos\/2024\/private/);
    await denied(as('tidy').trash_purge({ volume: VOLUME, trash_id }), /may not delete home:\/home\/alice\/Photos\/2024\/private/);
    assert.deepEqual(t.meta.trashList().map((i) => i.trash_id), [trash_id]);
    const back = await as('buckyos-cli').restore({ volume: VOLUME, trash_id });
    assert.equal(back.path, '/home/alice/Photos/2024');
  });

  it('another user may not take a file of /public into their home, nor /public itself', async () => {
    t.meta.writeFile('/public/readme.txt', { content_id: `sha256:${'b'.repeat(64)}`, size: 0, chunks: [] }, { user: 'alice' });
    const bob = as('buckyos-cli', 'bob');
    await denied(bob.rename({ volume: VOLUME, from: '/public/readme.txt', to: '/home/bob/mine.txt' }), /may not move home:\/public\/readme\.txt, which alice owns/);
    await denied(bob.delete({ volume: VOLUME, path: '/public/readme.txt' }), /may not delete home:\/public\/readme\.txt, which alice owns/);
    await denied(bob.rename({ volume: VOLUME, from: '/public', to: '/home/bob/all-public' }), /may not move home:\/public: it is one of the volume's own folders/);
    assert.equal((await as('buckyos-cli').stat({ volume: VOLUME, path: '/public/readme.txt' })).owner, 'alice');
  });

  it('a move that would put a path past the limit is refused with the reason a path that long is', async () => {
    let deep = '/home/alice/Photos/2024';
    for (let i = 0; i < 16; i++) t.meta.mkdir((deep += `/${'d'.repeat(250)}`), 'alice');
    t.meta.mkdir(`${deep}/${'e'.repeat(4096 - Buffer.byteLength(deep) - 1)}`, 'alice');
    await assert.rejects(as('buckyos-cli').rename({ volume: VOLUME, from: '/home/alice/Photos/2024', to: '/home/alice/Photos/20245' }), (err: unknown) => {
      assert.ok(err instanceof KrpcError && err.code === 'INVALID_PARAMS', String(err));
      assert.deepEqual(err.data, { reason: 'path_too_long' });
      return true;
    });
    assert.ok(t.meta.tryStat('/home/alice/Photos/2024'));
  });

  it('restore and trash_purge find their item by its id, never listing the trash; a folder larger than a purge batch leaves the trash at once and is deleted after', async () => {
    const c = as('buckyos-cli');
    const file = (path: string, size: number) =>
      t.meta.writeFile(path, { content_id: sha(path), size, chunks: [{ id: sha(`chunk ${path}`), size }] }, { user: 'alice' });
    await Promise.all(Array.from({ length: 40 }, (_, i) => t.meta.grouped(() => t.meta.remove(file(`/home/alice/Photos/n${i}`, 1).entry.path, 'alice'))));
    t.meta.mkdir('/home/alice/Photos/big', 'alice');
    await Promise.all(Array.from({ length: PURGE_BATCH + 20 }, (_, i) => t.meta.grouped(() => file(`/home/alice/Photos/big/${i}`, 10))));
    const big = (await c.delete({ volume: VOLUME, path: '/home/alice/Photos/big' })).trash_id;
    const small = (await c.delete({ volume: VOLUME, path: '/home/alice/Photos/2024' })).trash_id;
    const usage = t.meta.usage('alice');
    assert.equal(usage, 40 + (PURGE_BATCH + 20) * 10);

    const trashList = t.meta.trashList;
    t.meta.trashList = () => assert.fail('the whole trash was listed');
    try {
      assert.equal((await c.restore({ volume: VOLUME, trash_id: small })).path, '/home/alice/Photos/2024');
      assert.deepEqual(await c.trash_purge({ volume: VOLUME, trash_id: big }), { purged: true });
      await assert.rejects(c.restore({ volume: VOLUME, trash_id: big }), /no trash item/);
      await assert.rejects(c.trash_purge({ volume: VOLUME, trash_id: 'x' }), /no trash item x in home/);
    } finally {
      t.meta.trashList = trashList;
    }
    assert.equal(t.meta.trashItem(big), null);
    await until('the purged folder is deleted', () => (t.meta.purgesLeft ? undefined : true), 30_000, 20);
    assert.equal(t.meta.usage('alice'), 40);
    assert.equal((await c.trash_list({ volume: VOLUME })).items.length, 40);
  });
});

describe('quotas and disk upkeep: who may (service.ts)', () => {
  let t: TestFiles;
  let server: Server;
  let as: (token: string) => Client<typeof dfsApi.methods>;
  // Root's CLI on a device calls with that device's kernel token; the device's role bounds it.
  const kernelOn = (role: 'core' | 'storage') => ({ userId: 'node-daemon', appId: 'buckyos-cli', kind: 'service' as const, expiresAt: 0, deviceName: `${role}1`, deviceRole: role });

  before(async () => {
    t = await openTestFiles('g, bob, user\n');
    t.meta.ensureHome('bob');
    const { endpoint } = dfsFaces(t, async (token) => (token === 'core' || token === 'storage' ? kernelOn(token) : session(token, 'buckyos-cli')));
    server = createServer((req, res) => void endpoint.handle(req, res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    as = (token) => createClient(dfsApi, { baseUrl, token });
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await t.close();
  });

  it('sets quotas and reads others\' usage for an admin or a core device\'s kernel, never a storage device\'s', async () => {
    const refused = (e: unknown) => e instanceof KrpcError && e.code === 'PERMISSION_DENIED';
    await assert.rejects(as('storage').quota_set({ volume: VOLUME, user: 'bob', quota_bytes: 0 }), refused);
    await assert.rejects(as('storage').usage({ volume: VOLUME, user: 'bob' }), refused);
    await assert.rejects(as('bob').quota_set({ volume: VOLUME, user: 'bob', quota_bytes: 0 }), refused);
    assert.equal(t.meta.quota('bob'), null, 'nothing was set');
    await as('core').quota_set({ volume: VOLUME, user: 'bob', quota_bytes: 1000 });
    assert.equal((await as('core').usage({ volume: VOLUME, user: 'bob' })).quota_bytes, 1000);
    // Scrub is upkeep of the disks, which root on any device may start.
    await as('storage').scrub({});
    await assert.rejects(as('bob').scrub({}), refused);
  });
});
