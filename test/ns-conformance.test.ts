// cyfs-ns against dnsmasq, side by side on the same configuration, both driven by dig and kdig: local A/AAAA/TXT/
// SRV/MX/PTR/CNAME records, CNAME chains, wildcards, hosts files, NXDOMAIN and NODATA, forwarded answers (positive,
// negative, opaque types, large ones over TCP after TC), EDNS, and a dead upstream. Both forward to a third process,
// another dnsmasq serving the "upstream.test" names. cyfs-ns runs as `buckyos ns --config FILE` would run it (the CLI
// module, from a YAML file). Where cyfs-ns answers differently on purpose, the test asserts both behaviours and
// docs/ns.md says why.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './support/ports.ts';
import { selfSignedCert } from '../src/net/ns/testing.suite.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIG = ['a', 'b', 'c'].map((c) => c.repeat(230));

interface Dug {
  timeout: boolean;
  status: string;
  flags: string[];
  edns: { version: number; udp: number; flags: string } | null;
  retriedTcp: boolean;
  answer: string[];
  authority: string[];
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: 20_000 }, (_err, stdout) => resolve(String(stdout))));
}

/** One dig query, parsed: records as "name ttl class type data" with runs of whitespace made single. */
async function dig(port: number, name: string, type: string, opts: string[] = []): Promise<Dug> {
  const out = await run('dig', ['@127.0.0.1', '-p', String(port), '+noall', '+comments', '+answer', '+authority', '+tries=1', '+time=2', ...opts, name, type]);
  const d: Dug = { timeout: /no servers could be reached|timed out/.test(out) && !/status:/.test(out), status: '', flags: [], edns: null, retriedTcp: /Truncated, retrying in TCP mode/.test(out), answer: [], authority: [] };
  let section: 'answer' | 'authority' | null = null;
  for (const line of out.split('\n')) {
    const status = /status: ([A-Z]+)/.exec(line);
    if (status) d.status = status[1];
    const flags = /^;; flags: ([a-z ]*);/.exec(line);
    if (flags) d.flags = flags[1].trim().split(/\s+/).filter(Boolean).sort();
    const edns = /^; EDNS: version: (\d+), flags:([^;]*); udp: (\d+)/.exec(line);
    if (edns) d.edns = { version: Number(edns[1]), flags: edns[2].trim(), udp: Number(edns[3]) };
    if (line.startsWith(';; ANSWER SECTION')) section = 'answer';
    else if (line.startsWith(';; AUTHORITY SECTION')) section = 'authority';
    else if (line.startsWith(';') || line.trim() === '') continue;
    else if (section) d[section].push(line.trim().split(/\s+/).join(' '));
  }
  d.answer.sort();
  return d;
}

/** Records without their TTL, for answers whose TTL counts down between the two servers' turns. */
const noTtl = (records: string[]) => records.map((r) => r.split(' ').filter((_, i) => i !== 1).join(' '));

function waitForDns(port: number, what: string): Promise<void> {
  return (async () => {
    for (let i = 0; i < 100; i++) {
      const d = await dig(port, 'ready.check', 'A', ['+time=1']);
      if (!d.timeout) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what} did not start answering on port ${port}`);
  })();
}

function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

describe('cyfs-ns conforms to dnsmasq', () => {
  let dir: string;
  let cert: ReturnType<typeof selfSignedCert>;
  const ports = { upstream: 0, dead: 0, dnsmasq: 0, ns: 0, doh: 0 };
  let upstream: ChildProcess;
  let dnsmasq: ChildProcess;
  let ns: ChildProcess;
  let nsExit: Promise<number | null>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ns-conformance-'));
    // dnsmasq drops root for "nobody", which must still read the hosts file in here.
    chmodSync(dir, 0o755);
    cert = selfSignedCert('dns.test');
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    writeFileSync(join(dir, 'hosts'), '10.9.9.9 hostsname.lan hostalias.lan\n10.9.9.8 hf.example.com\n');

    const common = ['no-resolv', 'no-hosts', 'listen-address=127.0.0.1', 'bind-interfaces', 'pid-file=', 'log-facility=-'];
    writeFileSync(join(dir, 'upstream.conf'), [
      ...common, `port=${ports.upstream}`, 'local=/upstream.test/', 'local-ttl=600',
      'host-record=www.upstream.test,192.0.2.10,2001:db8::10',
      `txt-record=bigup.upstream.test,${BIG.map((s) => `"${s}"`).join(',')}`,
      'dns-rr=opaque.upstream.test,65280,0a0b0c0d',
    ].join('\n'));
    writeFileSync(join(dir, 'dnsmasq.conf'), [
      ...common, `port=${ports.dnsmasq}`, `server=127.0.0.1#${ports.upstream}`, `server=/dead.test/127.0.0.1#${ports.dead}`,
      'local=/lan/', 'local-ttl=300', `addn-hosts=${join(dir, 'hosts')}`,
      'host-record=nas.lan,192.168.1.10,fd00::10',
      'txt-record=txt.lan,"hello world","second"',
      'srv-host=_sip._tcp.lan,sip.lan,5060,10,5', 'host-record=sip.lan,192.168.1.20',
      'mx-host=lan,mail.lan,10', 'host-record=mail.lan,192.168.1.25',
      'cname=www.lan,nas.lan', 'cname=alias.lan,www.lan',
      'ptr-record=10.1.168.192.in-addr.arpa,nas.lan',
      'address=/wild.lan/192.168.1.30',
      `txt-record=big.lan,${BIG.map((s) => `"${s}"`).join(',')}`,
    ].join('\n'));
    const rec = (name: string, type: string, value: string | string[]) => `    - { name: ${JSON.stringify(name)}, type: ${type}, value: ${JSON.stringify(value)} }`;
    writeFileSync(join(dir, 'ns.yaml'), [
      'listen:', '  addresses: [127.0.0.1]', `  port: ${ports.ns}`,
      'doh:', '  address: 127.0.0.1', `  port: ${ports.doh}`, `  tls: { cert_file: ${cert.certFile}, key_file: ${cert.keyFile} }`,
      'upstreams:', '  groups:',
      `    default: { timeout_ms: 1000, servers: ["127.0.0.1:${ports.upstream}"] }`,
      `    dead: { timeout_ms: 500, servers: ["127.0.0.1:${ports.dead}"] }`,
      'routes:', '  - { suffix: dead.test, group: dead }',
      'local:', '  domains: [lan]', '  ttl: 300', `  hosts_files: [${join(dir, 'hosts')}]`, '  records:',
      rec('nas.lan', 'A', '192.168.1.10'), rec('nas.lan', 'AAAA', 'fd00::10'),
      rec('txt.lan', 'TXT', ['hello world', 'second']),
      rec('_sip._tcp.lan', 'SRV', '10 5 5060 sip.lan'), rec('sip.lan', 'A', '192.168.1.20'),
      rec('lan', 'MX', '10 mail.lan'), rec('mail.lan', 'A', '192.168.1.25'),
      rec('www.lan', 'CNAME', 'nas.lan'), rec('alias.lan', 'CNAME', 'www.lan'),
      rec('10.1.168.192.in-addr.arpa', 'PTR', 'nas.lan'),
      rec('*.wild.lan', 'A', '192.168.1.30'),
      rec('big.lan', 'TXT', BIG),
    ].join('\n'));

    upstream = spawn('dnsmasq', ['-k', '-C', join(dir, 'upstream.conf')], { stdio: 'ignore' });
    dnsmasq = spawn('dnsmasq', ['-k', '-C', join(dir, 'dnsmasq.conf')], { stdio: 'ignore' });
    // The built CLI, as a user runs it standalone.
    ns = spawn(process.execPath, [join(ROOT, 'bin', 'buckyos.mjs'), 'ns', '--config', join(dir, 'ns.yaml')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    nsExit = new Promise((r) => ns.once('exit', (code) => r(code)));
    await Promise.all([waitForDns(ports.upstream, 'upstream dnsmasq'), waitForDns(ports.dnsmasq, 'dnsmasq'), waitForDns(ports.ns, 'cyfs-ns')]);
  });

  after(async () => {
    await Promise.all([stop(ns), stop(dnsmasq), stop(upstream)]);
    rmSync(dir, { recursive: true, force: true });
    cert.cleanup();
  });

  const both = async (name: string, type: string, opts: string[] = []) => {
    const [theirs, ours] = await Promise.all([dig(ports.dnsmasq, name, type, opts), dig(ports.ns, name, type, opts)]);
    return { theirs, ours };
  };

  it('answers local records of every kind exactly as dnsmasq does, authoritatively', async () => {
    const queries: [string, string][] = [
      ['nas.lan', 'A'], ['nas.lan', 'AAAA'], ['txt.lan', 'TXT'], ['_sip._tcp.lan', 'SRV'], ['lan', 'MX'],
      ['10.1.168.192.in-addr.arpa', 'PTR'], ['hostsname.lan', 'A'], ['hostalias.lan', 'A'], ['9.9.9.10.in-addr.arpa', 'PTR'],
      ['hf.example.com', 'A'], ['x.wild.lan', 'A'], ['www.lan', 'CNAME'],
    ];
    for (const [name, type] of queries) {
      const { theirs, ours } = await both(name, type);
      assert.equal(theirs.status, 'NOERROR', `dnsmasq ${name} ${type}`);
      assert.equal(ours.status, theirs.status, `${name} ${type}`);
      assert.ok(theirs.answer.length > 0, `dnsmasq has an answer for ${name} ${type}`);
      assert.deepEqual(ours.answer, theirs.answer, `${name} ${type}`);
      assert.deepEqual(ours.flags, theirs.flags, `${name} ${type} flags`);
    }
  });

  it('resolves CNAME chains locally, as dnsmasq does', async () => {
    for (const [name, type] of [['www.lan', 'A'], ['alias.lan', 'AAAA'], ['alias.lan', 'A']]) {
      const { theirs, ours } = await both(name, type);
      assert.ok(theirs.answer.length >= 2, `a chain from dnsmasq for ${name}`);
      assert.deepEqual(ours.answer, theirs.answer, `${name} ${type}`);
      assert.deepEqual(ours.flags, theirs.flags);
    }
  });

  it('says NXDOMAIN for a missing local name and NODATA for a missing type (with an SOA, which dnsmasq omits)', async () => {
    for (const [name, type, status] of [['nothere.lan', 'A', 'NXDOMAIN'], ['nas.lan', 'TXT', 'NOERROR'], ['hostsname.lan', 'AAAA', 'NOERROR']]) {
      const { theirs, ours } = await both(name, type);
      assert.equal(theirs.status, status, `dnsmasq ${name} ${type}`);
      assert.equal(ours.status, status, `${name} ${type}`);
      assert.deepEqual([ours.answer, theirs.answer], [[], []]);
      // Deliberate: cyfs-ns is authoritative for its local domains and says so (AA), with the domain's SOA so
      // clients can cache the negative answer (RFC 2308). dnsmasq without auth-zone sends neither.
      assert.deepEqual(theirs.authority, []);
      assert.match(ours.authority[0] ?? '', /^lan\. 60 IN SOA lan\. hostmaster\.lan\. /);
      assert.ok(ours.flags.includes('aa') && !theirs.flags.includes('aa'));
    }
  });

  it('sends a large local answer empty with TC over UDP, and whole over TCP when dig retries', async () => {
    const udpOnly = await both('big.lan', 'TXT', ['+noedns', '+ignore']);
    for (const d of [udpOnly.theirs, udpOnly.ours]) {
      assert.ok(d.flags.includes('tc'), 'TC set');
      assert.deepEqual(d.answer, []);
    }
    assert.deepEqual(udpOnly.ours.flags, udpOnly.theirs.flags);
    const retried = await both('big.lan', 'TXT', ['+noedns']);
    assert.ok(retried.theirs.retriedTcp && retried.ours.retriedTcp);
    assert.equal(retried.ours.answer.length, 1);
    assert.deepEqual(retried.ours.answer, retried.theirs.answer);
    const edns = await both('big.lan', 'TXT', ['+bufsize=4096']);
    assert.ok(!edns.ours.retriedTcp && !edns.theirs.retriedTcp, 'fits in 1232 bytes over UDP with EDNS');
    assert.deepEqual(edns.ours.answer, edns.theirs.answer);
  });

  it('forwards and caches upstream answers as dnsmasq does: positive, NXDOMAIN, NODATA, opaque types', async () => {
    for (let round = 0; round < 2; round++) {
      for (const [name, type] of [['www.upstream.test', 'A'], ['www.upstream.test', 'AAAA'], ['nothere.upstream.test', 'A'], ['www.upstream.test', 'MX'], ['opaque.upstream.test', 'TYPE65280']]) {
        const { theirs, ours } = await both(name, type);
        assert.equal(ours.status, theirs.status, `${name} ${type} round ${round}`);
        assert.deepEqual(noTtl(ours.answer), noTtl(theirs.answer), `${name} ${type} round ${round}`);
        for (const r of ours.answer) assert.ok(Number(r.split(' ')[1]) <= 600, `TTL counts down from 600: ${r}`);
        // The first answer passes the upstream's flags on; from the cache, neither claims to be authoritative. cyfs-ns
        // caches every type, where dnsmasq 2.90 forwards types it does not cache (TYPE65280) again, with AA.
        if (round === 0) assert.deepEqual(ours.flags, theirs.flags, `${name} ${type} flags`);
        else assert.deepEqual(ours.flags.filter((f) => f !== 'aa'), theirs.flags.filter((f) => f !== 'aa'), `${name} ${type} flags`);
        if (round === 1) assert.ok(!ours.flags.includes('aa'), `${name} ${type} from the cache is not authoritative`);
      }
    }
    const opaque = await dig(ports.ns, 'opaque.upstream.test', 'TYPE65280');
    assert.match(opaque.answer[0], /^opaque\.upstream\.test\. \d+ IN TYPE65280 \\# 4 0A0B0C0D$/);
  });

  it('fetches a large upstream answer over TCP when truncated, and serves it over TCP to the client', async () => {
    const { theirs, ours } = await both('bigup.upstream.test', 'TXT', ['+noedns']);
    assert.ok(theirs.retriedTcp && ours.retriedTcp);
    assert.deepEqual(noTtl(ours.answer), noTtl(theirs.answer));
    assert.equal(ours.answer.length, 1);
  });

  it('speaks EDNS as dnsmasq does: an OPT with 1232 bytes for EDNS clients, none for others', async () => {
    const edns = await both('nas.lan', 'A', ['+bufsize=4096']);
    assert.deepEqual(edns.ours.edns, edns.theirs.edns);
    assert.deepEqual(edns.ours.edns, { version: 0, flags: '', udp: 1232 });
    const none = await both('nas.lan', 'A', ['+noedns']);
    assert.deepEqual([none.ours.edns, none.theirs.edns], [null, null]);
    const dnssec = await both('www.upstream.test', 'A', ['+dnssec']);
    assert.equal(dnssec.ours.edns?.flags, 'do');
    assert.deepEqual(dnssec.ours.edns, dnssec.theirs.edns);
  });

  it('answers EDNS version 1 with BADVERS (RFC 6891), where dnsmasq answers as for version 0', async () => {
    const ours = await run('kdig', ['@127.0.0.1', '-p', String(ports.ns), '+edns=1', 'nas.lan', 'A']);
    const theirs = await run('kdig', ['@127.0.0.1', '-p', String(ports.dnsmasq), '+edns=1', 'nas.lan', 'A']);
    assert.match(ours, /status: BADVERS/);
    assert.match(ours, /Version: 0;/);
    assert.match(theirs, /status: NOERROR/);
  });

  it('answers SERVFAIL when the upstream is dead, where dnsmasq stays silent and the client times out', async () => {
    const { theirs, ours } = await both('x.dead.test', 'A', ['+time=3']);
    assert.equal(ours.status, 'SERVFAIL');
    assert.equal(theirs.timeout, true);
  });

  it('answers the same over DNS over HTTPS (kdig +https, HTTP/2 with TLS)', async () => {
    const out = await run('kdig', ['@127.0.0.1', '-p', String(ports.doh), `+tls-ca=${cert.certFile}`, '+tls-hostname=dns.test', '+https', 'alias.lan', 'A']);
    assert.match(out, /status: NOERROR/);
    assert.match(out, /HTTP session \(HTTP\/2-POST\)/);
    assert.match(out, /nas\.lan\.\s+300\s+IN\s+A\s+192\.168\.1\.10/);
    const get = await run('kdig', ['@127.0.0.1', '-p', String(ports.doh), `+tls-ca=${cert.certFile}`, '+tls-hostname=dns.test', '+https-get', 'txt.lan', 'TXT']);
    assert.match(get, /HTTP session \(HTTP\/2-GET\)/);
    assert.match(get, /"hello world" "second"/);
  });

  it('stops cleanly on SIGTERM', async () => {
    ns.kill('SIGTERM');
    assert.equal(await nsExit, 0);
  });
});
