// The fake_ip configuration section: a full example, the defaults, every kind of mistake with its line and key, and
// a pool opened from a configuration with a filter file.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { LineCounter, isMap, parseDocument, type Node as YamlNode } from 'yaml';
import { Reader } from './config-reader.ts';
import { type FakeIpConfig, openFakeIpPool, parseFakeIpConfig } from './fakeip-config.ts';
import { FakeIpError } from './fakeip.ts';

const BASE = '/etc/cyfs-ns';
const abs = (p: string) => (isAbsolute(p) ? p : resolve(BASE, p));

/** Parses `yaml` as a configuration file whose only section is fake_ip. */
function parse(yaml: string): { config: FakeIpConfig | undefined; problems: string[] } {
  const lines = new LineCounter();
  const doc = parseDocument(yaml, { lineCounter: lines });
  const r = new Reader('ns.yaml', lines);
  const top = doc.contents;
  assert.ok(isMap(top));
  const pair = top.items.find((p) => (p.key as { value?: unknown }).value === 'fake_ip');
  const config = parseFakeIpConfig(r, pair ? ((pair.value as YamlNode | null) ?? null) : null, abs);
  return { config, problems: r.problems };
}

describe('parseFakeIpConfig', () => {
  it('reads a full section, resolving paths against the configuration directory', () => {
    const { config, problems } = parse(`
fake_ip:
  enabled: true
  cidr: 198.18.0.0/16
  db_file: state/fakeip.db
  ttl: 5
  filter: ["*.lan", "+.apple.com", time.windows.com, ".corp.example", "*"]
  filter_files: [lists/fake-ip-filter.txt, /var/lib/cyfs-ns/more.txt]
`);
    assert.deepEqual(problems, []);
    assert.deepEqual(config, {
      enabled: true,
      cidr: '198.18.0.0/16',
      db_file: '/etc/cyfs-ns/state/fakeip.db',
      ttl: 5,
      filter: ['*.lan', '+.apple.com', 'time.windows.com', '.corp.example', '*'],
      filter_files: ['/etc/cyfs-ns/lists/fake-ip-filter.txt', '/var/lib/cyfs-ns/more.txt'],
    });
  });

  it('fills in the defaults, keeps a switched-off section, and is absent when the key is', () => {
    assert.deepEqual(parse('fake_ip: {}\n').config, {
      enabled: true, cidr: '198.18.0.0/15', db_file: '/etc/cyfs-ns/fakeip.db', ttl: 1, filter: [], filter_files: [],
    });
    assert.equal(parse('fake_ip: { enabled: false }\n').config?.enabled, false);
    assert.deepEqual(parse('listen: { port: 53 }\n'), { config: undefined, problems: [] });
  });

  it('reports every mistake with its line and key', () => {
    const { config, problems } = parse(`
fake_ip:
  enabled: yes please
  cidr: 198.18.0.1/15
  db_file: ""
  ttl: 7200
  filter:
    - "*.lan"
    - "a*.example"
    - 42
    - geosite:cn
  filter_files: lists.txt
  fliter: ["x"]
`);
    assert.equal(config, undefined);
    assert.deepEqual(problems, [
      'ns.yaml:3: fake_ip.enabled: must be true or false',
      'ns.yaml:4: fake_ip.cidr: "198.18.0.1/15" has host bits set; the network is 198.18.0.0/15',
      'ns.yaml:5: fake_ip.db_file: must be non-empty text',
      'ns.yaml:6: fake_ip.ttl: must be a whole number from 0 to 3600',
      'ns.yaml:9: fake_ip.filter[1]: "a*.example": "*" stands for a whole label (*.example.com, a.*.example.com)',
      'ns.yaml:10: fake_ip.filter[2]: must be text (quote it)',
      'ns.yaml:11: fake_ip.filter[3]: "geosite:cn": geosite, geoip and rule-set references are not supported; list the patterns',
      'ns.yaml:12: fake_ip.filter_files: must be a list',
      'ns.yaml:13: fake_ip.fliter: unknown key (known here: enabled, cidr, db_file, ttl, filter, filter_files)',
    ]);
  });

  it('refuses pools of the wrong family or size, and an empty section', () => {
    const p = (cidr: string) => parse(`fake_ip:\n  cidr: "${cidr}"\n`).problems;
    assert.match(p('fd00::/64')[0], /^ns.yaml:2: fake_ip.cidr: "fd00::" is not an IPv4 address \(the pool is IPv4 only/);
    assert.match(p('10.0.0.0/8')[0], /prefix \/8 is outside \/12 to \/30/);
    assert.match(p('198.18.0.0/31')[0], /prefix \/31 is outside/);
    assert.match(p('127.0.0.0/16')[0], /overlaps 127.0.0.0\/8 \(loopback\)/);
    assert.deepEqual(parse('fake_ip:\n').problems, ['ns.yaml:1: fake_ip: must be a mapping of keys to values']);
  });
});

describe('openFakeIpPool', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fakeip-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('opens the configured pool with its patterns and filter files, listing lines left out', () => {
    const list = join(dir, 'filter.txt');
    writeFileSync(list, '# from a Clash setup\n+.msftconnecttest.com\nstun.*.*\n*bad\n');
    const c: FakeIpConfig = {
      enabled: true, cidr: '198.18.0.0/24', db_file: join(dir, 'sub', 'fakeip.db'), ttl: 2, filter: ['*.lan'], filter_files: [list],
    };
    const { pool, problems } = openFakeIpPool(c);
    try {
      assert.deepEqual(problems, [`${list}:4: "*bad": "*" stands for a whole label (*.example.com, a.*.example.com)`]);
      assert.equal(pool.ttl, 2);
      assert.equal(pool.stats().capacity, 253);
      for (const n of ['nas.lan', 'www.msftconnecttest.com', 'stun.l.google']) assert.equal(pool.filtered(n), true, n);
      assert.equal(pool.filtered('example.com'), false);
      assert.equal(pool.assign('example.com'), '198.18.0.2');
    } finally {
      pool.close();
    }
    assert.throws(() => openFakeIpPool({ ...c, filter_files: [join(dir, 'nope.txt')] }), (e: Error) => e instanceof FakeIpError && /nope.txt: cannot read/.test(e.message));
  });
});
