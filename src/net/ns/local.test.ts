// Local names: authoritative answers, NXDOMAIN against NODATA, CNAME chains, wildcards, hosts files, plug-in sources.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RecordConfig } from './config.ts';
import { ConfigRecords, HostsFiles, type LocalAnswer, type LocalRecordSource, LocalZone } from './local.ts';
import { type ResourceRecord, TYPE, formatRData, hashName } from './wire.ts';

const rec = (name: string, type: string, value: string | string[], ttl: number | null = null): RecordConfig => ({ name, type, value, ttl, line: 0 });

function show(a: LocalAnswer | undefined): string[] | string | undefined {
  if (!a) return undefined;
  if (a.kind === 'chain') return `chain to ${a.target} after ${a.answers.map((r) => `${r.name} ${formatRData(r.type, r.data)}`).join(', ')}`;
  return [`rcode ${a.rcode}`, ...a.answers.map((r) => `${r.name} ${r.ttl} ${formatRData(r.type, r.data)}`), ...a.authorities.map((r) => `auth ${r.name} SOA`), ...a.additionals.map((r) => `add ${r.name} ${formatRData(r.type, r.data)}`)];
}

describe('LocalZone', () => {
  const records = [
    rec('nas.lan', 'A', '192.168.1.10'),
    rec('nas.lan', 'AAAA', 'fd00::10'),
    rec('www.lan', 'CNAME', 'nas.lan', 60),
    rec('alias.lan', 'CNAME', 'www.lan'),
    rec('out.lan', 'CNAME', 'cdn.example.com'),
    rec('loop1.lan', 'CNAME', 'loop2.lan'),
    rec('loop2.lan', 'CNAME', 'loop1.lan'),
    rec('*.apps.lan', 'A', '192.168.1.30'),
    rec('special.apps.lan', 'A', '192.168.1.31'),
    rec('_sip._tcp.lan', 'SRV', '10 5 5060 sip.lan'),
    rec('sip.lan', 'A', '192.168.1.20'),
    rec('lan', 'MX', '10 mail.lan'),
    rec('mail.lan', 'A', '192.168.1.25'),
    rec('outside.example', 'A', '10.0.0.1'),
  ];
  const zone = new LocalZone([new ConfigRecords(records, ['lan'], 300)], 60);
  const r = (name: string, type: number) => show(zone.resolve(name, type));

  it('answers records it has, authoritatively, with glue for MX and SRV targets', () => {
    assert.deepEqual(r('nas.lan', TYPE.A), ['rcode 0', 'nas.lan 300 192.168.1.10']);
    assert.deepEqual(r('_sip._tcp.lan', TYPE.SRV), ['rcode 0', '_sip._tcp.lan 300 10 5 5060 sip.lan.', 'add sip.lan 192.168.1.20']);
    assert.deepEqual(r('lan', TYPE.MX), ['rcode 0', 'lan 300 10 mail.lan.', 'add mail.lan 192.168.1.25']);
  });

  it('says NXDOMAIN for a missing name and NODATA for a missing type, with the SOA', () => {
    assert.deepEqual(r('nothere.lan', TYPE.A), ['rcode 3', 'auth lan SOA']);
    assert.deepEqual(r('nas.lan', TYPE.TXT), ['rcode 0', 'auth lan SOA']);
  });

  it('treats a name with names below it as existing (empty non-terminal: NODATA)', () => {
    assert.deepEqual(r('_tcp.lan', TYPE.A), ['rcode 0', 'auth lan SOA']);
  });

  it('follows CNAME chains through local data, and stops at a CNAME query', () => {
    assert.deepEqual(r('alias.lan', TYPE.AAAA), ['rcode 0', 'alias.lan 300 www.lan.', 'www.lan 60 nas.lan.', 'nas.lan 300 fd00::10']);
    assert.deepEqual(r('www.lan', TYPE.CNAME), ['rcode 0', 'www.lan 60 nas.lan.']);
    assert.deepEqual(r('www.lan', TYPE.TXT), ['rcode 0', 'www.lan 60 nas.lan.', 'auth lan SOA']);
  });

  it('hands a chain that leaves local data to the upstream path', () => {
    assert.equal(r('out.lan', TYPE.A), 'chain to cdn.example.com after out.lan cdn.example.com.');
  });

  it('refuses a CNAME loop with SERVFAIL', () => {
    assert.deepEqual(r('loop1.lan', TYPE.A), ['rcode 2']);
  });

  it('fills in names below a wildcard that have no records of their own', () => {
    assert.deepEqual(r('x.apps.lan', TYPE.A), ['rcode 0', 'x.apps.lan 300 192.168.1.30']);
    assert.deepEqual(r('deep.x.apps.lan', TYPE.A), ['rcode 0', 'deep.x.apps.lan 300 192.168.1.30']);
    assert.deepEqual(r('special.apps.lan', TYPE.A), ['rcode 0', 'special.apps.lan 300 192.168.1.31']);
    assert.deepEqual(r('x.apps.lan', TYPE.AAAA), ['rcode 0', 'auth lan SOA']);
  });

  it('leaves names outside local domains to the upstreams, except the types it has', () => {
    assert.deepEqual(r('outside.example', TYPE.A), ['rcode 0', 'outside.example 300 10.0.0.1']);
    assert.equal(r('outside.example', TYPE.AAAA), undefined);
    assert.equal(r('elsewhere.example', TYPE.A), undefined);
  });

  it('answers ANY with every record of the name', () => {
    assert.deepEqual(r('nas.lan', TYPE.ANY), ['rcode 0', 'nas.lan 300 192.168.1.10', 'nas.lan 300 fd00::10']);
  });

  it('prefilters on hashes: owner names, wildcard parents and local domains', () => {
    assert.equal(zone.mayAnswer([hashName('nas.lan'), hashName('lan')]), true);
    assert.equal(zone.mayAnswer([hashName('outside.example'), hashName('example')]), true);
    assert.equal(zone.mayAnswer([hashName('a.b.example'), hashName('b.example'), hashName('example')]), false);
    assert.equal(zone.mayAnswer([]), false);
  });
});

describe('HostsFiles', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ns-hosts-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('gives A/AAAA per name and PTR to the first name per address, and reports bad lines', () => {
    const file = join(dir, 'hosts');
    writeFileSync(file, '# comment\n10.0.0.1 router router.home # trailing\n10.0.0.2 printer\nfd00::2 printer\n10.0.0.1 other\nnot-an-ip foo\n10.0.0.3\n10.0.0.4 bad_name!\n');
    const h = new HostsFiles([file], 120);
    h.load();
    const zone = new LocalZone([h], 60);
    assert.deepEqual(show(zone.resolve('printer', TYPE.AAAA)), ['rcode 0', 'printer 120 fd00::2']);
    assert.deepEqual(show(zone.resolve('router.home', TYPE.A)), ['rcode 0', 'router.home 120 10.0.0.1']);
    assert.deepEqual(show(zone.resolve('1.0.0.10.in-addr.arpa', TYPE.PTR)), ['rcode 0', '1.0.0.10.in-addr.arpa 120 router.']);
    assert.equal(h.problems.length, 3);
    assert.match(h.problems[0], /hosts:6: "not-an-ip" is not an IP address/);
    assert.match(h.problems[1], /hosts:7: an address with no names/);
    assert.match(h.problems[2], /hosts:8: .*is not a domain name/);
  });

  it('picks up changes on reload and tells the zone', () => {
    const file = join(dir, 'hosts2');
    writeFileSync(file, '10.0.0.9 box\n');
    const h = new HostsFiles([file], 60);
    h.load();
    const zone = new LocalZone([h], 60);
    let changes = 0;
    zone.subscribe(() => changes++);
    writeFileSync(file, '10.0.0.10 box\n');
    h.load();
    assert.equal(changes, 1);
    assert.deepEqual(show(zone.resolve('box', TYPE.A)), ['rcode 0', 'box 60 10.0.0.10']);
  });

  it('throws naming the file when it cannot be read', () => {
    assert.throws(() => new HostsFiles([join(dir, 'missing')], 60).load(), /hosts file .*missing: ENOENT/);
  });
});

describe('a plugged-in source', () => {
  it('takes part like configuration records, with its own authority and change notifications', () => {
    let records = new Map<string, ResourceRecord[]>([['sys.alice.example', [{ name: 'sys.alice.example', type: TYPE.A, cls: 1, ttl: 30, data: { kind: 'ip', bytes: Buffer.from([10, 1, 2, 3]) } }]]]);
    const listeners = new Set<() => void>();
    const source: LocalRecordSource = {
      label: 'zone',
      records: (n) => records.get(n),
      hasBelow: () => false,
      authoritativeFor: () => ['alice.example'],
      names: () => records.keys(),
      subscribe: (f) => (listeners.add(f), () => listeners.delete(f)),
    };
    const zone = new LocalZone([new ConfigRecords([], [], 300), source], 60);
    assert.deepEqual(show(zone.resolve('sys.alice.example', TYPE.A)), ['rcode 0', 'sys.alice.example 30 10.1.2.3']);
    assert.deepEqual(show(zone.resolve('nope.alice.example', TYPE.A)), ['rcode 3', 'auth alice.example SOA']);
    records = new Map();
    for (const f of listeners) f();
    assert.equal(zone.mayAnswer([hashName('sys.alice.example')]), false);
    assert.deepEqual(show(zone.resolve('sys.alice.example', TYPE.A)), ['rcode 3', 'auth alice.example SOA']);
  });
});
