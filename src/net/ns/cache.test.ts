// The stored answer form and the cache: TTLs counted down on the way out (never local data's), negative answers
// cached for their SOA's time, entries not asked for lately evicted first, and an entry never served for a question it
// does not answer.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { AnswerCache, F_NEGATIVE, Popularity, entryFlags, entryLifetime, entryStoredAt, materialize, packAnswer, packLocal } from './cache.ts';
import { CLASS_IN, FLAG, RCODE, TYPE, type Query, encodeMessage, inspectAnswer, isProblem, parseQuery } from './wire.ts';
import { queryPacket, recs, soa, type AskOptions } from './testing.suite.ts';

const LIMITS = { minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600 };

function query(name: string, type: string, opts: AskOptions = {}): Query {
  const q = parseQuery(queryPacket(name, type, opts));
  assert.ok(q && !isProblem(q));
  return q as Query;
}

function upstreamAnswer(q: Query, p: Partial<dnsPacket.Packet>, flags = 0): Buffer {
  return dnsPacket.encode({
    type: 'response', id: 4242, flags: flags | dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED,
    questions: dnsPacket.decode(q.msg).questions, ...p,
    additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 4096, flags: 0 } as dnsPacket.Answer],
  });
}

function pack(q: Query, resp: Buffer, storedAt = 1000) {
  const info = inspectAnswer(resp, q.msg, q.qEnd, q.qtype);
  assert.ok(typeof info !== 'string', String(info));
  return packAnswer(resp, info, q, LIMITS, storedAt);
}

describe('packAnswer and materialize', () => {
  const q = query('Host.Example.com', 'A', { id: 7 });
  const resp = upstreamAnswer(q, {
    answers: [
      { name: 'host.example.com', type: 'CNAME', ttl: 600, data: 'real.example.com' },
      { name: 'real.example.com', type: 'A', ttl: 300, data: '192.0.2.1' },
    ],
  });

  it('caches for the smallest answer TTL and counts every TTL down by the age', () => {
    const { entry, lifetime } = pack(q, resp);
    assert.equal(lifetime, 300);
    assert.equal(entryLifetime(entry), 300);
    assert.equal(entryStoredAt(entry), 1000);
    const out = dnsPacket.decode(materialize(entry, q, 100, -1, 1232));
    assert.deepEqual(recs(out.answers).map((a) => a.ttl), [500, 200]);
    assert.equal(out.id, 7);
  });

  it('answers in the client\'s own case, id and flags, with our OPT and none of the upstream\'s', () => {
    const { entry } = pack(q, resp);
    const other = query('HOST.EXAMPLE.COM', 'A', { id: 9, edns: false });
    const raw = materialize(entry, other, 0, -1, 1232);
    const out = dnsPacket.decode(raw);
    assert.equal(out.id, 9);
    assert.equal(out.questions?.[0].name, 'HOST.EXAMPLE.COM');
    assert.equal(out.additionals?.length, 0, 'no OPT for a client without EDNS');
    const withEdns = dnsPacket.decode(materialize(entry, q, 0, -1, 1400));
    const opt = withEdns.additionals?.[0] as dnsPacket.OptAnswer;
    assert.equal(opt.type, 'OPT');
    assert.equal(opt.udpPayloadSize, 1400);
  });

  it('sets every TTL to the stale TTL when serving stale, and never below zero otherwise', () => {
    const { entry } = pack(q, resp);
    assert.deepEqual(recs(dnsPacket.decode(materialize(entry, q, 0, 30, 1232)).answers).map((a) => a.ttl), [30, 30]);
    assert.deepEqual(recs(dnsPacket.decode(materialize(entry, q, 10_000, -1, 1232)).answers).map((a) => a.ttl), [0, 0]);
  });

  it('clears AD for clients that neither asked for DNSSEC nor set AD, and copies RD and CD', () => {
    const signed = upstreamAnswer(q, { answers: [{ name: 'host.example.com', type: 'A', ttl: 60, data: '192.0.2.1' }] }, dnsPacket.AUTHENTIC_DATA);
    const { entry } = pack(q, signed);
    assert.equal(materialize(entry, q, 0, -1, 1232).readUInt16BE(2) & FLAG.AD, 0);
    const doQuery = query('host.example.com', 'A', { dnssecOk: true });
    const { entry: doEntry } = pack(doQuery, upstreamAnswer(doQuery, { answers: [{ name: 'host.example.com', type: 'A', ttl: 60, data: '192.0.2.1' }] }, dnsPacket.AUTHENTIC_DATA));
    assert.notEqual(materialize(doEntry, doQuery, 0, -1, 1232).readUInt16BE(2) & FLAG.AD, 0);
    const noRd = query('host.example.com', 'A');
    noRd.flags &= ~FLAG.RD;
    assert.equal(materialize(entry, noRd, 0, -1, 1232).readUInt16BE(2) & FLAG.RD, 0);
  });

  it('caches NXDOMAIN and NODATA for min(SOA TTL, SOA MINIMUM), capped, and not at all without an SOA (RFC 2308)', () => {
    const nx = pack(q, upstreamAnswer(q, { authorities: [soa('example.com', 120, 900)] }, RCODE.NXDOMAIN));
    assert.equal(nx.lifetime, 120);
    assert.ok(entryFlags(nx.entry) & F_NEGATIVE);
    const aaaa = query('host.example.com', 'AAAA');
    assert.equal(pack(aaaa, upstreamAnswer(aaaa, { authorities: [soa('example.com', 99_999, 99_999)] })).lifetime, 3600, 'capped by negative_max_ttl');
    assert.equal(pack(q, upstreamAnswer(q, {}, RCODE.NXDOMAIN)).lifetime, 0);
    assert.equal(pack(q, upstreamAnswer(q, {}, RCODE.SERVFAIL)).lifetime, 0);
    // The SOA's TTL in the stored answer is the negative lifetime, and counts down too.
    const soaTtl = recs(dnsPacket.decode(materialize(nx.entry, q, 20, -1, 1232)).authorities)[0].ttl;
    assert.equal(soaTtl, 100);
  });

  it('never counts local data down, and keeps its AA and RCODE', () => {
    const wire = encodeMessage({
      id: 0, flags: FLAG.QR | FLAG.AA | FLAG.RA | RCODE.NXDOMAIN, question: { name: 'host.example.com', type: TYPE.A, cls: CLASS_IN },
      authorities: [{ name: 'example.com', type: TYPE.TXT, cls: CLASS_IN, ttl: 60, data: { kind: 'txt', strings: [Buffer.from('x')] } }],
    });
    const out = materialize(packLocal(wire, q), q, 50, -1, 1232);
    const flags = out.readUInt16BE(2);
    assert.equal(flags & FLAG.AA, FLAG.AA);
    assert.equal(flags & 0xf, RCODE.NXDOMAIN);
    assert.equal((flags >> 11) & 0xf, 0, 'opcode QUERY');
    assert.equal(recs(dnsPacket.decode(out).authorities)[0].ttl, 60);
  });

  it('clamps TTLs to the configured bounds and treats a TTL with the top bit set as zero', () => {
    const big = upstreamAnswer(q, { answers: [{ name: 'host.example.com', type: 'A', ttl: 999_999, data: '192.0.2.1' }] });
    assert.equal(pack(q, big).lifetime, 86400);
    const short = upstreamAnswer(q, { answers: [{ name: 'host.example.com', type: 'A', ttl: 10, data: '192.0.2.1' }] });
    const floored = packAnswer(short, inspectAnswer(short, q.msg, q.qEnd, TYPE.A) as never, q, { ...LIMITS, minTtl: 60 }, 0);
    assert.equal(floored.lifetime, 60);
    assert.equal(recs(dnsPacket.decode(materialize(floored.entry, q, 0, -1, 1232)).answers)[0].ttl, 60);
    const neg = upstreamAnswer(q, { answers: [{ name: 'host.example.com', type: 'A', ttl: 0x80000001, data: '192.0.2.1' }] });
    assert.equal(pack(q, neg).lifetime, 0);
  });
});

describe('AnswerCache', () => {
  const entryFor = (q: Query) =>
    pack(q, upstreamAnswer(q, { answers: [{ name: dnsPacket.decode(q.msg).questions![0].name, type: 'A', ttl: 60, data: '192.0.2.1' }] })).entry;

  it('evicts the least recently used entry beyond its size', () => {
    const cache = new AnswerCache(2);
    const [a, b, c] = ['a.example', 'b.example', 'c.example'].map((n) => query(n, 'A'));
    cache.set(a.key, entryFor(a));
    cache.set(b.key, entryFor(b));
    assert.ok(cache.get(a), 'a is now the most recently used');
    cache.set(c.key, entryFor(c));
    assert.equal(cache.size, 2);
    assert.equal(cache.evictions, 1);
    assert.equal(cache.get(b), undefined);
    assert.ok(cache.get(a));
    assert.ok(cache.get(c));
  });

  it('never answers a question the entry is not for (a key collision is a miss)', () => {
    const cache = new AnswerCache(10);
    const a = query('a.example', 'A');
    const b = query('b.example', 'A');
    cache.set(a.key, entryFor(b));
    assert.equal(cache.get(a), undefined);
    const doA = query('a.example', 'A', { dnssecOk: true });
    cache.set(doA.key, entryFor(a));
    assert.equal(cache.get(doA), undefined, 'an answer fetched without DO is not one for a DO query');
  });

  it('keeps entries in use, drops the oldest unused ones, and finds every entry it holds', () => {
    const cache = new AnswerCache(100);
    const hot = query('hot.example', 'A');
    cache.set(hot.key, entryFor(hot));
    const stored: Query[] = [];
    for (let i = 0; i < 1000; i++) {
      const q = query(`n${i}.example`, 'A');
      cache.set(q.key, entryFor(q));
      stored.push(q);
      assert.ok(cache.get(hot), `asked for all along, never evicted (${i})`);
    }
    assert.equal(cache.size, 100);
    assert.equal(cache.evictions, 901);
    assert.deepEqual(
      stored.map((q, i) => [i, cache.get(q) !== undefined]).filter(([, held]) => held).map(([i]) => i),
      Array.from({ length: 99 }, (_, i) => 901 + i),
    );
  });

  it('holds nothing with a size of zero', () => {
    const cache = new AnswerCache(0);
    const a = query('a.example', 'A');
    cache.set(a.key, entryFor(a));
    assert.equal(cache.get(a), undefined);
  });
});

describe('Popularity', () => {
  it('counts hits per key and halves them as time passes', () => {
    const p = new Popularity();
    for (let i = 0; i < 5; i++) p.hit(42);
    assert.equal(p.hit(42), 6);
    for (let i = 0; i < 1 << 20; i++) p.hit(7);
    assert.equal(p.hit(42), 4, 'halved once: 6 -> 3, then this hit');
  });
});
