import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { freePort } from '../../../test/support/ports.ts';
import { generateKeyPair, privateKeyToPem } from '../identity/keys.ts';
import { createCaCert, issueCert } from '../identity/tls-certs.ts';
import { EtcdMember, clearDataOfOtherCluster, etcdArgs, hasMemberData, type EtcdMemberSpec } from './member.ts';
import { clusterHealth, type ClusterHealth } from './cluster.ts';

const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';
const WAIT_LIMIT_MS = 60_000;

async function waitForHealth(what: string, read: () => Promise<ClusterHealth>, done: (h: ClusterHealth) => boolean): Promise<ClusterHealth> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const h = await read();
      if (done(h)) return h;
      last = h;
    } catch (err) {
      last = err instanceof Error ? err.message : err;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: not reached; last: ${JSON.stringify(last)}`);
}

function flag(args: string[], name: string): string | undefined {
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

const base: EtcdMemberSpec = {
  name: 'node-a',
  dataDir: '/opt/buckyos/data/etcd',
  peerUrl: 'http://10.1.0.2:2380',
  clientUrls: ['http://127.0.0.1:2379', 'http://10.1.0.2:2379'],
  initialCluster: [
    { name: 'node-a', peerUrl: 'http://10.1.0.2:2380' },
    { name: 'node-b', peerUrl: 'http://10.1.0.3:2380' },
    { name: 'node-c', peerUrl: 'http://10.1.0.4:2380' },
  ],
  state: 'new',
  clusterToken: 'zone-alice.example.com',
};

describe('etcdArgs', () => {
  it('runs the member as specified, with the home-LAN flags', () => {
    const args = etcdArgs(base);
    assert.equal(flag(args, 'name'), 'node-a');
    assert.equal(flag(args, 'data-dir'), '/opt/buckyos/data/etcd');
    assert.equal(flag(args, 'listen-peer-urls'), 'http://10.1.0.2:2380');
    assert.equal(flag(args, 'initial-advertise-peer-urls'), 'http://10.1.0.2:2380');
    assert.equal(flag(args, 'listen-client-urls'), 'http://127.0.0.1:2379,http://10.1.0.2:2379');
    // Another device dialling 127.0.0.1 would reach its own member, so loopback is listened on but not advertised.
    assert.equal(flag(args, 'advertise-client-urls'), 'http://10.1.0.2:2379');
    assert.equal(flag(args, 'initial-cluster'), 'node-a=http://10.1.0.2:2380,node-b=http://10.1.0.3:2380,node-c=http://10.1.0.4:2380');
    assert.equal(flag(args, 'initial-cluster-state'), 'new');
    assert.equal(flag(args, 'initial-cluster-token'), 'zone-alice.example.com');
    assert.equal(flag(args, 'heartbeat-interval'), '250');
    assert.equal(flag(args, 'election-timeout'), '2500');
    assert.equal(flag(args, 'pre-vote'), 'true');
    assert.equal(flag(args, 'auto-compaction-mode'), 'revision');
    assert.equal(flag(args, 'auto-compaction-retention'), '100000');
    assert.equal(flag(args, 'max-txn-ops'), '128');
    assert.equal(flag(args, 'cert-file'), undefined);
    assert.equal(flag(args, 'client-cert-auth'), undefined);
  });

  it('advertises loopback URLs when there are no others, as on one test machine', () => {
    const args = etcdArgs({
      ...base,
      peerUrl: 'http://127.0.0.1:2380',
      clientUrls: ['http://127.0.0.1:2379/'],
      initialCluster: [{ name: 'node-a', peerUrl: 'http://127.0.0.1:2380/' }],
      state: 'existing',
    });
    assert.equal(flag(args, 'advertise-client-urls'), 'http://127.0.0.1:2379');
    assert.equal(flag(args, 'initial-cluster'), 'node-a=http://127.0.0.1:2380');
    assert.equal(flag(args, 'initial-cluster-state'), 'existing');
  });

  it('uses one certificate for peer and client TLS, with client certificates required on both', () => {
    const https = (u: string): string => u.replace('http:', 'https:');
    const args = etcdArgs({
      ...base,
      peerUrl: https(base.peerUrl),
      clientUrls: base.clientUrls.map(https),
      initialCluster: base.initialCluster.map((m) => ({ ...m, peerUrl: https(m.peerUrl) })),
      tls: { certFile: '/etc/buckyos/etcd.crt', keyFile: '/etc/buckyos/etcd.key', caFile: '/etc/buckyos/zone-ca.crt' },
    });
    assert.equal(flag(args, 'cert-file'), '/etc/buckyos/etcd.crt');
    assert.equal(flag(args, 'peer-cert-file'), '/etc/buckyos/etcd.crt');
    assert.equal(flag(args, 'key-file'), '/etc/buckyos/etcd.key');
    assert.equal(flag(args, 'peer-key-file'), '/etc/buckyos/etcd.key');
    assert.equal(flag(args, 'trusted-ca-file'), '/etc/buckyos/zone-ca.crt');
    assert.equal(flag(args, 'peer-trusted-ca-file'), '/etc/buckyos/zone-ca.crt');
    assert.equal(flag(args, 'client-cert-auth'), 'true');
    assert.equal(flag(args, 'peer-client-cert-auth'), 'true');
  });

  it('refuses a spec it cannot run, naming what is wrong', () => {
    const bad: [Partial<EtcdMemberSpec>, RegExp][] = [
      [{ name: 'Node_A' }, /etcd member name "Node_A" is not a device name/],
      [{ dataDir: 'data/etcd' }, /data directory "data\/etcd" must be an absolute path/],
      [{ peerUrl: 'http://nas.local:2380' }, /peer URL of node-a "http:\/\/nas.local:2380" must name an IP address/],
      [{ peerUrl: 'http://0.0.0.0:2380' }, /must name a concrete address/],
      [{ peerUrl: 'http://10.1.0.2' }, /must give a port/],
      [{ peerUrl: 'http://10.1.0.2:2380/raft' }, /must be only scheme, address and port/],
      [{ peerUrl: 'not a url' }, /"not a url" is not a URL/],
      [{ peerUrl: 'https://10.1.0.2:2380' }, /must use http: TLS is not configured/],
      [{ clientUrls: [] }, /node-a has no client URL/],
      [{ clientUrls: ['http://10.1.0.2:2379', 'http://10.1.0.2:2379/'] }, /repeat an address/],
      [{ state: 'joining' as 'new' }, /must be 'new' or 'existing', got "joining"/],
      [{ clusterToken: 'a,b' }, /cluster token "a,b" must be/],
      [{ initialCluster: [] }, /initial cluster of node-a is empty/],
      [{ initialCluster: base.initialCluster.slice(1) }, /must list node-a exactly once, at its peer URL http:\/\/10.1.0.2:2380/],
      [
        { initialCluster: [...base.initialCluster, { name: 'node-d', peerUrl: 'http://10.1.0.3:2380' }] },
        /lists peer URL http:\/\/10.1.0.3:2380 twice \(node-b and node-d\)/,
      ],
      [{ tls: { certFile: 'etcd.crt', keyFile: '/k', caFile: '/c' } }, /must use https: with TLS every URL is https/],
    ];
    for (const [change, error] of bad) assert.throws(() => etcdArgs({ ...base, ...change }), error, JSON.stringify(change));
    const https = (u: string): string => u.replace('http:', 'https:');
    assert.throws(
      () =>
        etcdArgs({
          ...base,
          peerUrl: https(base.peerUrl),
          clientUrls: base.clientUrls.map(https),
          initialCluster: base.initialCluster.map((m) => ({ ...m, peerUrl: https(m.peerUrl) })),
          tls: { certFile: 'etcd.crt', keyFile: '/k', caFile: '/c' },
        }),
      /TLS certFile "etcd.crt" must be an absolute path/,
    );
  });
});

describe('EtcdMember', () => {
  let root: string;
  const running: EtcdMember[] = [];
  const servers: Server[] = [];

  async function singleSpec(name: string): Promise<EtcdMemberSpec> {
    const peerUrl = `http://127.0.0.1:${await freePort()}`;
    return {
      name,
      dataDir: join(root, name, 'data'),
      peerUrl,
      clientUrls: [`http://127.0.0.1:${await freePort()}`],
      initialCluster: [{ name, peerUrl }],
      state: 'new',
      clusterToken: `member-test-${name}`,
    };
  }

  function track(m: EtcdMember): EtcdMember {
    running.push(m);
    return m;
  }

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'buckyos-etcd-member-'));
  });

  after(async () => {
    await Promise.all(running.map((m) => m.stop()));
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    rmSync(root, { recursive: true, force: true });
  });

  it('starts, stops and restarts with the data it wrote', async () => {
    const spec = await singleSpec('solo');
    const exits: (string | null)[] = [];
    const logFile = join(root, 'solo', 'etcd.log');
    const member = track(new EtcdMember(spec, { binary: ETCD_BIN, logFile, onExit: (_code, signal) => exits.push(signal) }));
    assert.equal(hasMemberData(spec.dataDir), false);
    await member.start();
    assert.equal(member.running, true);
    assert.equal(hasMemberData(spec.dataDir), true);
    await assert.rejects(member.start(), /etcd member solo is already running \(pid \d+\)/);

    const client = new Etcd3({ hosts: spec.clientUrls });
    try {
      await client.put('kept').value('across restarts');
    } finally {
      client.close();
    }
    await member.stop();
    assert.equal(member.running, false);
    assert.deepEqual(exits, ['SIGTERM']);
    await member.stop();

    await member.start();
    const again = new Etcd3({ hosts: spec.clientUrls });
    try {
      assert.equal(await again.get('kept').string(), 'across restarts');
    } finally {
      again.close();
    }
    assert.ok(existsSync(logFile));
  });

  it('joins a new cluster afresh once the data of the cluster it served before is cleared, and keeps its own', async () => {
    const old = await singleSpec('moved');
    const first = track(new EtcdMember(old, { binary: ETCD_BIN }));
    await first.start();
    const client = new Etcd3({ hosts: old.clientUrls });
    try {
      await client.put('from').value('the old cluster');
    } finally {
      client.close();
    }
    await first.stop();

    assert.equal(clearDataOfOtherCluster(old.dataDir, old.clusterToken, old.clusterToken), false, 'its own cluster\'s data stays');
    assert.equal(hasMemberData(old.dataDir), true);
    assert.equal(clearDataOfOtherCluster(old.dataDir, old.clusterToken, 'member-test-next'), true);
    assert.equal(existsSync(old.dataDir), false);
    assert.equal(clearDataOfOtherCluster(old.dataDir, null, 'member-test-next'), false, 'nothing left to clear');

    // What store control then does: a member without data joins as the record says, here a new cluster.
    const next = track(new EtcdMember({ ...old, clusterToken: 'member-test-next', state: hasMemberData(old.dataDir) ? 'existing' : 'new' }, { binary: ETCD_BIN }));
    await next.start();
    const again = new Etcd3({ hosts: old.clientUrls });
    try {
      assert.equal(await again.get('from').string(), null);
    } finally {
      again.close();
    }
  });

  it('fails its start with etcd\'s own words when the member exits', async () => {
    const spec = await singleSpec('clash');
    // Connections are dropped at once: a server holding the start probe's connection open could never close.
    const taken = createServer((socket) => socket.destroy());
    servers.push(taken);
    const port = Number(new URL(spec.peerUrl).port);
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
    const member = track(new EtcdMember(spec, { binary: ETCD_BIN }));
    await assert.rejects(member.start(), /etcd member clash exited \(exit code 1\) during start:[\s\S]*address already in use/);
    assert.equal(member.running, false);
  });

  it('names a binary it cannot run', async () => {
    const member = new EtcdMember(await singleSpec('nobin'), { binary: join(root, 'no-such-etcd') });
    await assert.rejects(member.start(), /etcd member nobin cannot run .*no-such-etcd: spawn .* ENOENT during start/);
  });

  it('forms a three-member cluster over peer and client TLS with Ed25519 certificates from the zone CA', async () => {
    const caKey = generateKeyPair();
    const caPem = await createCaCert({ caKey, commonName: 'test zone CA' });
    const tlsDir = join(root, 'tls');
    const caFile = join(root, 'zone-ca.crt');
    writeFileSync(caFile, caPem);
    const names = ['ta', 'tb', 'tc'];
    const ports = await Promise.all(names.map(async () => ({ peer: await freePort(), client: await freePort() })));
    const initialCluster = names.map((name, i) => ({ name, peerUrl: `https://127.0.0.1:${ports[i].peer}` }));
    const specs: EtcdMemberSpec[] = [];
    for (const [i, name] of names.entries()) {
      const key = generateKeyPair();
      // The member's device key, certified by the zone CA for the address it listens on and connects from.
      const certPem = await issueCert({ caKey, caCertPem: caPem, subjectPublicKey: key.publicKey, commonName: name, ips: ['127.0.0.1'] });
      const certFile = join(root, `${name}.crt`);
      const keyFile = join(root, `${name}.key`);
      writeFileSync(certFile, certPem);
      writeFileSync(keyFile, privateKeyToPem(key.privateKey), { mode: 0o600 });
      specs.push({
        name,
        dataDir: join(tlsDir, name),
        peerUrl: initialCluster[i].peerUrl,
        clientUrls: [`https://127.0.0.1:${ports[i].client}`],
        initialCluster,
        state: 'new',
        clusterToken: 'tls-test',
        tls: { certFile, keyFile, caFile },
      });
    }
    const members = specs.map((s) => track(new EtcdMember(s, { binary: ETCD_BIN, logFile: join(tlsDir, `${s.name}.log`) })));
    await Promise.all(members.map((m) => m.start()));

    const endpoints = specs.map((s) => s.clientUrls[0]);
    // A node talks to etcd with its own device certificate, the one its member serves with.
    const tls = { ca: Buffer.from(caPem), cert: readFileSync(specs[0].tls!.certFile), key: readFileSync(specs[0].tls!.keyFile) };
        const h = await waitForHealth('three healthy TLS members', () => clusterHealth(endpoints, tls), (x) => x.healthy === 3 && x.leader !== null);
        assert.deepEqual(h.members.map((m) => m.name), names);
    assert.deepEqual(h.members.map((m) => m.peerUrls[0]), initialCluster.map((m) => m.peerUrl));

    const client = new Etcd3({ hosts: endpoints, credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key } });
    try {
      await client.put('over-tls').value('ed25519');
      assert.equal(await client.get('over-tls').string(), 'ed25519');
    } finally {
      client.close();
    }

    // Without a client certificate the same CA-verified connection is refused.
    const anonymous = new Etcd3({
      hosts: [endpoints[0]],
      credentials: { rootCertificate: tls.ca },
      defaultCallOptions: () => ({ deadline: Date.now() + 5000 }),
    });
    try {
      await assert.rejects(anonymous.get('over-tls').string(), /certificate/);
    } finally {
      anonymous.close();
    }
    // One at a time: a leader stopped together with its followers waits for a leadership handover that cannot happen.
    for (const m of members) await m.stop();
  });
});
