// Fuzzing: seeded mutations of real queries and answers (bit flips, byte overwrites, truncation, random lengths,
// counts, and compression pointers made into loops) fed to the parsers, then to a running server over UDP and TCP.
// Nothing may throw (other than the decoder's WireError), loop or crash; a malformed query gets FORMERR (or NOTIMP,
// BADVERS) or no answer, and the server answers normally afterwards. Rerun a failure with FUZZ_SEED=<seed printed>.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import dnsPacket from 'dns-packet';
import { defaultConfig } from './config.ts';
import { NsServer } from './server.ts';
import { RCODE, WireError, checkName, decodeMessage, inspectAnswer, isProblem, parseQuery, queryName, suffixHashes } from './wire.ts';
import { ScriptedDns, ask, queryPacket, sendTcp, sendUdp } from './testing.suite.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed1) >>> 0;
console.log(`ns fuzz seed: ${SEED} (rerun with FUZZ_SEED=${SEED})`);

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const QUERIES = [
  queryPacket('nas.lan', 'A'),
  queryPacket('www.upstream.test', 'AAAA', { dnssecOk: true, edns: 4096 }),
  queryPacket('a.b.c.d.e.f.example', 'TXT', { edns: false }),
  queryPacket('_sip._tcp.lan', 'SRV'),
  // An OPT with options, and an additional record whose owner is a compression pointer to the question.
  dnsPacket.encode({
    type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'opt.lan', type: 'A' }],
    additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: 0, options: [{ code: 10, data: Buffer.alloc(8, 7) }] } as unknown as dnsPacket.Answer],
  }),
  Buffer.concat([queryPacket('ptr.lan', 'A', { edns: false }).subarray(0, 10), Buffer.from([0, 1]), queryPacket('ptr.lan', 'A', { edns: false }).subarray(12), Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4])]),
];

const ANSWERS = [
  dnsPacket.encode({
    type: 'response', id: 1, flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ name: 'www.example.com', type: 'A' }],
    answers: [
      { name: 'www.example.com', type: 'CNAME', ttl: 60, data: 'edge.example.net' },
      { name: 'edge.example.net', type: 'A', ttl: 20, data: '192.0.2.1' },
    ],
    authorities: [{ name: 'example.net', type: 'NS', ttl: 100, data: 'ns1.example.net' }],
    additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: 0 } as dnsPacket.Answer],
  }),
  dnsPacket.encode({
    type: 'response', id: 2, flags: 3, questions: [{ name: 'gone.example.com', type: 'MX' }],
    authorities: [{ name: 'example.com', type: 'SOA', ttl: 900, data: { mname: 'ns.example.com', rname: 'h.example.com', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 60 } }],
  }),
];

/** One mutation of `src`, chosen and shaped by `r`. */
function mutate(src: Buffer, r: () => number): Buffer {
  let b = Buffer.from(src);
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(r() * Math.max(1, b.length));
    switch (Math.floor(r() * 8)) {
      case 0: // bit flip
        if (b.length) b[at] ^= 1 << Math.floor(r() * 8);
        break;
      case 1: // random byte
        if (b.length) b[at] = Math.floor(r() * 256);
        break;
      case 2: // truncation
        b = b.subarray(0, at);
        break;
      case 3: // random bytes appended
        b = Buffer.concat([b, Buffer.from(Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256)))]);
        break;
      case 4: // a section count set to something random
        if (b.length >= 12) b.writeUInt16BE(Math.floor(r() * 6), 4 + 2 * Math.floor(r() * 4));
        break;
      case 5: // a compression pointer to itself or ahead: a loop
        if (b.length >= 14) {
          const p = 12 + Math.floor(r() * (b.length - 13));
          const target = r() < 0.5 ? p : Math.min(0x3fff, p + Math.floor(r() * 8));
          b[p] = 0xc0 | (target >> 8);
          b[p + 1] = target & 0xff;
        }
        break;
      case 6: // a label length that runs past the end
        if (b.length > 12) b[12 + Math.floor(r() * (b.length - 12))] = 63;
        break;
      case 7: // random length entirely
        b = Buffer.from(Array.from({ length: Math.floor(r() * 80) }, () => Math.floor(r() * 256)));
        break;
    }
  }
  return b;
}

describe('parser fuzz', () => {
  it('parseQuery never throws and returns consistent offsets', () => {
    const r = rng(SEED);
    let queries = 0;
    let problems = 0;
    for (let i = 0; i < 60_000; i++) {
      const pkt = mutate(QUERIES[i % QUERIES.length], r);
      const q = parseQuery(pkt);
      if (q === null) continue;
      if (isProblem(q)) {
        problems++;
        assert.ok([RCODE.FORMERR, RCODE.NOTIMP, RCODE.BADVERS].includes(q.rcode as 1 | 4 | 16));
        if (q.question) assert.ok(q.question.end <= pkt.length);
        continue;
      }
      queries++;
      assert.ok(q.nameEnd > 12 && q.nameEnd + 4 === q.qEnd && q.qEnd <= pkt.length);
      assert.ok(queryName(q).length <= 1024);
      assert.ok(suffixHashes(q).length <= 127);
    }
    assert.ok(queries > 1000 && problems > 1000, `both outcomes exercised (${queries} queries, ${problems} problems)`);
  });

  it('the answer walker and the decoder reject malformed answers without throwing anything else', () => {
    const r = rng(SEED + 1);
    const sent = queryPacket('www.example.com', 'A');
    const sentQ = parseQuery(sent);
    assert.ok(sentQ && !isProblem(sentQ));
    for (let i = 0; i < 30_000; i++) {
      const pkt = mutate(ANSWERS[i % ANSWERS.length], r);
      const info = inspectAnswer(pkt, sent, sentQ.qEnd, 1);
      if (typeof info !== 'string') {
        for (const off of info.ttlOffsets) assert.ok(off + 4 <= pkt.length);
        assert.ok(info.cutAt <= pkt.length);
      }
      try {
        decodeMessage(pkt);
      } catch (err) {
        assert.ok(err instanceof WireError, `decodeMessage threw ${(err as Error).stack}`);
      }
      for (let p = 0; p < Math.min(pkt.length, 64); p += 7) assert.ok(checkName(pkt, p) <= pkt.length);
    }
  });
});

describe('server fuzz', () => {
  let dir: string;
  let up: ScriptedDns;
  let ns: NsServer;
  const errors: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ns-fuzz-'));
    writeFileSync(join(dir, 'hosts'), '10.0.0.5 printer.lan\n');
    up = await ScriptedDns.start();
    up.set('www.upstream.test', 'AAAA', { answers: [{ name: 'www.upstream.test', type: 'AAAA', ttl: 60, data: '2001:db8::1' }] });
    const cfg = defaultConfig();
    cfg.listen = { addresses: ['127.0.0.1'], port: 0, tcp: true };
    cfg.local.domains = ['lan'];
    cfg.local.hosts_files = [join(dir, 'hosts')];
    cfg.local.records = [
      { name: 'nas.lan', type: 'A', value: '192.168.1.10', ttl: null, line: 1 },
      { name: '_sip._tcp.lan', type: 'SRV', value: '10 5 5060 nas.lan', ttl: null, line: 2 },
    ];
    cfg.upstreams.groups.default = {
      strategy: 'fallback', timeout_ms: 300,
      servers: [{ url: 'udp', protocol: 'udp', host: '127.0.0.1', address: '127.0.0.1', port: up.port, path: '', server_name: '127.0.0.1', ca_file: null }],
    };
    const log = pino({ level: 'error' }, { write: (line: string) => void errors.push(line) });
    ns = await NsServer.start({ config: cfg, log });
  });
  after(async () => {
    await ns.close();
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers every mutated UDP query well-formed (FORMERR for malformed ones) or not at all, and keeps serving', async () => {
    const r = rng(SEED + 2);
    const packets = Array.from({ length: 3000 }, (_, i) => mutate(QUERIES[i % QUERIES.length], r));
    const outcomes = { answered: 0, formerr: 0, silent: 0 };
    for (let i = 0; i < packets.length; i += 200) {
      await Promise.all(
        packets.slice(i, i + 200).map(async (pkt) => {
          const ours = parseQuery(pkt);
          // What the parser drops only needs a short wait to show it stays unanswered.
          const out = await sendUdp(ns.port, pkt, { timeoutMs: ours === null ? 150 : 2000 });
          if (out === null) {
            outcomes.silent++;
            assert.equal(ours, null, 'every query the parser accepts or refuses gets an answer');
            return;
          }
          assert.ok(out.length >= 12 && out[2] & 0x80, 'answers are responses');
          assert.equal(out.readUInt16BE(0), pkt.readUInt16BE(0), 'answers carry the query id');
          dnsPacket.decode(out);
          const rcode = out[3] & 0xf;
          if (ours && isProblem(ours)) {
            assert.equal(rcode, ours.rcode & 0xf);
            outcomes.formerr++;
          } else {
            assert.ok(ours, 'no answer for what the parser drops');
            outcomes.answered++;
          }
        }),
      );
    }
    assert.ok(outcomes.answered > 100 && outcomes.formerr > 100, JSON.stringify(outcomes));
    assert.deepEqual(errors, []);
    assert.deepEqual((await ask(ns.port, 'nas.lan', 'A')).answers.map((a) => a.data), ['192.168.1.10']);
  });

  it('survives garbage on TCP: bad lengths, half frames and mutated queries', async () => {
    const r = rng(SEED + 3);
    const sends = Array.from({ length: 300 }, (_, i) => {
      const pkt = mutate(QUERIES[i % QUERIES.length], r);
      // Every third goes out without its length prefix: the server sees a random length and half a frame.
      return sendTcp(ns.port, pkt, { raw: i % 3 === 0, timeoutMs: 1000 });
    });
    for (const out of await Promise.all(sends)) if (out) assert.ok(out.length >= 12 && out[2] & 0x80);
    assert.deepEqual(errors, []);
    assert.deepEqual((await ask(ns.port, 'nas.lan', 'A', { tcp: true })).answers.map((a) => a.data), ['192.168.1.10']);
  });
});
