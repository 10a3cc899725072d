// The lease database on a clock the test moves: allocation (static, previous, requested, fresh), expiry, release,
// decline, a range that runs out and a flood that cannot grow the table past it, client identity, and the lease file:
// written whole, read back after a restart, bad entries left out with a reason, a broken file refused.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, DECLINE_HOLD_MS, LeaseDb, type LeaseDbOptions, OFFER_HOLD_MS } from './dhcp-leases.ts';

const mac = (n: number) => `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`;
const client = (n: number, clientId: string | null = null): Client => ({ mac: mac(n), clientId });
const STATIC = { mac: mac(0xaa), address: '192.168.1.10', name: 'nas' };
const IN_RANGE_STATIC = { mac: mac(0xbb), address: '192.168.1.102', name: null };

describe('DHCP lease database', () => {
  let dir: string;
  let t: number;
  let n = 0;
  const db = (over: Partial<LeaseDbOptions> = {}) =>
    new LeaseDb({ start: '192.168.1.100', end: '192.168.1.109', statics: [STATIC, IN_RANGE_STATIC], leaseTime: 3600, file: null, now: () => t, ...over });
  const file = () => join(dir, `leases-${n++}`, 'leases.json');

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'dhcp-leases-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('offers range addresses, the same one again to the same client, and binds it', () => {
    t = 1_000_000;
    const d = db();
    const a = d.offer(client(1), null, 'laptop')!;
    const b = d.offer(client(2), null, null)!;
    assert.notEqual(a.address, b.address);
    for (const l of [a, b]) {
      const last = Number(l.address.split('.')[3]);
      assert.ok(last >= 100 && last <= 109 && last !== 102, l.address);
    }
    assert.equal(d.offer(client(1), null, null)!.address, a.address);
    assert.deepEqual(d.active(), []);
    const bound = d.commit(client(1), a.address, null);
    assert.ok(typeof bound !== 'string');
    assert.equal(bound.hostname, 'laptop');
    assert.equal(bound.expires, t + 3_600_000);
    assert.deepEqual(d.active().map((l) => l.address), [a.address]);
  });

  it('gives a client its previous address after the lease expired, unless someone else took it', () => {
    t = 1_000_000;
    const d = db();
    const first = d.offer(client(1), null, null)!.address;
    d.commit(client(1), first, null);
    t += 3_600_001;
    assert.deepEqual(d.active(), []);
    for (let i = 2; i < 7; i++) d.commit(client(i), d.offer(client(i), null, null)!.address, null);
    assert.equal(d.offer(client(1), null, null)!.address, first);
    // Another client asking for it explicitly may have it once it has expired...
    t += 3_600_001;
    assert.ok(typeof d.commit(client(9), first, null) !== 'string');
    // ...and then the first client gets another one.
    assert.notEqual(d.offer(client(1), null, null)!.address, first);
  });

  it('honours a requested address when it is free, not when another client holds it', () => {
    t = 1_000_000;
    const d = db();
    assert.equal(d.offer(client(1), '192.168.1.105', null)!.address, '192.168.1.105');
    d.commit(client(1), '192.168.1.105', null);
    assert.notEqual(d.offer(client(2), '192.168.1.105', null)!.address, '192.168.1.105');
    assert.match(d.commit(client(2), '192.168.1.105', null) as string, /leased to another client/);
    assert.match(d.commit(client(2), '192.168.1.150', null) as string, /outside the range/);
    assert.notEqual(d.offer(client(3), '192.168.1.102', null)!.address, '192.168.1.102');
    assert.match(d.commit(client(3), '192.168.1.102', null) as string, /reserved for another client/);
  });

  it('gives a static client its address only, inside the range or out of it', () => {
    t = 1_000_000;
    const d = db();
    assert.equal(d.offer(client(0xaa), '192.168.1.105', null)!.address, '192.168.1.10');
    assert.match(d.commit(client(0xaa), '192.168.1.105', null) as string, /this client's address is 192.168.1.10/);
    assert.ok(typeof d.commit(client(0xaa), '192.168.1.10', 'whatever') !== 'string');
    assert.equal(d.offer(client(0xbb), null, null)!.address, '192.168.1.102');
    assert.match(d.commit(client(3), '192.168.1.10', null) as string, /outside the range/);
  });

  it('runs out of addresses, and a flood of clients never holds more entries than the range', () => {
    t = 1_000_000;
    const d = db({ start: '192.168.1.100', end: '192.168.1.102' });
    for (let i = 1; i <= 2; i++) d.commit(client(i), d.offer(client(i), null, null)!.address, null);
    assert.equal(d.offer(client(3), null, null), undefined, 'two range addresses, the third is static');
    const big = db();
    for (let i = 0; i < 1000; i++) big.offer({ mac: `06:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, clientId: null }, null, null);
    assert.equal(big.all().length, 9);
    assert.equal(big.offer(client(0xcc), null, null), undefined);
    t += OFFER_HOLD_MS + 1;
    assert.ok(big.offer(client(0xcc), null, null), 'offers expire');
    assert.equal(big.all().length, 9);
  });

  it('keeps a declined address out of use for a while, and only its holder can decline it', () => {
    t = 1_000_000;
    const d = db({ start: '192.168.1.100', end: '192.168.1.100', statics: [] });
    d.commit(client(1), '192.168.1.100', null);
    assert.equal(d.decline(client(2), '192.168.1.100'), false);
    assert.equal(d.decline(client(1), '192.168.1.100'), true);
    assert.deepEqual(d.active(), []);
    assert.equal(d.offer(client(1), null, null), undefined);
    assert.match(d.commit(client(3), '192.168.1.100', null) as string, /declined/);
    t += DECLINE_HOLD_MS + 1;
    assert.equal(d.offer(client(3), null, null)!.address, '192.168.1.100');
  });

  it('ends a released lease at once but remembers it for its client; frees an offer taken elsewhere', () => {
    t = 1_000_000;
    const d = db();
    const a = d.offer(client(1), null, null)!.address;
    d.commit(client(1), a, null);
    assert.equal(d.release(client(2), a), false);
    assert.equal(d.release(client(1), a), true);
    assert.deepEqual(d.active(), []);
    assert.equal(d.offer(client(1), null, null)!.address, a);
    const b = d.offer(client(2), null, null)!.address;
    d.cancelOffer(client(2));
    assert.ok(!d.all().some((l) => l.address === b));
  });

  it('tells clients apart by client identifier when they send one', () => {
    t = 1_000_000;
    const d = db();
    const a = d.offer(client(1, '01aa'), null, null)!.address;
    d.commit(client(1, '01aa'), a, null);
    assert.match(d.commit(client(1, '01bb'), a, null) as string, /another client/);
    assert.match(d.commit(client(1), a, null) as string, /another client/);
  });

  it('writes the lease file atomically and reads it back after a restart', async () => {
    t = 1_000_000_000;
    const f = file();
    const d = db({ file: f });
    const a = d.offer(client(1, '0102'), null, 'laptop')!.address;
    d.commit(client(1, '0102'), a, 'laptop');
    const declined = d.offer(client(2), null, null)!.address;
    d.commit(client(2), declined, null);
    d.decline(client(2), declined);
    d.offer(client(3), null, null);
    await Promise.all([d.persist(), d.persist(), d.persist()]);
    const doc = JSON.parse(readFileSync(f, 'utf8'));
    assert.equal(doc.version, 1);
    assert.deepEqual(
      doc.leases.map((l: { address: string; state: string }) => [l.address, l.state]).sort(),
      [[a, 'bound'], [declined, 'declined']].sort(),
      'offers are not written',
    );
    assert.deepEqual(doc.leases.find((l: { state: string }) => l.state === 'bound'), {
      address: a, mac: mac(1), client_id: '0102', hostname: 'laptop', expires: 1_000_000 + 3600, state: 'bound',
    });
    assert.deepEqual(readdirSync(join(f, '..')), ['leases.json'], 'no temporary file left');

    const again = db({ file: f });
    assert.deepEqual(again.problems, []);
    assert.deepEqual(again.active().map((l) => [l.address, l.hostname]), [[a, 'laptop']]);
    assert.equal(again.offer(client(1, '0102'), null, null)!.address, a);
    assert.equal(again.offer(client(4), declined, null)!.address === declined, false, 'still declined');
  });

  it('settles every persist() with a write that includes the changes before it', async () => {
    t = 1_000_000_000;
    const f = file();
    const d = db({ file: f });
    const writes: Promise<void>[] = [];
    for (let i = 1; i <= 8; i++) {
      d.commit(client(i), d.offer(client(i), null, null)!.address, null);
      writes.push(d.persist().then(() => assert.ok(JSON.parse(readFileSync(f, 'utf8')).leases.length >= i)));
    }
    await Promise.all(writes);
    assert.equal(JSON.parse(readFileSync(f, 'utf8')).leases.length, 8);
  });

  it('leaves out unusable entries with the reason, and refuses a file it cannot read', () => {
    t = 1_000_000_000;
    const f = file();
    const good = { address: '192.168.1.101', mac: mac(1), client_id: null, hostname: 'pc', expires: 1_000_100, state: 'bound' };
    const entries = [
      good,
      { ...good, mac: mac(2) },
      { ...good, address: '192.168.1.150' },
      { ...good, address: '192.168.1.10', mac: mac(3) },
      { ...good, address: '192.168.1.103', mac: 'nope' },
      { ...good, address: '192.168.1.104', hostname: 'no spaces' },
      { ...good, address: '192.168.1.105', state: 'offered' },
      { ...good, address: '192.168.1.106', expires: -1 },
      { ...good, address: '192.168.1.107' },
      'junk',
    ];
    mkdirSync(join(f, '..'), { recursive: true });
    writeFileSync(f, JSON.stringify({ version: 1, leases: entries }));
    const d = db({ file: f });
    assert.deepEqual(d.problems, [
      'lease file entry 1: 192.168.1.101 appears twice',
      'lease file entry 2: 192.168.1.150 is neither in the range nor a static address (the configuration changed)',
      'lease file entry 3: 192.168.1.10 is now the static address of another client',
      'lease file entry 4: mac "nope" is not aa:bb:cc:dd:ee:ff',
      'lease file entry 5: hostname "no spaces" is not null or a DNS label',
      'lease file entry 6: state "offered" is neither "bound" nor "declined"',
      'lease file entry 7: expires -1 is not seconds since 1970',
      `lease file entry 8: client mac:${mac(1)} appears twice`,
      'lease file entry 9: not an object',
    ]);
    assert.deepEqual(d.active().map((l) => l.address), ['192.168.1.101']);

    writeFileSync(f, '{"version": 1, "leases": [');
    assert.throws(() => db({ file: f }), /is not JSON/);
    writeFileSync(f, 'null');
    assert.throws(() => db({ file: f }), /is not \{"version": 1/);
    const missing = join(dir, 'absent', 'leases.json');
    assert.deepEqual(db({ file: missing }).all(), []);
    assert.equal(existsSync(missing), false, 'nothing is written before persist()');
  });
});
