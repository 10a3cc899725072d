// Configuration: a full example loads into the typed form, and every kind of mistake is reported with its line.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, defaultConfig, parseNsConfig } from './config.ts';

function problems(yaml: string): string[] {
  try {
    parseNsConfig(yaml, 'ns.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${(err as Error).message}`);
    return err.problems;
  }
  assert.fail('expected the configuration to be refused');
}

const FULL = `
listen:
  addresses: [127.0.0.1, "::1"]
  port: 5353
  tcp: true
doh:
  address: 127.0.0.1
  port: 8053
  path: /dns-query
workers: 2
edns_udp_size: 1400
limits: { max_pending: 500, tcp_idle_ms: 5000, tcp_max_connections: 50 }
cache:
  max_entries: 5000
  min_ttl: 5
  max_ttl: 3600
  negative_max_ttl: 600
  serve_stale: { enabled: true, max_stale: 3600, answer_ttl: 30, client_timeout_ms: 500, retry_after: 10 }
  prefetch: { enabled: true, min_hits: 2, threshold: 0.2 }
upstreams:
  groups:
    default:
      strategy: parallel
      timeout_ms: 1500
      servers:
        - 1.1.1.1
        - "[2606:4700::1111]:53"
        - tcp://9.9.9.9
        - { url: "tls://dns.quad9.net", address: 9.9.9.9, ca_file: ca.pem }
        - { url: "https://dns.google/dns-query", address: 8.8.8.8 }
    corp:
      servers: [10.0.0.53]
  health: { fail_threshold: 2, down_ms: 5000 }
routes:
  - { suffix: corp.example, group: corp }
local:
  domains: [lan]
  ttl: 120
  negative_ttl: 30
  hosts_files: [hosts.txt]
  records:
    - { name: nas.lan, type: A, value: 192.168.1.10 }
    - { name: "*.apps.lan", type: CNAME, value: nas.lan }
    - { name: txt.lan, type: TXT, value: [one, two], ttl: 5 }
    - { name: x.lan, type: TYPE65280, value: "\\\\# 2 abcd" }
blocking:
  answer: zero_ip
  ttl: 10
  lists: [{ name: ads, file: /etc/ads.txt }]
  allow: [good.example]
  deny: [bad.example]
  policies:
    - { name: kids, lists: [ads], deny: [games.example], answer: nxdomain }
  clients:
    - { cidr: 192.168.1.0/24, policy: kids }
stats: { top: 10 }
query_log: { enabled: true }
log: { level: debug, dir: logs }
`;

describe('parseNsConfig', () => {
  it('loads a full configuration, resolving relative paths against the file', () => {
    const c = parseNsConfig(FULL, '/etc/cyfs-ns/ns.yaml');
    assert.deepEqual(c.listen, { addresses: ['127.0.0.1', '::1'], port: 5353, tcp: true });
    assert.deepEqual(c.doh, { address: '127.0.0.1', port: 8053, path: '/dns-query', tls: null });
    assert.equal(c.workers, 2);
    assert.equal(c.cache.prefetch.threshold, 0.2);
    const d = c.upstreams.groups.default;
    assert.equal(d.strategy, 'parallel');
    assert.deepEqual(d.servers.map((s) => [s.protocol, s.address, s.port]), [
      ['udp', '1.1.1.1', 53], ['udp', '2606:4700::1111', 53], ['tcp', '9.9.9.9', 53], ['tls', '9.9.9.9', 853], ['https', '8.8.8.8', 443],
    ]);
    assert.equal(d.servers[3].server_name, 'dns.quad9.net');
    assert.equal(d.servers[3].ca_file, '/etc/cyfs-ns/ca.pem');
    assert.equal(d.servers[4].path, '/dns-query');
    assert.deepEqual(c.routes, [{ suffix: 'corp.example', group: 'corp' }]);
    assert.deepEqual(c.local.hosts_files, ['/etc/cyfs-ns/hosts.txt']);
    assert.equal(c.local.records.length, 4);
    assert.deepEqual(c.local.records[2].value, ['one', 'two']);
    assert.equal(c.blocking.policies[0].answer, 'nxdomain');
    assert.equal(c.log.dir, '/etc/cyfs-ns/logs');
  });

  it('gives the defaults for an empty file', () => {
    assert.deepEqual(parseNsConfig('', ''), defaultConfig());
  });

  it('reports an unknown key with its line and the known ones', () => {
    const p = problems('listen:\n  port: 53\ncache:\n  max_entrys: 10\n');
    assert.equal(p.length, 1);
    assert.match(p[0], /^ns\.yaml:4: cache\.max_entrys: unknown key \(known here: max_entries, /);
  });

  it('reports every problem at once, each with its line', () => {
    const p = problems(
      [
        'listen:',
        '  port: 70000', // 2
        '  addresses: [banana]', // 3
        'upstreams:',
        '  groups:',
        '    default:',
        '      strategy: random', // 7
        '      servers: [ "ftp://1.2.3.4", "tls://dns.example" ]', // 8
        'routes:',
        '  - { suffix: corp.example, group: nowhere }', // 10
        'local:',
        '  records:',
        '    - { name: a.lan, type: A, value: 1.2.3.999 }', // 13
        '    - { name: b.lan, type: MX, value: "mail.lan" }', // 14
        '    - { name: c.lan, type: CNAME, value: a.lan }',
        '    - { name: c.lan, type: A, value: 1.2.3.4 }', // 16
        '    - { name: "bad name!", type: A, value: 1.2.3.4 }', // 17
        '    - { name: d.lan, type: WHAT, value: x }', // 18
        'blocking:',
        '  clients: [{ cidr: 10.0.0.1/8, policy: kids }]', // 20
      ].join('\n'),
    );
    const lines = p.map((x) => Number(/^ns\.yaml:(\d+):/.exec(x)?.[1]));
    assert.deepEqual(lines, [2, 3, 7, 8, 8, 10, 13, 14, 16, 17, 18, 20], p.join('\n'));
    assert.match(p[0], /listen\.port: must be a whole number from 0 to 65535/);
    assert.match(p[3], /unknown scheme "ftp:\/\/"/);
    assert.match(p[4], /is a name; give its IP with "address:"/);
    assert.match(p[5], /no upstream group "nowhere"/);
    assert.match(p[6], /"1\.2\.3\.999" is not an IPv4 address/);
    assert.match(p[7], /an MX value is "<preference> <mail host>"/);
    assert.match(p[8], /has a CNAME, so it can have no other record/);
    assert.match(p[11], /host bits/);
  });

  it('reports YAML syntax errors and duplicate keys with their lines', () => {
    assert.match(problems('listen:\n  port: 1\n  port: 2\n')[0], /^ns\.yaml:3: Map keys must be unique/);
    assert.match(problems('listen: [\n')[0], /^ns\.yaml:\d+: /);
  });

  it('refuses values of the wrong kind rather than coercing them', () => {
    assert.match(problems('listen: { tcp: "yes" }')[0], /listen\.tcp: must be true or false/);
    assert.match(problems('workers: 1.5')[0], /workers: must be a whole number/);
    assert.match(problems('blocking: { answer: refuse }')[0], /blocking\.answer: must be one of nxdomain, zero_ip/);
    assert.match(problems('cache: { min_ttl: 100, max_ttl: 50 }')[0], /cache\.min_ttl: is above cache\.max_ttl/);
  });
});
