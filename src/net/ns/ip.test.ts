import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CidrMap, formatIPv6, parseIP, parseIPv4, parseIPv6, reverseName } from './ip.ts';

describe('addresses', () => {
  it('parses dotted quads strictly', () => {
    assert.deepEqual([...parseIPv4('192.168.1.10')!], [192, 168, 1, 10]);
    for (const bad of ['1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '1.2.3.x', '']) assert.equal(parseIPv4(bad), undefined, bad);
  });

  it('parses IPv6 with ::, embedded IPv4, and formats per RFC 5952', () => {
    assert.equal(formatIPv6(parseIPv6('fd00:0:0:0:0:0:0:10')!), 'fd00::10');
    assert.equal(formatIPv6(parseIPv6('::')!), '::');
    assert.equal(formatIPv6(parseIPv6('::1')!), '::1');
    assert.equal(formatIPv6(parseIPv6('2001:db8:0:0:1:0:0:1')!), '2001:db8::1:0:0:1');
    assert.deepEqual([...parseIPv6('::ffff:1.2.3.4')!.subarray(10)], [0xff, 0xff, 1, 2, 3, 4]);
    for (const bad of [':::', '1::2::3', '12345::', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9', 'g::1']) assert.equal(parseIPv6(bad), undefined, bad);
  });

  it('makes reverse names', () => {
    assert.equal(reverseName(parseIP('192.168.1.10')!), '10.1.168.192.in-addr.arpa');
    assert.equal(reverseName(parseIP('2001:db8::1')!), `1.0.0.0.${'0.'.repeat(20)}8.b.d.0.1.0.0.2.ip6.arpa`);
  });
});

describe('CidrMap', () => {
  it('picks the longest matching prefix, per family', () => {
    const m = new CidrMap<string>();
    assert.equal(m.add('192.168.0.0/16', 'lan'), undefined);
    assert.equal(m.add('192.168.1.0/24', 'kids'), undefined);
    assert.equal(m.add('192.168.1.7', 'one'), undefined);
    assert.equal(m.add('fd00::/8', 'v6'), undefined);
    assert.equal(m.lookup('192.168.1.7'), 'one');
    assert.equal(m.lookup('192.168.1.8'), 'kids');
    assert.equal(m.lookup('192.168.200.1'), 'lan');
    assert.equal(m.lookup('10.0.0.1'), undefined);
    assert.equal(m.lookup('fd12::1'), 'v6');
    assert.equal(m.lookup('not an address'), undefined);
  });

  it('says what is wrong with a bad prefix', () => {
    const m = new CidrMap<number>();
    assert.match(m.add('192.168.1.1/24', 1)!, /host bits/);
    assert.match(m.add('10.0.0.0/33', 1)!, /prefix length/);
    assert.match(m.add('banana/8', 1)!, /not an IPv4 or IPv6 address/);
  });
});
