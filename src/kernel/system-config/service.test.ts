import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type KeyObject, randomUUID } from 'node:crypto';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { generateKeyPair, didDev } from '../../lib/identity/keys.ts';
import { VERIFY_HUB_KID, createTokenVerifier, signAccessToken } from '../../lib/identity/tokens.ts';
import { type KrpcError, type RunningServer, callRaw, createClient, createHttpApp, listen } from '../../lib/krpc/index.ts';
import { openSqliteStore } from './backends/sqlite.ts';
import { createSystemConfigEndpoint } from './service.ts';
import { createRbacConfigAccess } from './access.ts';
import type { ConfigStore } from './store.ts';
import { ZONE_SETTINGS_KEY, settingsSchemaFor, userUiSettingsKey } from '../../lib/config/zone-settings.ts';
import { readRecord } from '../../lib/config/record.ts';
import { FREEZE_KEY, MIGRATION_KEY } from '../../lib/config/store-control.ts';

describe('system-config service (SQLite backend, real RBAC)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-svc-'));
  const hub = generateKeyPair();
  const device = generateKeyPair();
  const deviceDid = didDev(device.publicKeyB64);
  /** Other devices of the zone, by did: their key, name and role as their documents say. */
  const others = new Map<string, { key: KeyObject; name: string; role: string }>();
  const addDevice = (name: string, role: string) => {
    const key = generateKeyPair();
    others.set(didDev(key.publicKeyB64), { key: key.publicKey, name, role });
    return (sub: string) => signAccessToken({ typ: 'service', sub, app: sub, jti: randomUUID() }, key.privateKey, 600, didDev(key.publicKeyB64));
  };
  let store: ConfigStore;
  let srv: RunningServer;
  let base: string;
  const stop = new AbortController();
  /** Why the store is frozen, as the instance's store guard would say. */
  let frozen: string | null = null;

  const userToken = (sub: string, app = 'control-panel', ttl = 900) =>
    signAccessToken({ typ: 'session', sub, app, sid: randomUUID(), jti: randomUUID() }, hub.privateKey, ttl, VERIFY_HUB_KID);
  const serviceToken = (sub: string) =>
    signAccessToken({ typ: 'service', sub, app: sub, jti: randomUUID() }, device.privateKey, 600, deviceDid);
  const client = async (token: string) => createClient(systemConfigApi, { baseUrl: base, token });

  before(async () => {
    store = openSqliteStore(join(dir, 'config.db'));
    const endpoint = createSystemConfigEndpoint(store, {
      guard: { frozen: () => frozen, firstRevision: () => 0 },
      authenticate: createTokenVerifier(() => ({ verifyHubKey: hub.publicKey, device: (d) => (d === deviceDid ? { key: device.publicKey, name: 'ood1', role: 'core' } : others.get(d)) })),
      access: await createRbacConfigAccess(store, stop.signal, (e) => assert.fail(String(e))),
      checkValue: (key, value) => {
        const schema = settingsSchemaFor(key);
        return schema ? readRecord(schema, value, null).problem : null;
      },
    });
    srv = await listen(createHttpApp({ name: 'system-config', endpoints: [endpoint] }), 0, '127.0.0.1');
    base = `http://127.0.0.1:${srv.port}`;
    const kernel = await client(await serviceToken('verify-hub'));
    for (const [name, role] of [['alice', 'admin'], ['bob', 'user'], ['gus', 'guest'], ['lim', 'limited']]) {
      await kernel.set({ key: `users/${name}/settings`, value: JSON.stringify({ name, role, state: 'active' }) });
    }
  });
  after(async () => {
    stop.abort();
    await srv.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets a kernel service read and write anything', async () => {
    const k = await client(await serviceToken('node-daemon'));
    const r = await k.set({ key: 'nodes/ood1/config', value: '{"kernel":[]}' });
    assert.ok(r.revision > 0);
    assert.equal((await k.get({ key: 'nodes/ood1/config' })).value, '{"kernel":[]}');
  });

  it('bounds a storage device\'s kernel to its own records and what its services follow', async () => {
    const nasToken = addDevice('nas1', 'storage');
    const nas = await client(await nasToken('node-daemon'));
    const k = await client(await serviceToken('scheduler'));
    await k.set({ key: 'nodes/nas1/config', value: '{"kernel":["gateway"],"apps":[]}' });
    await k.set({ key: 'services/gateway/info', value: '{"instances":[]}' });

    // What node_daemon, the gateway and dfs do there.
    assert.equal((await nas.get({ key: 'nodes/nas1/config' })).value, '{"kernel":["gateway"],"apps":[]}');
    await nas.set({ key: 'devices/nas1/info', value: '{"reported_at":1}' });
    await nas.set({ key: 'services/gateway/instances/nas1', value: '{}' });
    await nas.delete({ key: 'services/gateway/instances/nas1' });
    await nas.set({ key: 'services/dfs/status/nas1', value: '{}' });
    assert.equal((await nas.get({ key: 'services/gateway/info' })).value, '{"instances":[]}');
    assert.ok((await nas.list({ prefix: 'users/' })).entries.every((e) => /^users\/[^/]+\/settings$/.test(e.key)), 'of users/, only the account records dfs checks files by');

    // The zone's configuration, and anything of another device's, is refused, saying by whom.
    const refused: [() => Promise<unknown>, string, string][] = [
      [() => nas.set({ key: 'users/mallory/settings', value: JSON.stringify({ name: 'mallory', role: 'admin', state: 'active' }) }), 'write', 'users/mallory/settings'],
      [() => nas.create({ key: 'users/mallory/settings', value: '{}' }), 'create', 'users/mallory/settings'],
      [() => nas.set({ key: 'system/rbac/policy', value: 'g, mallory, admin' }), 'write', 'system/rbac/policy'],
      [() => nas.set({ key: 'boot/config', value: 'x' }), 'write', 'boot/config'],
      [() => nas.get({ key: 'system/verify-hub/credentials/alice' }), 'read', 'system/verify-hub/credentials/alice'],
      [() => nas.set({ key: 'nodes/ood1/config', value: '{}' }), 'write', 'nodes/ood1/config'],
      [() => nas.set({ key: 'nodes/nas1/config', value: '{"kernel":["gateway","verify-hub"],"apps":[]}' }), 'write', 'nodes/nas1/config'],
      [() => nas.set({ key: 'services/verify-hub/info', value: '{}' }), 'write', 'services/verify-hub/info'],
      [() => nas.set({ key: 'services/share/spec', value: '{}' }), 'write', 'services/share/spec'],
      [() => nas.set({ key: 'devices/ood1/info', value: '{}' }), 'write', 'devices/ood1/info'],
      [() => nas.set({ key: 'devices/nas1/revoked', value: '[]' }), 'write', 'devices/nas1/revoked'],
      [() => nas.set({ key: 'services/gateway/instances/ood1', value: '{}' }), 'write', 'services/gateway/instances/ood1'],
      [() => nas.exec_tx({ ops: [{ op: 'put', key: 'devices/nas1/info', value: '{}' }, { op: 'put', key: 'users/alice/settings', value: '{}' }] }), 'write', 'users/alice/settings'],
    ];
    for (const [call, action, key] of refused) {
      await assert.rejects(call(), (e: KrpcError) => {
        assert.equal(e.code, 'PERMISSION_DENIED', key);
        assert.equal(e.message, `node-daemon (app node-daemon) on storage device nas1 may not ${action} config key "${key}"`);
        return true;
      });
    }
    assert.equal((await k.get({ key: 'users/mallory/settings' })).value, null);
    assert.equal((await k.get({ key: 'devices/nas1/info' })).value, '{"reported_at":1}', 'the refused transaction wrote nothing');
    assert.deepEqual((await nas.list({ prefix: 'system/' })).entries.map((e) => e.key).filter((key) => !key.startsWith('system/rbac/') && !key.startsWith('system/control/')), []);
  });

  it('takes a device\'s role as its document says now, for a token already in use', async () => {
    const token = await addDevice('ood2', 'core')('node-daemon');
    const c = await client(token);
    await c.set({ key: 'storage/volumes/v2', value: '{}' });
    const did = [...others].find(([, d]) => d.name === 'ood2')![0];
    others.set(did, { ...others.get(did)!, role: 'portable' });
    await assert.rejects(c.set({ key: 'storage/volumes/v2', value: '{}' }), (e: KrpcError) => e.code === 'PERMISSION_DENIED' && /on portable device ood2/.test(e.message));
  });

  it('enforces RBAC per role on obj://config/<key>', async () => {
    const alice = await client(await userToken('alice'));
    const bob = await client(await userToken('bob'));
    const gus = await client(await userToken('gus'));
    await alice.set({ key: 'storage/volumes/home', value: '{}' });
    await bob.set({ key: 'users/bob/apps/share/settings/theme', value: 'dark' });
    assert.equal((await bob.get({ key: 'users/bob/settings' })).value !== null, true);
    assert.equal((await gus.get({ key: 'boot/config' })).value, null);

    const denied: [typeof bob, () => Promise<unknown>][] = [
      [bob, () => bob.set({ key: 'storage/volumes/home', value: '{}' })],
      [bob, () => bob.get({ key: 'users/alice/settings' })],
      [bob, () => bob.set({ key: 'users/bob/settings', value: '{"role":"admin"}' })],
      [gus, () => gus.get({ key: 'users/gus/settings' })],
      [alice, () => alice.get({ key: 'system/verify-hub/credentials/bob' })],
      [alice, () => alice.set({ key: 'system/rbac/policy', value: '' })],
    ];
    for (const [, call] of denied) await assert.rejects(call(), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
  });

  it('checks typed settings records before writing, in set, create and transactions alike', async () => {
    const alice = await client(await userToken('alice'));
    const bob = await client(await userToken('bob'));
    const gus = await client(await userToken('gus'));
    const good = JSON.stringify({ display_name: 'Home', time_zone: 'Europe/Paris' });
    const { revision } = await alice.set({ key: ZONE_SETTINGS_KEY, value: good });
    assert.equal((await gus.get({ key: ZONE_SETTINGS_KEY })).value, good, 'every signed-in user reads the zone settings');
    await assert.rejects(bob.set({ key: ZONE_SETTINGS_KEY, value: good }), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
    const refused: [() => Promise<unknown>, RegExp][] = [
      [() => alice.set({ key: ZONE_SETTINGS_KEY, value: '{"time_zone":"Mars/Olympus"}' }), /value of "zone\/settings": time_zone: "Mars\/Olympus" is not an IANA time zone/],
      [() => alice.set({ key: ZONE_SETTINGS_KEY, value: '{"display_name":""}' }), /display_name: empty/],
      [() => alice.set({ key: ZONE_SETTINGS_KEY, value: 'not json' }), /not JSON/],
      [() => alice.exec_tx({ ops: [{ op: 'put', key: 'storage/volumes/tx', value: '{}' }, { op: 'put', key: ZONE_SETTINGS_KEY, value: '{"extra":1}' }] }), /Unrecognized key/],
      [() => bob.set({ key: userUiSettingsKey('bob'), value: '{"lang":"<b>"}' }), /lang: a language tag/],
    ];
    for (const [call, message] of refused) await assert.rejects(call(), (e: KrpcError) => e.code === 'INVALID_PARAMS' && message.test(e.message));
    const after = await alice.get({ key: ZONE_SETTINGS_KEY });
    assert.deepEqual([after.value, after.revision], [good, revision], 'a refused write changed nothing');
    assert.equal((await alice.get({ key: 'storage/volumes/tx' })).value, null, 'nor did the rest of its transaction');
    await bob.set({ key: userUiSettingsKey('bob'), value: '{"lang":"zh"}' });
  });

  it('denies when the app is not allowed even if the user is', async () => {
    const aliceViaApp = await client(await userToken('alice', 'some-app'));
    await assert.rejects(aliceViaApp.get({ key: 'storage/volumes/home' }), { code: 'PERMISSION_DENIED' });
  });

  it('filters list and dump to readable keys', async () => {
    const bob = await client(await userToken('bob'));
    const listed = await bob.list({ prefix: 'users/' });
    assert.ok(listed.entries.length > 0);
    assert.ok(listed.entries.every((e) => e.key.startsWith('users/bob/')));
    const dumped = await bob.dump({});
    assert.ok(dumped.entries.every((e) => !e.key.startsWith('users/alice/')));
  });

  it('says when a listing stopped at its limit, even where the caller may read none of what it left out', async () => {
    const kernel = await client(await serviceToken('verify-hub'));
    const all = (await kernel.list({ prefix: 'users/', keys_only: true })).entries.map((e) => e.key);
    assert.ok(all.length >= 3);
    assert.equal((await kernel.list({ prefix: 'users/', limit: all.length })).more, false);
    const cut = await kernel.list({ prefix: 'users/', limit: all.length - 1 });
    assert.deepEqual([cut.entries.map((e) => e.key), cut.more], [all.slice(0, -1), true]);
    // bob reads only his own keys: a listing cut before them returns nothing of his, and says there was more.
    const bob = await client(await userToken('bob'));
    const firstBob = all.findIndex((k) => k.startsWith('users/bob/'));
    assert.ok(firstBob > 0);
    assert.deepEqual(await bob.list({ prefix: 'users/', limit: firstBob }).then((r) => [r.entries.length, r.more]), [0, true]);
  });

  it('removes a deleted user\'s grants before the delete is acknowledged', async () => {
    const kernel = await client(await serviceToken('verify-hub'));
    await kernel.set({ key: 'users/carol/settings', value: JSON.stringify({ name: 'carol', role: 'user', state: 'active' }) });
    const carol = await client(await userToken('carol'));
    await carol.get({ key: 'users/carol/settings' });
    await kernel.delete({ key: 'users/carol/settings' });
    await assert.rejects(carol.get({ key: 'boot/config' }), { code: 'PERMISSION_DENIED' });
  });

  it('while the store is frozen, takes only writes that touch the freeze: an abandoned move lifts it with its record', async () => {
    const k = await client(await serviceToken('node-daemon'));
    await k.set({ key: FREEZE_KEY, value: '{"reason":"moving"}' });
    frozen = 'the zone store is moving to etcd';
    try {
      await assert.rejects(k.set({ key: 'test/frozen', value: 'x' }), (e: KrpcError) => e.code === 'UNAVAILABLE' && /read-only for a moment: the zone store is moving/.test(e.message));
      await assert.rejects(k.exec_tx({ compares: [], ops: [{ op: 'put', key: 'test/frozen', value: 'x' }, { op: 'put', key: MIGRATION_KEY, value: '{}' }] }), (e: KrpcError) => e.code === 'UNAVAILABLE');
      await k.exec_tx({ compares: [], ops: [{ op: 'delete', key: FREEZE_KEY }, { op: 'put', key: MIGRATION_KEY, value: '{"state":"failed"}' }] });
      assert.equal((await k.get({ key: FREEZE_KEY })).value, null);
      assert.equal((await k.get({ key: MIGRATION_KEY })).value, '{"state":"failed"}');
      assert.equal((await k.get({ key: 'test/frozen' })).value, null, 'nothing else was written');
    } finally {
      frozen = null;
    }
  });

  it('runs CAS transactions atomically', async () => {
    const k = await client(await serviceToken('scheduler'));
    const a = await k.set({ key: 'services/x/spec', value: '1' });
    const ok = await k.exec_tx({ compares: [{ key: 'services/x/spec', revision: a.revision }], ops: [{ op: 'put', key: 'services/x/spec', value: '2' }, { op: 'create', key: 'services/x/info', value: '{}' }] });
    assert.equal(ok.succeeded, true);
    const stale = await k.exec_tx({ compares: [{ key: 'services/x/spec', revision: a.revision }], ops: [{ op: 'put', key: 'services/x/spec', value: '3' }] });
    assert.deepEqual([stale.succeeded, stale.conflicts], [false, ['services/x/spec']]);
    assert.equal((await k.get({ key: 'services/x/spec' })).value, '2');
    await assert.rejects(k.set({ key: 'services/x/spec', value: '4', expect_revision: a.revision }), { code: 'CONFLICT' });
    await assert.rejects(
      k.exec_tx({ ops: [{ op: 'put', key: 'services/x/spec', value: '5' }, { op: 'delete', key: 'services/x/spec' }] }),
      (e: KrpcError) => e.code === 'INVALID_PARAMS' && /only one op/.test(e.message),
    );
  });

  it('watch resumes from a revision and misses nothing', async () => {
    const k = await client(await serviceToken('scheduler'));
    const start = (await k.list({ prefix: 'services/w/' })).revision;
    for (let i = 0; i < 5; i++) await k.set({ key: `services/w/k${i}`, value: String(i) });
    const first = await k.watch({ prefix: 'services/w/', after_revision: start, timeout_ms: 0, limit: 3 });
    assert.equal(first.events.length, 3);
    const rest = await k.watch({ prefix: 'services/w/', after_revision: first.revision, timeout_ms: 0 });
    assert.deepEqual([...first.events, ...rest.events].map((e) => e.value), ['0', '1', '2', '3', '4']);
    const waiting = k.watch({ prefix: 'services/w/', after_revision: rest.revision, timeout_ms: 10_000 });
    await k.set({ key: 'services/w/late', value: 'x' });
    assert.deepEqual((await waiting).events.map((e) => e.key), ['services/w/late']);
  });

  it('rejects bad keys, oversized values and missing tokens with clear codes', async () => {
    const k = await client(await serviceToken('scheduler'));
    for (const key of ['', '/abs', 'a//b', 'a/../b', 'a/b/', 'spa ce', 'x'.repeat(513)]) {
      await assert.rejects(k.get({ key }), (e: KrpcError) => e.code === 'INVALID_PARAMS' && /key/.test(e.message), key);
    }
    await assert.rejects(k.set({ key: 'services/big', value: 'x'.repeat(300 * 1024) }), { code: 'INVALID_PARAMS' });
    const r = await callRaw(`${base}/kapi/system-config`, { method: 'get', params: { key: 'boot/config' }, sys: [1] }, 5000);
    assert.equal((r.json as { error: { code: string } }).error.code, 'UNAUTHENTICATED');
    const expired = await userToken('alice', 'control-panel', -60);
    await assert.rejects((await client(expired)).get({ key: 'boot/config' }), { code: 'TOKEN_EXPIRED' });
  });
});
