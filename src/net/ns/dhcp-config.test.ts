// The `dhcp:` section: a full example and the defaults load into the typed form; every mistake is reported with its
// line and key, addresses are checked against the subnet and each other, and DHCP with several workers is refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseNsConfig } from './config.ts';

function problems(yaml: string): string[] {
  try {
    parseNsConfig(yaml, '/etc/cyfs-ns/ns.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${(err as Error).message}`);
    return err.problems.map((p) => p.replace('/etc/cyfs-ns/ns.yaml:', ''));
  }
  assert.fail('expected the configuration to be refused');
}

const BASE = `dhcp:
  interface_address: 192.168.1.1
  range: { start: 192.168.1.100, end: 192.168.1.200, netmask: 255.255.255.0 }
`;

describe('dhcp configuration', () => {
  it('loads a full section', () => {
    const c = parseNsConfig(`
dhcp:
  interface_address: 192.168.1.1
  port: 6767
  range: { start: 192.168.1.100, end: 192.168.1.200, netmask: 255.255.255.0 }
  lease_time: 3600
  router: 192.168.1.254
  dns_servers: [192.168.1.1, 9.9.9.9]
  domain: Home.Arpa.
  lease_file: state/leases.json
  static:
    - { mac: "AA-BB-CC-DD-EE-FF", address: 192.168.1.10, name: NAS }
    - { mac: "02:00:00:00:00:01", address: 192.168.1.150 }
`, '/etc/cyfs-ns/ns.yaml');
    assert.deepEqual(c.dhcp, {
      interface_address: '192.168.1.1',
      port: 6767,
      range: { start: '192.168.1.100', end: '192.168.1.200', netmask: '255.255.255.0' },
      lease_time: 3600,
      router: '192.168.1.254',
      dns_servers: ['192.168.1.1', '9.9.9.9'],
      domain: 'home.arpa',
      lease_file: '/etc/cyfs-ns/state/leases.json',
      static: [
        { mac: 'aa:bb:cc:dd:ee:ff', address: '192.168.1.10', name: 'nas' },
        { mac: '02:00:00:00:00:01', address: '192.168.1.150', name: null },
      ],
    });
  });

  it('fills in the defaults, and is off when absent', () => {
    const c = parseNsConfig(BASE, 'ns.yaml');
    assert.deepEqual(c.dhcp, {
      interface_address: '192.168.1.1', port: 67, range: { start: '192.168.1.100', end: '192.168.1.200', netmask: '255.255.255.0' },
      lease_time: 43200, router: '192.168.1.1', dns_servers: ['192.168.1.1'], domain: 'lan', lease_file: null, static: [],
    });
    assert.equal(parseNsConfig('workers: 2\n', 'ns.yaml').dhcp, null);
  });

  it('reports every mistake with its line', () => {
    assert.deepEqual(problems(`dhcp:
  interface_address: 192.168.1.1
  range: { start: 192.168.1.100, end: 192.168.1.200, netmask: 255.255.255.0 }
  lease_time: 60
  router: 10.0.0.1
  dns_servers: [192.168.1.1, dns.example]
  domain: "bad domain"
  lease_fil: x
  static:
    - { mac: "aa:bb:cc:dd:ee:ff", address: 192.168.1.10, name: nas }
    - { mac: "AA:BB:CC:DD:EE:FF", address: 192.168.1.10, name: nas }
    - { mac: "aa:bb:cc:dd:ee", address: 192.168.2.10 }
    - { mac: "02:00:00:00:00:02", address: 192.168.1.255, name: "a.b" }
    - { mac: "02:00:00:00:00:03", address: 192.168.1.1 }
    - { address: 192.168.1.20, hw: x }
`), [
      '4: dhcp.lease_time: must be a whole number from 120 to 31536000',
      '5: dhcp.router: 10.0.0.1 is outside the subnet 192.168.1.0/24; the router must be a host address on it',
      '6: dhcp.dns_servers[1]: "dns.example" is not an IPv4 address',
      '7: dhcp.domain: "bad domain" is not a domain name (letters, digits, "-", "_" and dots)',
      '8: dhcp.lease_fil: unknown key (known here: interface_address, port, range, lease_time, router, dns_servers, domain, lease_file, static)',
      '11: dhcp.static[1].mac: aa:bb:cc:dd:ee:ff has two static leases',
      '11: dhcp.static[1].address: 192.168.1.10 is given to two clients',
      '11: dhcp.static[1].name: "nas" names two static leases',
      '12: dhcp.static[2].mac: "aa:bb:cc:dd:ee" is not a MAC address (aa:bb:cc:dd:ee:ff)',
      '12: dhcp.static[2].address: 192.168.2.10 is outside the subnet 192.168.1.0/24; a static address must be a host address on it',
      '13: dhcp.static[3].address: 192.168.1.255 is the broadcast address of the subnet; a static address must be a host address on it',
      '13: dhcp.static[3].name: "a.b" is not a DNS label (letters, digits and "-", up to 63, no dots)',
      '14: dhcp.static[4].address: 192.168.1.1 is interface_address, the server\'s own',
      '15: dhcp.static[5].hw: unknown key (known here: mac, address, name)',
      '15: dhcp.static[5]: needs mac',
    ]);
  });

  it('checks the range against the subnet and the server\'s own address', () => {
    assert.deepEqual(problems('dhcp: { range: { start: 10.0.0.1 } }\n'), [
      '1: dhcp: needs interface_address',
      '1: dhcp.range: needs end',
      '1: dhcp.range: needs netmask',
    ]);
    const range = (r: string, iface = '192.168.1.1') => problems(`dhcp:\n  interface_address: ${iface}\n  range: ${r}\n`);
    assert.deepEqual(range('{ start: 192.168.1.100, end: 192.168.1.200, netmask: 255.0.255.0 }'), [
      '3: dhcp.range.netmask: 255.0.255.0 is not a netmask from /8 to /30 (contiguous ones, then zeros)',
    ]);
    assert.deepEqual(range('{ start: 192.168.1.200, end: 192.168.1.100, netmask: 255.255.255.0 }'), [
      '3: dhcp.range: start 192.168.1.200 is after end 192.168.1.100',
    ]);
    assert.deepEqual(range('{ start: 192.168.1.0, end: 192.168.2.1, netmask: 255.255.255.0 }'), [
      '3: dhcp.range.start: 192.168.1.0 is the network address of the subnet; the range must be a host address on it',
      '3: dhcp.range.end: 192.168.2.1 is outside the subnet 192.168.1.0/24; the range must be a host address on it',
    ]);
    assert.deepEqual(range('{ start: 192.168.1.1, end: 192.168.1.50, netmask: 255.255.255.0 }'), [
      '3: dhcp.range: includes interface_address 192.168.1.1; the server\'s own address cannot be handed out',
    ]);
    assert.deepEqual(range('{ start: 10.0.0.2, end: 10.2.0.1, netmask: 255.0.0.0 }', '10.0.0.1'), ['3: dhcp.range: 131072 addresses; at most 65536']);
    assert.deepEqual(range('{ start: 192.168.1.10, end: 192.168.1.20, netmask: 255.255.255.0 }', '192.168.1.255'), [
      '2: dhcp.interface_address: 192.168.1.255 is the broadcast address of the subnet; an address must be a host address on it',
    ]);
  });

  it('refuses dhcp with several workers', () => {
    assert.deepEqual(problems(`workers: 2\n${BASE}`), ['1: workers: must be 1 when dhcp is set (the DHCP names live in one process)']);
  });
});
