// Home folders following the zone's accounts (homes.ts), made of the real parts: the accounts as verify-hub records
// them in a real system-config store (SQLite), a real volume's metadata, and the dfs kRPC methods over HTTP on the
// node's test file layer (files.suite.ts), as a user of the account sees them.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dfsApi } from '../../lib/api/dfs.ts';
import { nodePaths } from '../../lib/config/node-config.ts';
import { createClient } from '../../lib/krpc/index.ts';
import { openStore } from '../../kernel/system-config/main.ts';
import { dfsFaces } from './endpoint.suite.ts';
import { type TestFiles, VOLUME, openTestFiles, session } from './files.suite.ts';
import { AccountReader, syncHomes } from './homes.ts';
import { RETIRED_HOMES_DIR, SYSTEM_OWNER } from './volume-meta.ts';

const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

describe('home folders follow the zone\'s accounts (homes.ts)', () => {
  let root: string;
  let store: Awaited<ReturnType<typeof openStore>>;
  let t: TestFiles;
  let server: Server;
  let reader: AccountReader;
  let as: (user: string) => ReturnType<typeof createClient<typeof dfsApi.methods>>;

  /** An account record as verify-hub writes it (user_create). */
  const createAccount = (name: string, record: Record<string, unknown> = { id: randomUUID() }) =>
    store.set(`users/${name}/settings`, JSON.stringify({ name, role: 'user', state: 'active', created_at: 1_700_000_000, ...record }));
  /** What user_delete does to the account's records. */
  const deleteAccount = (name: string) => store.delete(`users/${name}/settings`);
  /** One round of dfs following the accounts (main.ts does one every few seconds). */
  const round = async () => syncHomes(t.meta, await reader.read());
  const put = (path: string, size: number, user: string) =>
    t.meta.writeFile(path, { content_id: sha(`${path}:${size}`), size, chunks: [{ id: sha(`chunk ${path}`), size }] }, { user });

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'dfs-homes-'));
    store = await openStore({ type: 'sqlite' }, nodePaths(root));
    reader = new AccountReader({
      // What system-config's list answers: at most `limit` keys, and whether the store held more.
      list: async ({ prefix, limit = 1000 }) => {
        const r = await store.list(prefix, limit + 1);
        return { entries: r.entries.slice(0, limit), more: r.entries.length > limit };
      },
      get: async ({ key }) => (await store.get(key)) ?? { value: null, revision: 0 },
    });
    t = await openTestFiles('');
    // RBAC follows the same records in a zone (config-sync.ts); here the test gives the roles.
    const { endpoint } = dfsFaces(t, async (token) => session(token, 'buckyos-cli'));
    server = createServer((req, res) => void endpoint.handle(req, res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    as = (user) => createClient(dfsApi, { baseUrl, token: user });
    await createAccount('alice');
    t.rbac.setUserRole('alice', 'admin');
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await t.close();
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('a later account of a deleted user\'s name sees none of their files, trash or usage; an admin finds them set aside', async () => {
    await createAccount('bob');
    t.rbac.setUserRole('bob', 'user');
    assert.deepEqual((await round()).made, ['alice', 'bob']);
    put('/home/bob/medical.pdf', 1234, 'bob');
    t.meta.setQuota('bob', 5000);
    put('/home/bob/old-trash.pdf', 100, 'bob');
    t.meta.remove('/home/bob/old-trash.pdf', 'bob');

    await deleteAccount('bob');
    t.rbac.removeUser('bob');
    const r = await round();
    assert.equal(r.retired.length, 1);
    const aside = r.retired[0]!.to!;
    assert.match(aside, new RegExp(`^${RETIRED_HOMES_DIR}/bob-\\d{8}T\\d{6}Z$`));
    assert.deepEqual(r.made, []);
    assert.equal(t.meta.tryStat('/home/bob'), null);

    await createAccount('bob');
    t.rbac.setUserRole('bob', 'user');
    assert.deepEqual((await round()).made, ['bob']);
    const bob = as('bob');
    assert.deepEqual((await bob.list({ volume: VOLUME, path: '/home/bob' })).entries, []);
    assert.deepEqual((await bob.trash_list({ volume: VOLUME })).items, []);
    assert.deepEqual(await bob.usage({ volume: VOLUME }), { user: 'bob', used_bytes: 0, quota_bytes: null });
    await assert.rejects(bob.list({ volume: VOLUME, path: aside }), /bob \(app buckyos-cli\) may not read/);

    const admin = as('alice');
    assert.deepEqual((await admin.list({ volume: VOLUME, path: aside })).entries.map((e) => [e.path, e.owner, e.size]), [[`${aside}/medical.pdf`, SYSTEM_OWNER, 1234]]);
    const trashed = (await admin.trash_list({ volume: VOLUME })).items;
    assert.deepEqual(trashed.map((i) => i.path), [`${aside}/old-trash.pdf`]);
    assert.equal((await admin.restore({ volume: VOLUME, trash_id: trashed[0]!.trash_id })).path, `${aside}/old-trash.pdf`);
    // Nothing changes while the accounts stay as they are.
    const seq = t.meta.lastSeq;
    assert.deepEqual(await round(), { made: [], retired: [], failed: [] });
    assert.equal(t.meta.lastSeq, seq);
  });

  it('a name deleted and made again between two rounds is told apart by the account id', async () => {
    await createAccount('bob');
    await round();
    put('/home/bob/a', 10, 'bob');
    await deleteAccount('bob');
    await createAccount('bob');
    const r = await round();
    assert.deepEqual([r.retired.map((x) => x.user), r.made], [['bob'], ['bob']]);
    assert.deepEqual(t.meta.list('/home/bob'), []);
    assert.equal(t.meta.usage('bob'), 0);
  });

  it('accounts from before ids are told apart by their creation time; homes from before accounts were recorded are taken as theirs', async () => {
    t.meta.ensureHome('carol');
    put('/home/carol/kept', 5, 'carol');
    await createAccount('carol', { created_at: 1_600_000_000 });
    assert.deepEqual((await round()).made, ['alice', 'carol']);
    assert.equal(t.meta.homeAccount('carol'), 'created:1600000000');
    assert.equal(t.meta.usage('carol'), 5, 'the existing home is the account\'s');
    await deleteAccount('carol');
    await createAccount('carol', { created_at: 1_600_000_001 });
    assert.deepEqual((await round()).retired.map((x) => x.user), ['carol']);
    assert.deepEqual(t.meta.list('/home/carol'), []);
  });

  it('leaves homes alone when the zone lists no account, or a user\'s record cannot be read; a folder in /home named like no account is set aside', async () => {
    await createAccount('bob');
    await createAccount('dave');
    await round();
    put('/home/bob/a', 10, 'bob');
    t.meta.mkdir('/home/photos', 'alice');
    t.meta.mkdir(`${RETIRED_HOMES_DIR}`, SYSTEM_OWNER);

    await store.set('users/bob/settings', '{"name":"bob"}');
    const problems = (await reader.read()).problems;
    assert.deepEqual(problems.map((p) => p.user), ['bob']);
    assert.deepEqual((await reader.read()).problems, [], 'a problem is reported once');
    const r = await round();
    assert.deepEqual(r.retired.map((x) => x.user), ['photos']);
    assert.equal(t.meta.stat('/home/bob/a').owner, 'bob');

    for (const name of ['alice', 'bob', 'dave']) await deleteAccount(name);
    assert.deepEqual(await round(), { made: [], retired: [], failed: [] });
    assert.ok(t.meta.tryStat('/home/dave'));
  });

  it('reads every account however many keys apps keep under users/, listing crowded prefixes narrower', async () => {
    await createAccount('bob');
    await createAccount('zoe');
    await round();
    put('/home/zoe/a', 10, 'zoe');
    for (let i = 0; i < 6; i++) await store.set(`users/bob/apps/notes/settings/k${i}`, '1');
    let listings = 0;
    // Pages of four keys: users/ is cut, and so is users/b; each narrower listing says whether it was.
    const paged = new AccountReader({
      list: async ({ prefix }) => {
        listings++;
        const r = await store.list(prefix, 5);
        return { entries: r.entries.slice(0, 4), more: r.entries.length > 4 };
      },
      get: async ({ key }) => (await store.get(key)) ?? { value: null, revision: 0 },
    });
    const zone = await paged.read();
    assert.deepEqual([...zone.accounts.keys()].sort(), ['alice', 'bob', 'zoe']);
    assert.ok(listings > 2, 'the cut listings were split');
    assert.deepEqual(syncHomes(t.meta, zone).retired, [], 'zoe, past the first page, is not taken for deleted');
    assert.equal(t.meta.stat('/home/zoe/a').owner, 'zoe');
  });

  it('one home that cannot be made does not hold up the others', async () => {
    t.meta.ensureHome('alice');
    put('/home/erin', 1, 'alice');
    await createAccount('erin');
    await createAccount('fred');
    const r = await round();
    assert.deepEqual(r.failed.map((f) => [f.user, f.error]), [['erin', '/home/erin is a file, not a directory']]);
    assert.ok(r.made.includes('fred'));
  });
});
