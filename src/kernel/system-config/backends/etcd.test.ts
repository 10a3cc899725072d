// Runs the conformance suite against a real three-member etcd cluster started by this file, then the failure cases
// only a cluster has: a member crash, lost quorum, compaction, an unreachable cluster.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { startEtcdCluster, type EtcdCluster } from '../../../../test/support/etcd-cluster.ts';
import { StoreError, type ConfigStore } from '../store.ts';
import { runStoreSuite } from '../store.suite.ts';
import { openEtcdStore } from './etcd.ts';
import { freePort } from '../../../../test/support/ports.ts';

let cluster: EtcdCluster | undefined;

function endpoints(): string[] {
  assert.ok(cluster, 'the etcd cluster did not start');
  return cluster.endpoints;
}

/** A namespace of its own per store, so tests sharing the cluster never see each other's keys. */
function uniquePrefix(): string {
  return `/buckyos-test/${randomBytes(6).toString('hex')}/`;
}

function isStoreError(code: StoreError['code']): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected StoreError(${code}), got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

before(async () => {
  cluster = await startEtcdCluster(3);
});
after(async () => {
  await cluster?.stop();
});

runStoreSuite('etcd (3 members)', async () => {
  const store = openEtcdStore({ hosts: endpoints(), prefix: uniquePrefix() });
  return { store, cleanup: () => store.close() };
});

// Guarded by a freeze key that is not set, a store behaves exactly as an unguarded one.
runStoreSuite('etcd (3 members), guarded by an unset freeze key', async () => {
  const store = openEtcdStore({ hosts: endpoints(), prefix: uniquePrefix(), frozenWhile: 'ctl/freeze' });
  return { store, cleanup: () => store.close() };
});

describe('etcd store specifics', () => {
  it('refuses every write that does not touch the freeze key while it is set, in the write\'s own transaction', async () => {
    const prefix = uniquePrefix();
    const guarded = openEtcdStore({ hosts: endpoints(), prefix, frozenWhile: 'ctl/freeze' });
    const mover = openEtcdStore({ hosts: endpoints(), prefix });
    try {
      const r = await guarded.set('a', '1');
      await mover.set('ctl/freeze', '{"reason":"moving"}');
      const frozen = isStoreError('UNAVAILABLE');
      await assert.rejects(guarded.set('a', '2'), frozen);
      await assert.rejects(guarded.set('a', '2', r), frozen);
      await assert.rejects(guarded.create('b', '1'), frozen);
      await assert.rejects(guarded.delete('a'), frozen);
      await assert.rejects(guarded.execTx([], [{ op: 'put', key: 'c', value: '1' }]), frozen);
      assert.equal((await guarded.get('a'))?.value, '1', 'nothing was written');
      assert.equal(await guarded.get('b'), null);
      // What lifts the freeze passes, with whatever it writes beside it; so does a store without the guard.
      assert.equal((await mover.execTx([], [{ op: 'put', key: 'c', value: 'mover' }])).succeeded, true);
      assert.equal((await guarded.execTx([], [{ op: 'delete', key: 'ctl/freeze' }, { op: 'put', key: 'd', value: '1' }])).succeeded, true);
      await guarded.set('a', '3');
      assert.equal((await guarded.get('a'))?.value, '3');
      // A failed compare while not frozen still reports its conflicts, not a freeze.
      const stale = await guarded.execTx([{ key: 'a', revision: r }], [{ op: 'put', key: 'a', value: 'x' }]);
      assert.deepEqual([stale.succeeded, stale.conflicts], [false, ['a']]);
    } finally {
      await guarded.close();
      await mover.close();
    }
  });

  it('keeps keys under the default /buckyos/ namespace', async () => {
    const store = openEtcdStore({ hosts: endpoints() });
    const raw = new Etcd3({ hosts: endpoints() });
    try {
      const key = `test-default-ns/${randomBytes(4).toString('hex')}`;
      const rev = await store.set(key, 'v');
      assert.equal(await raw.get(`/buckyos/${key}`).string(), 'v');
      assert.equal((await store.get(key))?.revision, rev);
      await store.delete(key);
    } finally {
      await store.close();
      raw.close();
    }
  });

  it('ignores keys outside its namespace in list, dump and changesSince', async () => {
    const prefix = uniquePrefix();
    const store = openEtcdStore({ hosts: endpoints(), prefix });
    const raw = new Etcd3({ hosts: endpoints() });
    try {
      const start = await store.currentRevision();
      await raw.put(`${prefix.slice(0, -1)}-sibling/a`).value('outside');
      await store.set('a', 'inside');
      await raw.put('/elsewhere/b').value('outside');
      assert.deepEqual(
        (await store.dump()).entries.map((e) => [e.key, e.value]),
        [['a', 'inside']],
      );
      assert.deepEqual(
        (await store.changesSince('', start, 100)).map((e) => [e.type, e.key]),
        [['put', 'a']],
      );
    } finally {
      await raw.delete().key('/elsewhere/b');
      await raw.delete().key(`${prefix.slice(0, -1)}-sibling/a`);
      await store.close();
      raw.close();
    }
  });

  it('keeps serving reads, writes and watches after the leader is killed, and the member rejoins', async () => {
    assert.ok(cluster);
    const prefix = uniquePrefix();
    const store = openEtcdStore({ hosts: endpoints(), prefix });
    let rejoined: ConfigStore | undefined;
    try {
      const start = await store.set('quorum/before', '0');
      const victim = await cluster.leader();
      assert.ok(victim >= 0, 'the cluster should have a leader');
      await cluster.stopMember(victim);
      // Until the two survivors elect a new leader, a write's outcome is unknown and reported as UNAVAILABLE.
      await retryUnavailable(() => store.set('quorum/k0', '0'));
      for (let i = 1; i <= 20; i++) await store.set(`quorum/k${i % 4}`, String(i));
      const tx = await store.execTx([], [{ op: 'create', key: 'quorum/tx', value: 'ok' }]);
      assert.equal(tx.succeeded, true);
      assert.equal((await store.get('quorum/k0'))?.value, '20');
      assert.equal((await store.changesSince('quorum/', start, 100)).length, 22);

      const rev = await store.currentRevision();
      const waiting = store.waitForChange(rev, 15_000);
      const t0 = performance.now();
      await store.set('quorum/wake', '1');
      await waiting;
      assert.ok(performance.now() - t0 < 14_000, 'waitForChange should wake on the write, not time out');

      await cluster.startMember(victim);
      const last = await store.set('quorum/after', 'restart');
      // A linearizable read through the restarted member alone proves it caught up with the cluster.
      rejoined = openEtcdStore({ hosts: [endpoints()[victim]], prefix });
      assert.deepEqual(await rejoined.get('quorum/after'), {
        key: 'quorum/after',
        value: 'restart',
        revision: last,
        createRevision: last,
      });
      assert.equal((await rejoined.get('quorum/k0'))?.value, '20');
    } finally {
      await rejoined?.close();
      await store.close();
    }
  });

  it('reports UNAVAILABLE when quorum is lost, and recovers when it returns', async () => {
    assert.ok(cluster);
    const store = openEtcdStore({ hosts: endpoints(), prefix: uniquePrefix(), requestTimeoutMs: 2_000 });
    try {
      await retryUnavailable(() => store.set('q', 'before'));
      await cluster.stopMember(1);
      await cluster.stopMember(2);
      const t0 = performance.now();
      await assert.rejects(store.set('q', 'no quorum'), isStoreError('UNAVAILABLE'));
      await assert.rejects(store.get('q'), isStoreError('UNAVAILABLE'));
      assert.ok(performance.now() - t0 < 20_000, 'requests without quorum should fail within their deadlines');
      await cluster.startMember(1);
      await cluster.startMember(2);
      const rev = await retryUnavailable(() => store.set('q', 'after'));
      assert.equal((await store.get('q'))?.revision, rev);
    } finally {
      await store.close();
    }
  });

  it('waits out open circuit breakers within a call\'s deadline instead of failing once the member is back', async () => {
    assert.ok(cluster);
    const prefix = uniquePrefix();
    // One member's address only, so its breaker is every breaker this client has.
    const store = openEtcdStore({ hosts: [endpoints()[0]!], prefix, requestTimeoutMs: 10_000 });
    try {
      await retryUnavailable(() => store.set('b', 'before'));
      await cluster.stopMember(0);
      // Three failures in a row open the member's breaker.
      for (let i = 0; i < 3; i++) await assert.rejects(store.get('b'), isStoreError('UNAVAILABLE'));
      await cluster.startMember(0);
      const fresh = openEtcdStore({ hosts: [endpoints()[0]!], prefix });
      try {
        await retryUnavailable(() => fresh.get('b'));
      } finally {
        await fresh.close();
      }
      // The member answers again; the old client's breaker is still open for a few seconds, and the call waits.
      assert.equal((await store.get('b'))?.value, 'before');
      await store.set('b', 'after');
    } finally {
      await store.close();
    }
  });

  it('reports UNAVAILABLE when no member can be reached', async () => {
    const store = openEtcdStore({ hosts: [`http://127.0.0.1:${await freePort()}`], requestTimeoutMs: 2_000 });
    try {
      await assert.rejects(store.get('x'), (err: unknown) => {
        assert.ok(err instanceof StoreError && err.code === 'UNAVAILABLE', String(err));
        assert.match(err.message, /^etcd unavailable/);
        return true;
      });
      await assert.rejects(store.changesSince('', 0, 10), isStoreError('UNAVAILABLE'));
    } finally {
      await store.close();
    }
  });

  it('reports COMPACTED for history etcd has compacted, and wakes waiters instead of hanging', async () => {
    const store = openEtcdStore({ hosts: endpoints(), prefix: uniquePrefix() });
    const raw = new Etcd3({ hosts: endpoints() });
    try {
      const old = await store.set('c/a', '1');
      await store.delete('c/a');
      await store.set('c/b', '2');
      const compactAt = await store.currentRevision();
      await raw.kv.compact({ revision: compactAt, physical: true });
      await assert.rejects(store.changesSince('c/', old, 100), isStoreError('COMPACTED'));
      await assert.rejects(store.changesSince('c/', compactAt - 1, 100), isStoreError('COMPACTED'));
      assert.deepEqual(await store.changesSince('c/', compactAt, 100), []);
      const elapsed = performance.now();
      await store.waitForChange(old, 10_000);
      assert.ok(performance.now() - elapsed < 5_000);
      const next = await store.set('c/c', '3');
      assert.deepEqual(
        (await store.changesSince('c/', compactAt, 100)).map((e) => [e.key, e.revision]),
        [['c/c', next]],
      );
    } finally {
      await store.close();
      raw.close();
    }
  });
});

async function retryUnavailable<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline || !(err instanceof StoreError && err.code === 'UNAVAILABLE')) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
