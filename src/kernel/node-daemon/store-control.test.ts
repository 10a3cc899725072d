// Which core devices form the zone's etcd cluster (an odd number, at most seven, the orchestrating device first), and a
// move that its device left half done, undone through that device's own system-config.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { CONFIG_STORE_KEY, FREEZE_KEY, MIGRATION_KEY, type MigrationRecord } from '../../lib/config/store-control.ts';
import { loadNodeConfig, nodePaths, saveNodeConfig } from '../../lib/config/node-config.ts';
import { type KeyPair, didDev, generateKeyPair } from '../../lib/identity/keys.ts';
import { selfSignedCert } from '../../lib/identity/tls-certs.ts';
import { startTunnelServer } from '../../lib/tunnel/index.ts';
import { closedPort } from '../../lib/tunnel/testing.suite.ts';
import { createTokenVerifier, signAccessToken } from '../../lib/identity/tokens.ts';
import { createClient, createHttpApp, listen } from '../../lib/krpc/index.ts';
import { openSqliteStore } from '../system-config/backends/sqlite.ts';
import { createRbacConfigAccess } from '../system-config/access.ts';
import { followControl, sqliteStorePath } from '../system-config/main.ts';
import { createSystemConfigEndpoint } from '../system-config/service.ts';
import type { KernelRuntime } from '../runtime.ts';
import { until } from '../../../test/support/wait.ts';
import { StoreControl, UnstartedMembers, pickMembers } from './store-control.ts';

const devices = (...names: string[]) => names.map((name, i) => ({ name, ip: `10.0.0.${i + 1}` }));
const names = (picked: { name: string }[]) => picked.map((d) => d.name);

describe('pickMembers', () => {
  it('takes an odd number of devices, the orchestrator first, the rest by name', () => {
    assert.deepEqual(names(pickMembers(devices('c', 'a', 'self'), 'self')), ['self', 'a', 'c']);
    assert.deepEqual(names(pickMembers(devices('d', 'c', 'b', 'self'), 'self')), ['self', 'b', 'c'], 'four devices make three members');
    assert.deepEqual(names(pickMembers(devices('self', 'a'), 'self')), ['self'], 'two devices make one member: too few for a cluster');
  });

  it('stops at seven members', () => {
    const nine = devices('self', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h');
    assert.deepEqual(names(pickMembers(nine, 'self')), ['self', 'a', 'b', 'c', 'd', 'e', 'f']);
  });
});

/** A real store and system-config instance holding `records`, and a StoreControl for device `self` on top of them,
 * as a device whose system-config runs on `backend` would have it. */
async function deviceOn(dir: string, signal: AbortSignal, records: [string, unknown][], self: string, backend: 'sqlite' | 'etcd', reboots: string[] = []) {
  const store = openSqliteStore(join(dir, `${self}-${randomUUID()}.db`));
  await store.execTx([], records.map(([key, value]) => ({ op: 'put' as const, key, value: JSON.stringify(value) })));
  const device = generateKeyPair();
  const did = didDev(device.publicKeyB64);
  const endpoint = createSystemConfigEndpoint(store, {
    guard: followControl(store, signal, () => undefined),
    authenticate: createTokenVerifier(() => ({ verifyHubKey: generateKeyPair().publicKey, device: (d) => (d === did ? { key: device.publicKey, name: self, role: 'core' } : undefined) })),
    access: await createRbacConfigAccess(store, signal, () => undefined),
  });
  const srv = await listen(createHttpApp({ name: 'system-config', endpoints: [endpoint] }), 0, '127.0.0.1');
  const token = await signAccessToken({ typ: 'service', sub: 'node-daemon', app: 'node-daemon', jti: randomUUID() }, device.privateKey, 600, did);
  const cfg = createClient(systemConfigApi, { baseUrl: `http://127.0.0.1:${srv.port}`, token });
  const control = new StoreControl({
    paths: nodePaths(join(dir, self)),
    log: pino({ level: 'silent' }),
    runtime: () => ({ identity: { device: { name: self } }, configClient: () => cfg }) as unknown as KernelRuntime,
    backend: () => backend,
    stopService: async () => undefined,
    restartService: async () => undefined,
    reboot: async (why) => void reboots.push(why),
  });
  return {
    cfg,
    control,
    migration: async () => JSON.parse((await cfg.get({ key: MIGRATION_KEY })).value!) as MigrationRecord,
    async close() {
      await control.close();
      await srv.close();
      await store.close();
    },
  };
}

describe('UnstartedMembers', () => {
  const started = (id: string) => ({ id, name: `ood-${id}` });
  const unstarted = (id: string) => ({ id, name: '' });

  it('names a member added but not started once it stood so for the whole grace period, never a started one', () => {
    const t = new UnstartedMembers(300_000);
    assert.deepEqual(t.overdue([started('1'), started('2'), unstarted('3')], 1_000), []);
    assert.deepEqual(t.overdue([started('1'), started('2'), unstarted('3')], 300_999), []);
    assert.deepEqual(t.overdue([started('1'), started('2'), unstarted('3')], 301_000), [unstarted('3')]);
    assert.deepEqual(t.overdue([started('1'), started('2')], 400_000), [], 'one removed is forgotten');
  });

  it('starts the grace afresh for a member that started, or went, and is seen unstarted again', () => {
    const t = new UnstartedMembers(300_000);
    t.overdue([unstarted('3')], 0);
    t.overdue([started('3')], 200_000);
    assert.deepEqual(t.overdue([unstarted('3')], 250_000), [], 'seen unstarted again at 250 s');
    assert.deepEqual(t.overdue([unstarted('3')], 549_999), []);
    assert.deepEqual(t.overdue([unstarted('3')], 550_000), [unstarted('3')]);
  });
});

describe('finding where the store went (a member that was away during a move back)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'store-moved-'));
  const stop = new AbortController();
  after(() => {
    stop.abort();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Core device `name`: a real system-config on SQLite holding `record` as config-store, reached through its real
   * tunnel server by `caller` (its gateway's part, handing the call to the local instance, written out here). */
  async function core(name: string, record: unknown, caller: KeyPair) {
    const store = openSqliteStore(join(dir, `${name}.db`));
    await store.execTx([], [{ op: 'put', key: CONFIG_STORE_KEY, value: JSON.stringify(record) }]);
    const callerDid = didDev(caller.publicKeyB64);
    const endpoint = createSystemConfigEndpoint(store, {
      guard: followControl(store, stop.signal, () => undefined),
      authenticate: createTokenVerifier(() => ({ verifyHubKey: generateKeyPair().publicKey, device: (d) => (d === callerDid ? { key: caller.publicKey, name: 'caller', role: 'core' } : undefined) })),
      access: await createRbacConfigAccess(store, stop.signal, () => undefined),
    });
    const srv = await listen(createHttpApp({ name: 'system-config', endpoints: [endpoint] }), 0, '127.0.0.1');
    const key = generateKeyPair();
    const tunnel = await startTunnelServer({
      host: '127.0.0.1',
      port: 0,
      key,
      certPem: await selfSignedCert({ key, commonName: name }),
      authorizePeer: (k) => (k === caller.publicKeyB64 ? 'ood3' : null),
      handler: (req, res) => {
        const up = request({ host: '127.0.0.1', port: srv.port, method: req.method, path: req.url, headers: { 'content-type': 'application/json', authorization: req.headers.authorization ?? '' } }, (r) => {
          res.writeHead(r.statusCode ?? 502, { 'content-type': 'application/json' });
          r.pipe(res);
        });
        req.pipe(up);
      },
    });
    return {
      peer: { name, key: key.publicKeyB64, address: `127.0.0.1:${tunnel.port}` },
      async close() {
        await tunnel.close();
        await srv.close();
        await store.close();
      },
    };
  }

  function controlOf(self: string, key: KeyPair, cores: unknown[]): StoreControl {
    const paths = nodePaths(join(dir, self));
    mkdirSync(join(paths.etc, 'etcd'), { recursive: true });
    writeFileSync(join(paths.etc, 'etcd', 'cores.json'), JSON.stringify(cores));
    const did = didDev(key.publicKeyB64);
    const runtime = {
      identity: { device: { name: self }, deviceKey: key, boot: { zone: 'test.example.com' } },
      serviceToken: () => signAccessToken({ typ: 'service', sub: 'node-daemon', app: 'node-daemon', jti: randomUUID() }, key.privateKey, 600, did),
    };
    return new StoreControl({
      paths,
      log: pino({ level: 'silent' }),
      runtime: () => runtime as unknown as KernelRuntime,
      backend: () => 'etcd',
      stopService: async () => undefined,
      restartService: async () => undefined,
      reboot: async () => undefined,
    });
  }

  it('asks the other core devices, through their tunnels, and names the one now holding the store on SQLite', async () => {
    const ood3 = generateKeyPair();
    const back: unknown = { backend: 'sqlite', primary: 'ood1', first_revision: 7 };
    const ood1 = await core('ood1', back, ood3);
    const gone = { name: 'ood2', key: generateKeyPair().publicKeyB64, address: `127.0.0.1:${await closedPort()}` };
    try {
      const control = controlOf('ood3', ood3, [gone, ood1.peer]);
      assert.deepEqual(await control.movedStore(), ood1.peer, 'ood2 is down too; ood1 answers');
      await control.close();
      const alone = controlOf('ood3b', ood3, [gone]);
      assert.equal(await alone.movedStore(), null, 'nobody answers: nothing is known, nothing changes');
      await alone.close();
    } finally {
      await ood1.close();
    }
    // A cluster that still has this device as a member is to be waited for, not left.
    const member = (name: string) => ({ name, peer_url: `https://10.0.0.9:2380`, client_url: `https://10.0.0.9:2379` });
    const same = await core('ood2', { backend: 'etcd', members: [member('ood2'), member('ood3')], token: 't', ca_cert: 'pem', first_revision: 1 }, ood3);
    try {
      const control = controlOf('ood3', ood3, [same.peer]);
      assert.equal(await control.movedStore(), null);
      await control.close();
    } finally {
      await same.close();
    }
  });
});

describe('store control on a real store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'store-control-'));
  const stop = new AbortController();
  after(() => {
    stop.abort();
    rmSync(dir, { recursive: true, force: true });
  });

  it('abandons a move its device left half done: the freeze lifted through its own system-config, the move marked failed', async () => {
    // What the SQLite file holds after a power cut between the freeze and the end of the copy to etcd.
    const copying: MigrationRecord = { to: 'etcd', requested_by: 'node-daemon@ood1', requested_at: 1, state: 'copying', orchestrator: 'ood1', error: null, updated_at: 1 };
    const d = await deviceOn(dir, stop.signal, [[FREEZE_KEY, { reason: 'the zone store is moving to etcd', by: 'ood1', at: 1 }], [MIGRATION_KEY, copying]], 'ood1', 'sqlite');
    try {
      await assert.rejects(d.cfg.set({ key: 'test/k', value: 'v' }), /read-only for a moment/, 'frozen as the device left it');
      d.control.follow();
      await until('the freeze lifted', async () => ((await d.cfg.get({ key: FREEZE_KEY })).value === null ? true : undefined), 10_000);
      const m = await d.migration();
      assert.equal(m.state, 'failed');
      assert.match(m.error ?? '', /restarted before the move was done/);
      await d.cfg.set({ key: 'test/k', value: 'v' });
    } finally {
      await d.close();
    }
  });

  it('finishes a move to SQLite its device recorded in etcd before it stopped, only onto the finished copy the record names', async () => {
    const moved = { backend: 'sqlite', primary: 'ood1', first_revision: 42 };
    const copying: MigrationRecord = { to: 'sqlite', requested_by: 'alice@ood1', requested_at: 7, state: 'copying', orchestrator: 'ood1', primary: 'ood1', error: null, updated_at: 8 };
    // What etcd holds after the device recorded the move there and stopped: still frozen, the move still copying.
    const inEtcd: [string, unknown][] = [[CONFIG_STORE_KEY, moved], [MIGRATION_KEY, copying], [FREEZE_KEY, { reason: 'the zone store is moving to SQLite on ood1', by: 'ood1', at: 1 }]];
    const paths = nodePaths(join(dir, 'ood1'));
    mkdirSync(paths.etc, { recursive: true });
    saveNodeConfig(paths, { config_backend: { type: 'etcd', endpoints: ['https://127.0.0.1:2379'] } });
    mkdirSync(dirname(sqliteStorePath(paths)), { recursive: true });
    const file = async (records: [string, unknown][]) => {
      const f = openSqliteStore(sqliteStorePath(paths));
      await f.execTx([], records.map(([key, value]) => ({ op: 'put' as const, key, value: JSON.stringify(value) })));
      await f.close();
    };
    const reboots: string[] = [];
    const refusedWith = async (records: [string, unknown][], why: string) => {
      await file(records);
      const d = await deviceOn(dir, stop.signal, inEtcd, 'ood1', 'etcd', reboots);
      try {
        d.control.follow();
        await new Promise((r) => setTimeout(r, 500));
        assert.deepEqual(reboots, [], why);
        assert.equal(loadNodeConfig(paths).config_backend?.type, 'etcd', why);
      } finally {
        await d.close();
      }
    };
    const done = { ...copying, state: 'done' };
    await refusedWith([[CONFIG_STORE_KEY, { ...moved, first_revision: 41 }], [MIGRATION_KEY, done]], 'a file holding another copy');
    await refusedWith([[CONFIG_STORE_KEY, moved], [MIGRATION_KEY, copying]], 'a copy not marked done');
    await refusedWith([[CONFIG_STORE_KEY, moved], [MIGRATION_KEY, { ...done, requested_at: 6 }]], 'the copy of another move');
    await file([[MIGRATION_KEY, done]]);
    const again = await deviceOn(dir, stop.signal, inEtcd, 'ood1', 'etcd', reboots);
    try {
      again.control.follow();
      await until('the switch to SQLite', async () => (reboots.length > 0 ? true : undefined), 10_000);
      assert.deepEqual(reboots, ['the zone store moved to SQLite']);
      assert.equal(loadNodeConfig(paths).config_backend?.type, 'sqlite');
      assert.equal((await again.cfg.get({ key: FREEZE_KEY })).value !== null, true, 'etcd stays frozen: nobody may write there any more');
    } finally {
      await again.close();
    }
  });

  it('refuses a move back to SQLite that names a device outside the cluster, which no member could carry out', async () => {
    const member = (name: string, i: number) => ({ name, peer_url: `https://10.0.0.${i}:2380`, client_url: `https://10.0.0.${i}:2379` });
    const store = { backend: 'etcd', members: [member('ood2', 2), member('ood1', 1), member('ood3', 3)], token: 't', ca_cert: 'pem', first_revision: 1 };
    const request: MigrationRecord = { to: 'sqlite', requested_by: 'alice@ood4', requested_at: 1, state: 'requested', primary: 'ood4', error: null, updated_at: 1 };
    const d = await deviceOn(dir, stop.signal, [[CONFIG_STORE_KEY, store], [MIGRATION_KEY, request]], 'ood1', 'etcd');
    try {
      d.control.follow();
      const m = await until('the request refused', async () => ((await d.migration()).state === 'failed' ? d.migration() : undefined), 10_000);
      assert.match(m.error ?? '', /^ood4 is not a member of the etcd cluster \(ood2, ood1, ood3\): only a member can hold the store$/);
    } finally {
      await d.close();
    }
  });
});
