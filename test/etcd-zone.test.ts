// etcd control on real devices: three core devices in three network namespaces. The first is activated, two join;
// with three core devices online the zone moves its store from SQLite to an etcd cluster the node_daemons run (peer
// and client TLS from device keys); a core device is killed and the zone still takes writes; it comes back and
// catches up; a removed core device is replaced by a new one that becomes a member; then the store moves back to
// SQLite with nothing lost.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type TestNet, netnsUnavailableReason, startNet } from './support/netns.ts';
import { type TestDevice, activateFirst, destroyDevice, joinDevice, startDevice } from './support/devices.ts';
import { loadNodeConfig, nodePaths } from '../src/lib/config/node-config.ts';

const skip = netnsUnavailableReason();

interface StoreStatus {
  backend: string;
  frozen: string | null;
  cluster: { healthy: number; quorum: number; has_quorum: boolean; fault_tolerance: number; members: { name: string; healthy: boolean }[] } | null;
  migration: { state: string; error: string | null } | null;
}

async function storeStatus(dev: TestDevice): Promise<StoreStatus | null> {
  const r = await dev.tryCli(['zone', 'store', '--json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as StoreStatus) : null;
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
      last = v;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

async function configGet(dev: TestDevice, key: string): Promise<string | null> {
  const r = await dev.tryCli(['config', 'get', key]);
  return r.code === 0 ? r.stdout.trim() : null;
}

describe('etcd control: three core devices', { skip: skip ?? false, timeout: 900_000 }, () => {
  let net: TestNet;
  const devices: TestDevice[] = [];
  let ood1: TestDevice;
  let ood2: TestDevice;
  let ood3: TestDevice;

  before(async () => {
    net = await startNet({ devices: [{ name: 'ood1' }, { name: 'ood2' }, { name: 'ood3' }, { name: 'ood4' }] });
    [ood1, ood2, ood3] = await Promise.all(['ood1', 'ood2', 'ood3'].map((n) => startDevice(net, n)));
    devices.push(ood1, ood2, ood3);
    await activateFirst(ood1, 'cluster.example.com');
    await ood1.cli(['config', 'set', 'test/before', 'written on SQLite']);
  });
  after(async () => {
    await Promise.all(devices.map(destroyDevice));
    await net?.destroy();
  });

  it('moves to etcd by itself once three core devices are online, with nothing lost', async () => {
    await joinDevice(ood1, ood2, 'core');
    assert.equal((await storeStatus(ood1))?.backend, 'sqlite', 'two core devices stay on SQLite');
    await joinDevice(ood1, ood3, 'core');
    const st = await until('the store on a healthy 3-member etcd cluster', 240_000, async () => {
      const s = await storeStatus(ood1);
      return s?.backend === 'etcd' && s.cluster?.healthy === 3 && s.migration?.state === 'done' ? s : null;
    });
    assert.deepEqual(st.cluster!.members.map((m) => m.name).sort(), ['ood1', 'ood2', 'ood3']);
    assert.equal(st.cluster!.fault_tolerance, 1);
    assert.equal(st.frozen, null);
    assert.equal(await configGet(ood1, 'test/before'), 'written on SQLite');
    // Every core device switches its own system-config onto the cluster.
    for (const d of [ood2, ood3]) {
      await until(`${d.name} running system-config on etcd`, 120_000, async () => {
        const s = d.status();
        return s?.state === 'running' && s.children.some((c) => c.name === 'system-config' && c.healthy) && (await storeStatus(d))?.backend === 'etcd';
      });
    }
    await ood2.cli(['config', 'set', 'test/k', 'v1']);
    assert.equal(await until('ood3 reading what ood2 wrote', 30_000, () => configGet(ood3, 'test/k')), 'v1');
  });

  it('keeps taking writes with a core device dead, and the device catches up when it returns', async () => {
    await ood3.kill();
    await until('ood1 writing with ood3 dead', 60_000, async () => (await ood1.tryCli(['config', 'set', 'test/k', 'v2'])).code === 0);
    const st = await until('the cluster reporting ood3 down', 60_000, async () => {
      const s = await storeStatus(ood1);
      return s?.cluster && s.cluster.healthy === 2 ? s : null;
    });
    assert.equal(st.cluster!.has_quorum, true);
    assert.equal(st.cluster!.fault_tolerance, 0);
    assert.equal(st.cluster!.members.find((m) => m.name === 'ood3')?.healthy, false);

    ood3.start();
    await ood3.waitFor((s) => s.state === 'running', 120_000, 'ood3 running again');
    assert.equal(await until('ood3 catching up', 60_000, async () => ((await configGet(ood3, 'test/k')) === 'v2' ? 'v2' : null)), 'v2');
    await until('three healthy members again', 60_000, async () => (await storeStatus(ood1))?.cluster?.healthy === 3);
  });

  it('refuses removing a core device when that would cost the cluster its quorum', async () => {
    await ood2.kill();
    await until('the cluster reporting ood2 down', 60_000, async () => (await storeStatus(ood1))?.cluster?.healthy === 2);
    const refused = await ood1.tryCli(['device', 'rm', 'ood3']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /FAILED_PRECONDITION.*below the quorum of 2/);
    // --force is for a core device's keys, not the quorum: only --ignore-quorum overrides it.
    const forced = await ood1.tryCli(['device', 'rm', 'ood3', '--force']);
    assert.notEqual(forced.code, 0);
    assert.match(forced.stderr, /FAILED_PRECONDITION.*below the quorum of 2/);
    ood2.start();
    await ood2.waitFor((s) => s.state === 'running', 120_000, 'ood2 running again');
    await until('three healthy members again', 90_000, async () => (await storeStatus(ood1))?.cluster?.healthy === 3);
  });

  it('replaces a broken core device: its member leaves the cluster, and a new core device becomes a member', async () => {
    // Broken: the device is gone when it is removed, as `buckyos device rm --force` is for (docs/operations.md). A
    // removed member that still runs is a known limit (docs/etcd-control.md): calls reaching it wait out their deadline.
    await ood3.kill();
    await until('the cluster reporting ood3 down', 60_000, async () => (await storeStatus(ood1))?.cluster?.healthy === 2);
    await ood1.cli(['device', 'rm', 'ood3', '--force']);
    await until('the cluster down to two members', 90_000, async () => {
      const s = await storeStatus(ood1);
      return s?.cluster?.members.length === 2 && s.cluster.healthy === 2;
    });
    const ood4 = await startDevice(net, 'ood4');
    devices.push(ood4);
    await joinDevice(ood1, ood4, 'core');
    const st = await until('ood4 a healthy member', 180_000, async () => {
      const s = await storeStatus(ood1);
      return s?.cluster?.healthy === 3 && s.cluster.members.some((m) => m.name === 'ood4' && m.healthy) ? s : null;
    });
    assert.deepEqual(st.cluster!.members.map((m) => m.name).sort(), ['ood1', 'ood2', 'ood4']);
    await until('ood4 reading the store on its own member', 120_000, async () => (await storeStatus(ood4))?.backend === 'etcd' && (await configGet(ood4, 'test/k')) === 'v2');
    // The members that were there all along follow the record: their system-config reaches ood4, never ood3 again.
    const at = (name: string) => `https://${net.devices.get(name)!.ip}:2379`;
    for (const d of [ood1, ood2]) {
      await until(`${d.name}'s system-config following the members`, 60_000, async () => {
        const b = loadNodeConfig(nodePaths(d.root)).config_backend;
        return b?.type === 'etcd' && b.endpoints.includes(at('ood4')) && !b.endpoints.includes(at('ood3'));
      });
    }
    assert.equal(await until('ood1 writing after following', 60_000, async () => (await ood1.tryCli(['config', 'set', 'test/k', 'v3'])).code === 0), true);
    assert.equal(await until('ood2 reading it', 60_000, async () => ((await configGet(ood2, 'test/k')) === 'v3' ? 'v3' : null)), 'v3');
  });

  it('moves back to SQLite on one device, and the others reach it there, one that was away too', async () => {
    // ood4, a member, is away during the move: its cluster is gone when it comes back.
    const ood4 = devices.find((d) => d.name === 'ood4')!;
    await ood4.kill();
    await ood1.cli(['zone', 'move', '--to', 'sqlite', '--wait'], {}, 300_000);
    const st = await until('the store on SQLite', 120_000, async () => {
      const s = await storeStatus(ood1);
      return s?.backend === 'sqlite' && s.frozen === null ? s : null;
    });
    assert.equal(st.cluster, null);
    assert.equal(await configGet(ood1, 'test/k'), 'v3');
    assert.equal(await configGet(ood1, 'test/before'), 'written on SQLite');
    await until('ood2 reaching the store on ood1', 120_000, async () => (await ood2.tryCli(['config', 'set', 'test/after', 'back on SQLite'])).code === 0);
    assert.equal(await configGet(ood1, 'test/after'), 'back on SQLite');
    // Its member finds no cluster; the other core devices tell it where the store went, and it reaches it there.
    ood4.start();
    await until('ood4 reaching the store on ood1 as a remote device', 240_000, async () => (await configGet(ood4, 'test/after')) === 'back on SQLite');
    assert.equal(loadNodeConfig(nodePaths(ood4.root)).config_backend?.type, 'remote');
  });
});
