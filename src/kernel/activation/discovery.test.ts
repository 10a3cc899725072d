// The mDNS records an unactivated device announces and what a device makes of the announcements it hears (the
// sockets themselves are exercised between network namespaces in test/ui-activation.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import packet from 'dns-packet';
import { DiscoveryTable, RECORD_TTL_SEC, SERVICE_TYPE, announcementRecords, parseResponse } from './discovery.ts';

const SELF = { instance: 'ood1-a1b2c3', name: 'ood1', port: 3182, version: '0.1.0', addresses: ['192.168.1.20'] };

/** Through the wire format and back, as a listener receives them. */
const roundTrip = (answers: ReturnType<typeof announcementRecords>) => packet.decode(packet.encode({ type: 'response', flags: packet.AUTHORITATIVE_ANSWER, answers })).answers ?? [];

describe('mDNS announcement', () => {
  it('announces PTR, SRV, TXT and A records for the activation port', () => {
    const recs = announcementRecords(SELF);
    assert.deepEqual(recs.map((r) => r.type), ['PTR', 'SRV', 'TXT', 'A']);
    assert.ok(recs.every((r) => r.type !== 'OPT' && r.ttl === RECORD_TTL_SEC));
    assert.deepEqual(recs[0], { name: SERVICE_TYPE, type: 'PTR', ttl: RECORD_TTL_SEC, data: `ood1-a1b2c3.${SERVICE_TYPE}` });
    assert.ok(announcementRecords(SELF, 0).every((r) => r.type !== 'OPT' && r.ttl === 0), 'a goodbye has TTL 0');
  });

  it('is understood by a listener: name, port and version, at the address the packet came from', () => {
    const heard = parseResponse(roundTrip(announcementRecords(SELF)), '10.0.0.5');
    assert.deepEqual(heard, [{ instance: 'ood1-a1b2c3', name: 'ood1', address: '10.0.0.5', port: 3182, version: '0.1.0', ttl: RECORD_TTL_SEC }]);
  });

  it('ignores other services, malformed instances, missing ports and activated devices', () => {
    const other = roundTrip([{ name: '_http._tcp.local', type: 'PTR', ttl: 120, data: `x._http._tcp.local` }]);
    assert.deepEqual(parseResponse(other, '10.0.0.5'), []);
    const bad = roundTrip([{ name: SERVICE_TYPE, type: 'PTR', ttl: 120, data: `Bad Name!.${SERVICE_TYPE}` }]);
    assert.deepEqual(parseResponse(bad, '10.0.0.5'), []);
    const noSrv = roundTrip(announcementRecords(SELF).filter((r) => r.type !== 'SRV'));
    assert.deepEqual(parseResponse(noSrv, '10.0.0.5'), []);
    const activated = roundTrip(announcementRecords(SELF).map((r) => (r.type === 'TXT' ? { ...r, data: ['v=1', 'activated=1'] } : r)));
    assert.deepEqual(parseResponse(activated, '10.0.0.5'), []);
  });
});

describe('discovery table', () => {
  const heard = (instance: string, ttl = 120, address = '10.0.0.5') => ({ instance, name: instance.split('-')[0]!, address, port: 3182, version: '0.1.0', ttl });

  it('lists what it heard, not itself, until the TTL runs out or a goodbye', () => {
    const t = new DiscoveryTable('self-000000');
    t.add([heard('self-000000'), heard('node2-111111'), heard('ood3-222222', 10, '10.0.0.7')], 1000);
    assert.deepEqual(t.list(2000).map((d) => [d.name, d.url, d.seen_at]), [['node2', 'http://10.0.0.5:3182/', 1000], ['ood3', 'http://10.0.0.7:3182/', 1000]]);
    assert.deepEqual(t.list(11_001).map((d) => d.name), ['node2'], 'ood3 expired');
    t.add([heard('node2-111111', 0)], 12_000);
    assert.deepEqual(t.list(12_000), [], 'node2 said goodbye');
  });

  it('writes an IPv6 address in brackets in the page address', () => {
    const t = new DiscoveryTable('self-000000');
    t.add([heard('node2-111111', 120, 'fe80::1')], 0);
    assert.equal(t.list(0)[0]!.url, 'http://[fe80::1]:3182/');
  });
});
