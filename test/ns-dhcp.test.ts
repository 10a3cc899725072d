// cyfs-ns's DHCP server against a real client: cyfs-ns runs as `buckyos ns --config FILE` in the "router" namespace,
// busybox udhcpc in the "client" namespace on the same LAN. A lease with its options, a renewal (SIGUSR1, unicast to
// the server), the lease file across a restart of cyfs-ns, a static lease for a fixed MAC, and the client's name (and
// its PTR) answered by cyfs-ns's DNS, asked with dig from the client. Then the same on the NAT router of a net with
// a second interface (lan0 and wan0, no default route): replies must leave by the LAN interface.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { netnsUnavailableReason, startNet, type TestNet } from './support/netns.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const STATIC_MAC = '02:00:00:00:00:2a';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Records what udhcpc hands its script. The only change it makes is the leased address on the client's interface,
// inside the client's namespace (renewals are sent from it, and the server's unicast reply must find it); no routes,
// and no /etc/resolv.conf, which every namespace shares with the host.
const SCRIPT = (events: string) => `#!/bin/sh
echo "$1 ip=$ip mask=$mask router=$router dns=$dns domain=$domain lease=$lease serverid=$serverid" >> ${events}
case "$1" in
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
esac
exit 0
`;

type Event = Record<string, string> & { event: string };

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

describe('cyfs-ns DHCP with udhcpc in network namespaces', { skip: netnsUnavailableReason() ?? false }, () => {
  let net: TestNet;
  let dir: string;
  let ns: ChildProcess | null = null;
  let udhcpc: ChildProcess | null = null;
  let router: string;
  let prefix: string;
  let iface: string;
  let leased = '';
  const paths = { config: '', leases: '', events: '', script: '', log: '' };

  const events = (): Event[] =>
    existsSync(paths.events)
      ? readFileSync(paths.events, 'utf8').trim().split('\n').filter(Boolean).map((line) => {
        const [event, ...kv] = line.split(' ');
        return Object.assign({ event }, Object.fromEntries(kv.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]))) as Event;
      })
      : [];
  const leaseFile = (): { address: string; mac: string; hostname: string | null; expires: number; state: string }[] =>
    JSON.parse(readFileSync(paths.leases, 'utf8')).leases;
  const nsLog = () => (existsSync(paths.log) ? readFileSync(paths.log, 'utf8') : '');
  const dig = async (...args: string[]) => (await net.exec('client', 'dig', [`@${router}`, '+short', '+tries=1', '+time=2', ...args])).trim();
  const udhcpcArgs = (...extra: string[]) => ['-f', '-n', '-i', iface, '-x', 'hostname:laptop', '-s', paths.script, '-t', '5', '-T', '1', ...extra];

  async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await check();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}; cyfs-ns log:\n${nsLog().split('\n').slice(-30).join('\n')}`);
      await sleep(100);
    }
  }

  async function startNs(): Promise<void> {
    const out = openSync(paths.log, 'a');
    ns = net.spawn('router', process.execPath, ['--import', 'tsx', CLI, 'ns', '--config', paths.config], { cwd: ROOT, stdio: ['ignore', out, out] });
    closeSync(out);
    const child = ns;
    await until('cyfs-ns answers DNS', async () => {
      if (child.exitCode !== null) assert.fail(`cyfs-ns exited with ${child.exitCode}:\n${nsLog()}`);
      const out = await net.exec('client', 'dig', [`@${router}`, '+tries=1', '+time=1', 'ready.lan']).catch(() => '');
      return out.includes('status:') || undefined;
    });
  }

  async function stopNs(): Promise<void> {
    if (!ns) return;
    const child = ns;
    ns = null;
    child.kill('SIGTERM');
    await exited(child);
  }

  /** One udhcpc run to a lease (-q: quit once bound); the event it ends with. */
  async function leaseOnce(): Promise<Event> {
    const before = events().length;
    await net.exec('client', 'udhcpc', udhcpcArgs('-q'), { timeoutMs: 30_000 });
    const bound = events().slice(before).filter((e) => e.event === 'bound');
    assert.equal(bound.length, 1, JSON.stringify(events().slice(before)));
    return bound[0];
  }

  before(async () => {
    net = await startNet({ devices: [{ name: 'router' }, { name: 'client' }] });
    router = net.device('router').ip;
    prefix = router.split('.').slice(0, 3).join('.');
    assert.equal(net.subnets.home, `${prefix}.0/24`);
    dir = mkdtempSync(join(tmpdir(), 'ns-dhcp-'));
    Object.assign(paths, {
      config: join(dir, 'ns.yaml'), leases: join(dir, 'state', 'leases.json'), events: join(dir, 'events'), script: join(dir, 'udhcpc.sh'), log: join(dir, 'ns.log'),
    });
    writeFileSync(paths.script, SCRIPT(paths.events));
    chmodSync(paths.script, 0o755);
    // The harness numbers devices from .10, so .100-.150 and the static .50 are clear of them.
    writeFileSync(paths.config, [
      'listen: { addresses: [' + router + '], port: 53 }',
      'log: { level: debug }',
      'dhcp:',
      `  interface_address: ${router}`,
      `  range: { start: ${prefix}.100, end: ${prefix}.150, netmask: 255.255.255.0 }`,
      '  lease_time: 600',
      '  domain: lan',
      '  lease_file: state/leases.json',
      `  static: [{ mac: "${STATIC_MAC}", address: ${prefix}.50, name: nas }]`,
    ].join('\n'));
    const links = await net.exec('client', 'ip', ['-o', 'link']);
    iface = links.split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).find((n) => n && n !== 'lo')!;
    assert.ok(iface, links);
    await startNs();
  });

  after(async () => {
    udhcpc?.kill('SIGKILL');
    await stopNs();
    await net?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('leases an address from the range with the configured options', async () => {
    const e = await leaseOnce();
    const last = Number(e.ip.split('.')[3]);
    assert.ok(e.ip.startsWith(`${prefix}.`) && last >= 100 && last <= 150, e.ip);
    assert.deepEqual({ mask: e.mask, router: e.router, dns: e.dns, domain: e.domain, lease: e.lease, serverid: e.serverid }, {
      mask: '24', router, dns: router, domain: 'lan', lease: '600', serverid: router,
    });
    leased = e.ip;
    const mac = JSON.parse(await net.exec('client', 'ip', ['-j', 'link', 'show', 'dev', iface]))[0].address as string;
    const entry = leaseFile().find((l) => l.address === leased);
    assert.deepEqual(entry && { mac: entry.mac, hostname: entry.hostname, state: entry.state }, { mac, hostname: 'laptop', state: 'bound' });
  });

  it('answers the client\'s name and its PTR in DNS', async () => {
    assert.equal(await dig('laptop.lan', 'A'), leased);
    assert.equal(await dig('-x', leased), 'laptop.lan.');
    assert.equal(await dig('nas.lan', 'A'), `${prefix}.50`);
  });

  it('renews the lease when udhcpc is told to (SIGUSR1), by unicast to the server', async () => {
    const before = events().length;
    udhcpc = net.spawn('client', 'udhcpc', udhcpcArgs(), { stdio: 'ignore' });
    await until('udhcpc is bound', () => events().slice(before).find((e) => e.event === 'bound'));
    const first = leaseFile().find((l) => l.address === leased)!.expires;
    // Lease file times are whole seconds: the renewal must fall into a later one to be seen there.
    await sleep(1100);
    udhcpc.kill('SIGUSR1');
    const renewed = await until('udhcpc renews', () => events().slice(before).find((e) => e.event === 'renew'));
    assert.equal(renewed.ip, leased);
    await until('the lease file has the later expiry', () => leaseFile().find((l) => l.address === leased)!.expires > first || undefined);
    const acks = nsLog().split('\n').filter((l) => l.includes('"DHCPACK"')).map((l) => JSON.parse(l) as { state: string; address: string });
    assert.ok(acks.some((a) => a.state === 'renewing' && a.address === leased), 'a REQUEST from ciaddr, not a broadcast');
    const child = udhcpc;
    udhcpc = null;
    child.kill('SIGTERM');
    await exited(child);
  });

  it('keeps the lease across a restart of cyfs-ns', async () => {
    await stopNs();
    await startNs();
    assert.equal(await dig('laptop.lan', 'A'), leased, 'answered from the lease file, before the client asks again');
    assert.equal((await leaseOnce()).ip, leased);
  });

  it('gives a client with a static lease its address and static name', async () => {
    await net.exec('client', 'ip', ['link', 'set', 'dev', iface, 'address', STATIC_MAC]);
    const e = await leaseOnce();
    assert.equal(e.ip, `${prefix}.50`);
    assert.equal(await dig('nas.lan', 'A'), `${prefix}.50`);
    assert.equal(await dig('-x', `${prefix}.50`), 'nas.lan.');
    assert.equal(await dig('laptop.lan', 'A'), leased, 'the other lease keeps its name');
    assert.ok(leaseFile().some((l) => l.address === `${prefix}.50` && l.mac === STATIC_MAC && l.state === 'bound'));
  });
});

describe('cyfs-ns DHCP on a router with a LAN and a WAN interface', { skip: netnsUnavailableReason() ?? false }, () => {
  it('sends its replies out of the interface that has interface_address', async () => {
    const net = await startNet({ devices: [{ name: 'client' }], nat: true });
    const dir = mkdtempSync(join(tmpdir(), 'ns-dhcp-router-'));
    let ns: ChildProcess | null = null;
    try {
      const r = net.router!;
      const prefix = r.homeIp.split('.').slice(0, 3).join('.');
      writeFileSync(join(dir, 'ns.yaml'), [
        `listen: { addresses: [${r.homeIp}], port: 53 }`,
        'dhcp:',
        `  interface_address: ${r.homeIp}`,
        `  range: { start: ${prefix}.100, end: ${prefix}.150, netmask: 255.255.255.0 }`,
        '  lease_file: leases.json',
      ].join('\n'));
      writeFileSync(join(dir, 'udhcpc.sh'), SCRIPT(join(dir, 'events')));
      chmodSync(join(dir, 'udhcpc.sh'), 0o755);
      // The router is no device of the net, so cyfs-ns is started in its namespace directly; destroy() still ends it.
      ns = spawn('ip', ['netns', 'exec', r.ns, process.execPath, '--import', 'tsx', CLI, 'ns', '--config', join(dir, 'ns.yaml')], { cwd: ROOT, stdio: 'ignore' });
      const deadline = Date.now() + 20_000;
      while (!(await net.exec('client', 'dig', [`@${r.homeIp}`, '+tries=1', '+time=1', 'ready.lan']).catch(() => '')).includes('status:')) {
        assert.ok(Date.now() < deadline && ns.exitCode === null, 'cyfs-ns did not start answering on the router');
        await sleep(100);
      }
      await net.exec('client', 'udhcpc', ['-f', '-q', '-n', '-i', 'eth0', '-s', join(dir, 'udhcpc.sh'), '-t', '5', '-T', '1'], { timeoutMs: 30_000 });
      const bound = readFileSync(join(dir, 'events'), 'utf8').split('\n').find((l) => l.startsWith('bound '));
      const fields = Object.fromEntries((bound ?? '').split(' ').slice(1).map((p) => p.split('=')));
      const last = Number(fields.ip?.split('.')[3]);
      assert.ok(fields.ip?.startsWith(`${prefix}.`) && last >= 100 && last <= 150, bound);
      assert.equal(fields.serverid, r.homeIp);
    } finally {
      ns?.kill('SIGTERM');
      if (ns) await exited(ns);
      await net.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
