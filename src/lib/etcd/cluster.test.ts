import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { freePort } from '../../../test/support/ports.ts';
import { EtcdMember, type EtcdMemberSpec } from './member.ts';
import {
  addMember,
  additionLosesQuorum,
  clusterHealth,
  quorumOf,
  removalLosesQuorum,
  removeMember,
  stopLosesQuorum,
  type ClusterHealth,
  type MemberHealth,
} from './cluster.ts';

const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';
const WAIT_LIMIT_MS = 60_000;

/** Polls `read` until `done` holds; fails with the last value after a generous limit (a hung cluster, not a slow one). */
async function waitFor<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  let last: T | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await read();
      if (done(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: still not reached; last value ${JSON.stringify(last)}, last error ${String(lastError)}`);
}

/** A read served from one member's own copy of the data, so it shows what that member has replicated. */
async function localValue(clientUrl: string, key: string): Promise<string | null> {
  const client = new Etcd3({ hosts: [clientUrl], defaultCallOptions: () => ({ deadline: Date.now() + 2000 }) });
  try {
    const res = await client.kv.range({ key: Buffer.from(key), serializable: true });
    return res.kvs[0]?.value.toString('utf8') ?? null;
  } finally {
    client.close();
  }
}

function member(health: ClusterHealth, name: string): MemberHealth {
  const found = health.members.find((m) => m.name === name);
  assert.ok(found, `member ${name} in ${JSON.stringify(health.members.map((m) => m.name))}`);
  return found;
}

function health(members: { name: string; healthy: boolean; learner?: boolean }[]): ClusterHealth {
  const list: MemberHealth[] = members.map((m, i) => ({
    id: (i + 1).toString(16),
    name: m.name,
    peerUrls: [`http://10.0.0.${i + 1}:2380`],
    clientUrls: [`http://10.0.0.${i + 1}:2379`],
    learner: m.learner ?? false,
    healthy: m.healthy,
    leader: false,
    problem: m.healthy ? null : 'down',
  }));
  const voting = list.filter((m) => !m.learner);
  const healthy = voting.filter((m) => m.healthy).length;
  const quorum = quorumOf(voting.length);
  return { members: list, healthy, quorum, hasQuorum: healthy >= quorum, faultTolerance: Math.max(0, healthy - quorum), leader: null };
}

describe('quorum arithmetic', () => {
  it('quorumOf is a strict majority', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(quorumOf), [1, 2, 2, 3, 3, 4, 4]);
    assert.throws(() => quorumOf(0), /positive number of members, got 0/);
    assert.throws(() => quorumOf(2.5), /got 2.5/);
  });

  it('removing or stopping a member is judged against the healthy members left', () => {
    const all = health([{ name: 'a', healthy: true }, { name: 'b', healthy: true }, { name: 'c', healthy: true }]);
    assert.equal(removalLosesQuorum(all, 'a'), false);
    assert.equal(stopLosesQuorum(all, 'a'), false);
    assert.equal(additionLosesQuorum(all), false);

    const oneDown = health([{ name: 'a', healthy: true }, { name: 'b', healthy: true }, { name: 'c', healthy: false }]);
    assert.equal(removalLosesQuorum(oneDown, 'a'), true);
    assert.equal(removalLosesQuorum(oneDown, 'c'), false);
    assert.equal(stopLosesQuorum(oneDown, 'a'), true);
    assert.equal(stopLosesQuorum(oneDown, 'c'), false);
    assert.equal(additionLosesQuorum(oneDown), true);

    // Five members, two down: removing a dead one keeps 3 of 4 (quorum 3); removing a live one leaves 2 of 4.
    const five = health([
      { name: 'a', healthy: true }, { name: 'b', healthy: true }, { name: 'c', healthy: true },
      { name: 'd', healthy: false }, { name: 'e', healthy: false },
    ]);
    assert.equal(removalLosesQuorum(five, 'd'), false);
    assert.equal(removalLosesQuorum(five, 'a'), true);

    // A one-member cluster can only grow through a moment without fault tolerance; etcd allows it too.
    assert.equal(additionLosesQuorum(health([{ name: 'a', healthy: true }])), false);
    assert.equal(additionLosesQuorum(health([{ name: 'a', healthy: false }])), true);

    const pair = health([{ name: 'a', healthy: true }, { name: 'b', healthy: true }]);
    assert.equal(removalLosesQuorum(pair, 'b'), false);
    assert.equal(stopLosesQuorum(pair, 'b'), true);

    assert.throws(() => removalLosesQuorum(all, 'zz'), /etcd has no member "zz"; members: a, b, c/);
  });

  it('learners count for neither side', () => {
    const withLearner = health([
      { name: 'a', healthy: true }, { name: 'b', healthy: true }, { name: 'c', healthy: false }, { name: 'l', healthy: true, learner: true },
    ]);
    assert.equal(withLearner.quorum, 2);
    assert.equal(removalLosesQuorum(withLearner, 'l'), false);
    assert.equal(stopLosesQuorum(withLearner, 'l'), false);
    assert.equal(removalLosesQuorum(withLearner, 'a'), true);
  });
});

describe('etcd control on a real cluster of EtcdMembers', () => {
  let root: string;
  const members: EtcdMember[] = [];
  const exits: { name: string; code: number | null; signal: string | null }[] = [];
  let endpoints: string[];
  const token = `control-test-${randomBytes(4).toString('hex')}`;

  async function specFor(name: string, initial: { name: string; peerUrl: string }[] | null, state: 'new' | 'existing'): Promise<EtcdMemberSpec> {
    const peerUrl = `http://127.0.0.1:${await freePort()}`;
    return {
      name,
      dataDir: join(root, name, 'data'),
      peerUrl,
      clientUrls: [`http://127.0.0.1:${await freePort()}`],
      initialCluster: initial ?? [],
      state,
      clusterToken: token,
    };
  }

  function launch(spec: EtcdMemberSpec): EtcdMember {
    const m = new EtcdMember(spec, {
      binary: ETCD_BIN,
      logFile: join(root, spec.name, 'etcd.log'),
      onExit: (code, signal) => exits.push({ name: spec.name, code, signal }),
    });
    members.push(m);
    return m;
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'buckyos-etcd-control-'));
    const specs = await Promise.all(['m0', 'm1', 'm2'].map((n) => specFor(n, null, 'new')));
    const initial = specs.map((s) => ({ name: s.name, peerUrl: s.peerUrl }));
    for (const s of specs) s.initialCluster = initial;
    endpoints = specs.map((s) => s.clientUrls[0]);
    // Each member only answers once its data directory and cluster are set up; quorum comes when all three run.
    await Promise.all(specs.map((s) => launch(s).start()));
  });

  after(async () => {
    // One at a time: a leader stopped together with its followers waits for a leadership handover that cannot happen.
    for (const m of members) await m.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('three members report healthy, each asked directly, with one leader', async () => {
    const h = await waitFor('three healthy members', () => clusterHealth(endpoints), (x) => x.healthy === 3 && x.leader !== null);
    assert.deepEqual(h.members.map((m) => m.name), ['m0', 'm1', 'm2']);
    assert.equal(h.quorum, 2);
    assert.equal(h.hasQuorum, true);
    assert.equal(h.faultTolerance, 1);
    assert.equal(h.members.filter((m) => m.leader).length, 1);
    assert.equal(h.members.find((m) => m.leader)?.name, h.leader);
    for (const [i, m] of h.members.entries()) {
      assert.deepEqual(m.clientUrls, [endpoints[i]]);
      assert.equal(m.problem, null);
      assert.match(m.id, /^[0-9a-f]+$/);
    }
    // One reachable endpoint is enough to learn about all members.
    const fromOne = await waitFor('health read through one endpoint', () => clusterHealth([endpoints[1]]), (x) => x.healthy === 3);
    assert.deepEqual(fromOne.members.map((m) => m.name), ['m0', 'm1', 'm2']);
  });

  it('a stopped member shows unhealthy; removals and additions that would lose quorum are refused', async () => {
    const client = new Etcd3({ hosts: endpoints });
    try {
      await client.put('before-stop').value('1');
    } finally {
      client.close();
    }
    await members[2].stop();
    assert.equal(members[2].running, false);
    const h = await waitFor('two healthy members', () => clusterHealth(endpoints), (x) => x.healthy === 2 && x.leader !== null);
    assert.equal(h.members.length, 3);
    assert.equal(h.hasQuorum, true);
    assert.equal(h.faultTolerance, 0);
    const down = member(h, 'm2');
    assert.equal(down.healthy, false);
    assert.match(down.problem ?? '', new RegExp(endpoints[2].replace(/[.:/]/g, '\\$&')));
    assert.equal(removalLosesQuorum(h, 'm0'), true);
    assert.equal(removalLosesQuorum(h, 'm2'), false);
    assert.equal(stopLosesQuorum(h, 'm1'), true);
    assert.equal(stopLosesQuorum(h, 'm2'), false);

    // The counts are read afresh by each call; on a loaded machine a heartbeat missed meanwhile can lower them.
    await assert.rejects(
      removeMember(endpoints, 'm0', {}),
      /removing etcd member m0 would leave [01] healthy of 2 members, below the quorum of 2: .*force the removal/,
    );
    const peer = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(addMember(endpoints, peer, 'm9'), /adding m9 would make 4 members with a quorum of 3, but only [012] are healthy/);
    assert.equal((await clusterHealth(endpoints)).members.length, 3, 'nothing was changed');
  });

  it('a member restarted from its data directory catches up on writes it missed', async () => {
    const client = new Etcd3({ hosts: endpoints.slice(0, 2) });
    try {
      await client.put('while-down').value('written without m2');
    } finally {
      client.close();
    }
    await members[2].start();
    const seen = await waitFor('m2 has the missed write', () => localValue(endpoints[2], 'while-down'), (v) => v !== null);
    assert.equal(seen, 'written without m2');
    assert.equal(await localValue(endpoints[2], 'before-stop'), '1');
    await waitFor('three healthy members again', () => clusterHealth(endpoints), (x) => x.healthy === 3);
  });

  it('a fourth member is added, joins with state existing, and is removed again', async () => {
    const spec = await specFor('m3', null, 'existing');
    const added = await addMember(endpoints, spec.peerUrl, 'm3');
    assert.match(added.id, /^[0-9a-f]+$/);
    assert.deepEqual(added.initialCluster.map((m) => m.name).sort(), ['m0', 'm1', 'm2', 'm3']);
    assert.deepEqual(added.initialCluster.find((m) => m.name === 'm3'), { name: 'm3', peerUrl: spec.peerUrl });

    // Until it starts, the new member is nameless and unhealthy, and asking again (a retry) gives the same answer.
    const pending = await clusterHealth(endpoints);
    assert.equal(pending.members.length, 4);
    assert.equal(pending.quorum, 3);
    const unstarted = pending.members.find((m) => m.id === added.id);
    assert.equal(unstarted?.name, '');
    assert.equal(unstarted?.problem, 'added but never started');
    assert.deepEqual(await addMember(endpoints, spec.peerUrl, 'm3'), added);
    await assert.rejects(addMember(endpoints, `http://127.0.0.1:${await freePort()}`, 'm4'), /was added but never started/);

    spec.initialCluster = added.initialCluster;
    const m3 = launch(spec);
    await m3.start();
    const h = await waitFor('four healthy members', () => clusterHealth(endpoints), (x) => x.healthy === 4);
    assert.equal(h.quorum, 3);
    assert.equal(h.faultTolerance, 1);
    assert.equal(member(h, 'm3').id, added.id);
    assert.equal(await waitFor('m3 has the data', () => localValue(spec.clientUrls[0], 'while-down'), (v) => v !== null), 'written without m2');

    await assert.rejects(addMember(endpoints, spec.peerUrl, 'm5'), /peer URL .* already belongs to etcd member m3/);
    await assert.rejects(addMember(endpoints, `http://127.0.0.1:${await freePort()}`, 'm3'), /already has a member called m3/);

    await removeMember(endpoints, 'm3', {});
    // A removed member learns of it from the cluster and exits by itself.
    await waitFor('m3 exits after its removal', async () => m3.running, (running) => !running);
    assert.ok(exits.some((e) => e.name === 'm3'));
    const back = await waitFor('three healthy members after the removal', () => clusterHealth(endpoints), (x) => x.healthy === 3);
    assert.deepEqual(back.members.map((m) => m.name), ['m0', 'm1', 'm2']);
    await assert.rejects(removeMember(endpoints, 'm3', {}), /etcd has no member "m3"; members: m0, m1, m2/);
  });

  it('names what failed when no endpoint answers', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(clusterHealth([dead], undefined, 500), new RegExp(`no etcd endpoint answered the member list: ${dead.replace(/[.:/]/g, '\\$&')}`));
  });
});
