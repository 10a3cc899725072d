// The wire format: query parsing (every rejection reason), names with compression (loops refused), answer inspection,
// and the encoder, checked against dns-packet as an independent codec.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import {
  FLAG, RCODE, TYPE, checkName, decodeMessage, emptyAnswer, encodeMessage, hashName, inspectAnswer, isProblem, nameLabels, optRecord,
  parseQuery, questionKey, queryName, readName, suffixHashes, type Query, type QueryProblem,
} from './wire.ts';
import { queryPacket, recs } from './testing.suite.ts';

function parsed(buf: Buffer): Query {
  const q = parseQuery(buf);
  assert.ok(q && !isProblem(q), `expected a query, got ${JSON.stringify(q)}`);
  return q as Query;
}

function problem(buf: Buffer): QueryProblem {
  const q = parseQuery(buf);
  assert.ok(q && isProblem(q), `expected a problem, got ${q === null ? 'a drop' : 'a query'}`);
  return q as QueryProblem;
}

describe('parseQuery', () => {
  it('reads the question, EDNS size and DO bit', () => {
    const q = parsed(queryPacket('WWW.Example.COM', 'AAAA', { edns: 4096, dnssecOk: true, id: 0x1234 }));
    assert.equal(q.id, 0x1234);
    assert.equal(q.qtype, TYPE.AAAA);
    assert.equal(q.qclass, 1);
    assert.equal(q.edns, true);
    assert.equal(q.udpSize, 4096);
    assert.equal(q.dnssecOk, true);
    assert.equal(queryName(q), 'www.example.com');
    assert.equal(q.nameHash, hashName('www.example.com'));
  });

  it('gives the same key whatever the case, and different keys for other types and DO bits', () => {
    const a = parsed(queryPacket('Example.com', 'A'));
    const b = parsed(queryPacket('eXAMPLE.COM', 'A'));
    assert.equal(a.key, b.key);
    assert.notEqual(a.key, parsed(queryPacket('example.com', 'AAAA')).key);
    assert.notEqual(a.key, parsed(queryPacket('example.com', 'A', { dnssecOk: true })).key);
  });

  it('treats a missing OPT as 512 bytes and a tiny advertised size as 512', () => {
    assert.equal(parsed(queryPacket('a.b', 'A', { edns: false })).udpSize, 512);
    assert.equal(parsed(queryPacket('a.b', 'A', { edns: 100 })).udpSize, 512);
  });

  it('hashes every parent name, longest first', () => {
    const q = parsed(queryPacket('a.b.example.com', 'A'));
    assert.deepEqual(suffixHashes(q), ['a.b.example.com', 'b.example.com', 'example.com', 'com'].map(hashName));
    assert.deepEqual(suffixHashes(parsed(queryPacket('.', 'NS'))), []);
  });

  it('drops packets shorter than a header and responses', () => {
    assert.equal(parseQuery(Buffer.alloc(11)), null);
    const r = queryPacket('a.b', 'A');
    r[2] |= 0x80;
    assert.equal(parseQuery(r), null);
  });

  it('answers other opcodes with NOTIMP', () => {
    const p = queryPacket('a.b', 'A');
    p[2] |= 4 << 3; // STATUS
    assert.equal(problem(p).rcode, RCODE.NOTIMP);
  });

  it('answers FORMERR for bad counts, labels, pointers, truncation and trailing bytes', () => {
    const base = queryPacket('abc.example', 'A', { edns: false });
    const cases: [string, (b: Buffer) => Buffer][] = [
      ['two questions', (b) => (b.writeUInt16BE(2, 4), b)],
      ['an answer record in a query', (b) => (b.writeUInt16BE(1, 6), b)],
      ['a label longer than 63', (b) => ((b[12] = 64), b)],
      ['a compression pointer in the question', (b) => Buffer.concat([b.subarray(0, 12), Buffer.from([0xc0, 0x0c]), b.subarray(b.length - 4)])],
      ['a question cut short', (b) => b.subarray(0, b.length - 2)],
      ['a name running off the end', (b) => b.subarray(0, 15)],
      ['trailing bytes', (b) => Buffer.concat([b, Buffer.from([0])])],
      ['an additional record missing', (b) => (b.writeUInt16BE(1, 10), b)],
    ];
    for (const [what, mutate] of cases) assert.equal(problem(mutate(Buffer.from(base))).rcode, RCODE.FORMERR, what);
  });

  it('refuses a name longer than 255 bytes', () => {
    const labels = Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)]));
    const p = Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
    assert.equal(problem(p).rcode, RCODE.FORMERR);
  });

  it('refuses two OPT records, an OPT not owned by the root, and options that do not tile', () => {
    const one = queryPacket('a.b', 'A');
    const opt = one.subarray(one.length - 11);
    const two = Buffer.concat([one, opt]);
    two.writeUInt16BE(2, 10);
    assert.equal(problem(two).rcode, RCODE.FORMERR);
    const badOpts = Buffer.concat([one.subarray(0, one.length - 2), Buffer.from([0, 3, 0, 10, 0])]);
    badOpts.writeUInt16BE(3, one.length - 2);
    assert.equal(problem(badOpts).rcode, RCODE.FORMERR);
    const named = Buffer.concat([one.subarray(0, one.length - 11), Buffer.from([1, 0x61, 0]), opt.subarray(1)]);
    assert.equal(problem(named).rcode, RCODE.FORMERR);
  });

  it('answers EDNS versions above 0 with BADVERS', () => {
    const p = queryPacket('a.b', 'A');
    p[p.length - 5] = 1; // the OPT's version byte
    const pr = problem(p);
    assert.equal(pr.rcode, RCODE.BADVERS);
    assert.equal(pr.edns, true);
  });
});

describe('questionKey', () => {
  it('gives every type and class of one name its own key (the cache relies on it)', () => {
    for (const name of ['', 'example.com', 'a.very.long.name.example.org']) {
      for (const [dnssecOk, cd] of [[false, false], [true, false], [true, true]] as const) {
        const h = hashName(name);
        const byType = new Set(Array.from({ length: 65536 }, (_, t) => questionKey(h, t, 1, dnssecOk, cd)));
        assert.equal(byType.size, 65536);
        const byClass = new Set(Array.from({ length: 65536 }, (_, c) => questionKey(h, TYPE.A, c, dnssecOk, cd)));
        assert.equal(byClass.size, 65536);
      }
    }
  });
});

describe('names', () => {
  it('follows compression pointers and refuses loops and forward pointers', () => {
    const buf = Buffer.from([3, 0x61, 0x62, 0x63, 0, 1, 0x78, 0xc0, 0]);
    assert.deepEqual(readName(buf, 5), { name: 'x.abc', next: 9 });
    const loop = Buffer.from([0xc0, 0]);
    assert.equal(checkName(loop, 0), -1);
    const twoStep = Buffer.from([1, 0x61, 0xc0, 3, 1, 0x62, 0xc0, 0]);
    assert.equal(checkName(twoStep, 4), -1, 'pointer to a later offset');
    assert.equal(checkName(Buffer.from([5, 0x61]), 0), -1, 'label past the end');
  });

  it('escapes dots and odd bytes and reads them back', () => {
    const labels = nameLabels('a\\.b.c\\032d');
    assert.deepEqual(labels.map((l) => l.toString('latin1')), ['a.b', 'c d']);
    const w = encodeMessage({ id: 1, flags: 0, question: { name: 'a\\.b.c\\032d', type: 1, cls: 1 } });
    assert.equal(decodeMessage(w).questions[0].name, 'a\\.b.c\\032d');
  });

  it('refuses empty and over-long labels', () => {
    assert.throws(() => nameLabels('a..b'), /empty label/);
    assert.throws(() => nameLabels(`${'x'.repeat(64)}.com`), /longer than 63/);
  });
});

describe('encodeMessage', () => {
  it('writes what dns-packet reads, with compressed names', () => {
    const wire = encodeMessage({
      id: 7,
      flags: FLAG.QR | FLAG.AA | FLAG.RA,
      question: { name: 'mail.example.lan', type: TYPE.MX, cls: 1 },
      answers: [
        { name: 'mail.example.lan', type: TYPE.MX, cls: 1, ttl: 60, data: { kind: 'mx', preference: 10, exchange: 'mx1.example.lan' } },
        { name: 'mail.example.lan', type: TYPE.TXT, cls: 1, ttl: 60, data: { kind: 'txt', strings: [Buffer.from('hi'), Buffer.from('there')] } },
        { name: 'example.lan', type: TYPE.SRV, cls: 1, ttl: 5, data: { kind: 'srv', priority: 1, weight: 2, port: 3, target: 'sip.example.lan' } },
        { name: 'x.lan', type: 65280, cls: 1, ttl: 5, data: { kind: 'raw', bytes: Buffer.from([1, 2, 3]) } },
      ],
      authorities: [
        { name: 'example.lan', type: TYPE.SOA, cls: 1, ttl: 9, data: { kind: 'soa', mname: 'ns.example.lan', rname: 'h.example.lan', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } },
      ],
    });
    const d = dnsPacket.decode(wire);
    const an = recs(d.answers);
    assert.equal(d.id, 7);
    assert.deepEqual(an[0].data, { preference: 10, exchange: 'mx1.example.lan' });
    assert.deepEqual((an[1].data as Buffer[]).map(String), ['hi', 'there']);
    assert.deepEqual(an[2].data, { priority: 1, weight: 2, port: 3, target: 'sip.example.lan' });
    assert.deepEqual(an[3].data, Buffer.from([1, 2, 3]));
    assert.equal((recs(d.authorities)[0].data as dnsPacket.SoaData).minimum, 5);
    // "example.lan" is written in the question and pointed to afterwards, except by the SRV target, which RFC 2782
    // forbids compressing.
    assert.equal(wire.toString('latin1').split('example').length - 1, 2);
    const back = decodeMessage(wire);
    assert.equal(back.answers[0].data.kind, 'mx');
    assert.equal(back.authorities[0].data.kind, 'soa');
  });
});

describe('inspectAnswer', () => {
  const sent = queryPacket('example.com', 'A');
  const qEnd = parsed(sent).qEnd;
  const answer = (p: Partial<dnsPacket.Packet>) =>
    dnsPacket.encode({ type: 'response', id: 1, flags: 0, questions: [{ name: 'Example.COM', type: 'A', class: 'IN' }], ...p });

  it('finds TTL offsets, the smallest answer TTL, and the OPT to cut', () => {
    const buf = answer({
      answers: [{ name: 'example.com', type: 'A', ttl: 300, data: '1.2.3.4' }, { name: 'example.com', type: 'A', ttl: 120, data: '1.2.3.5' }],
      additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: 0 } as dnsPacket.Answer],
    });
    const info = inspectAnswer(buf, sent, qEnd, TYPE.A);
    assert.ok(typeof info !== 'string');
    assert.equal(info.ttlOffsets.length, 2);
    assert.equal(info.minAnswerTtl, 120);
    assert.equal(info.cutAt, buf.length - 11);
    assert.equal(info.arcountKept, 0);
    assert.equal(info.hasQtype, true);
    for (const off of info.ttlOffsets) assert.ok([300, 120].includes(buf.readUInt32BE(off)));
  });

  it('takes the negative TTL from the SOA: the smaller of its TTL and MINIMUM', () => {
    const buf = answer({
      flags: RCODE.NXDOMAIN,
      authorities: [{ name: 'com', type: 'SOA', ttl: 900, data: { mname: 'a.com', rname: 'b.com', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60 } }],
    });
    const info = inspectAnswer(buf, sent, qEnd, TYPE.A);
    assert.ok(typeof info !== 'string');
    assert.equal(info.rcode, RCODE.NXDOMAIN);
    assert.equal(info.negativeTtl, 60);
  });

  it('rejects answers to other questions, without QR, or with stray bytes', () => {
    const other = dnsPacket.encode({ type: 'response', id: 1, questions: [{ name: 'example.org', type: 'A' }] });
    assert.match(String(inspectAnswer(other, sent, qEnd, TYPE.A)), /different question/);
    const noQr = answer({});
    noQr[2] &= 0x7f;
    assert.match(String(inspectAnswer(noQr, sent, qEnd, TYPE.A)), /QR/);
    assert.match(String(inspectAnswer(Buffer.concat([answer({}), Buffer.from([1])]), sent, qEnd, TYPE.A)), /stray/);
  });
});

describe('emptyAnswer', () => {
  it('echoes id, question, RD and CD, sets QR and RA, and appends an OPT', () => {
    const q = parsed(queryPacket('a.example', 'A', { id: 99 }));
    const out = emptyAnswer(q.msg, q.qEnd, RCODE.NXDOMAIN, FLAG.TC, optRecord(1232, 0, false));
    const d = dnsPacket.decode(out);
    assert.equal(d.id, 99);
    assert.equal(d.flag_qr && d.flag_rd && d.flag_ra && d.flag_tc, true);
    assert.equal(out[3] & 0xf, RCODE.NXDOMAIN);
    assert.equal(d.questions?.[0].name, 'a.example');
    assert.equal((d.additionals?.[0] as dnsPacket.OptAnswer).udpPayloadSize, 1232);
  });
});
