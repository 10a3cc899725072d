// DHCP messages: a request assembled byte by byte as RFC 2131 lays it out (so the decoder is not only checked against
// the encoder), replies round-tripped, every refusal with its reason, option overload and split options (RFC 3396),
// and seeded mutations of real requests: nothing but DhcpParseError may come out, and nothing may hang.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  BOOTREPLY, BOOTREQUEST, type DhcpMessage, DhcpParseError, FLAG_BROADCAST, MSG, OPT, decodeDhcp, encodeDhcp, formatMac, intToIpv4,
  ipv4ToInt, messageType, optionIp,
} from './dhcp-packet.ts';

const MAC = [0x02, 0x42, 0xac, 0x11, 0x00, 0x07];

/** A DISCOVER as udhcpc sends it, laid out by hand: header, cookie, then options. */
function handDiscover(options: number[] = [53, 1, 1, 61, 7, 1, ...MAC, 12, 6, ...Buffer.from('laptop'), 55, 3, 1, 3, 6, 255]): Buffer {
  const b = Buffer.alloc(240 + options.length);
  b[0] = 1; // op
  b[1] = 1; // htype ethernet
  b[2] = 6; // hlen
  b.writeUInt32BE(0xdeadbeef, 4); // xid
  b.writeUInt16BE(3, 8); // secs
  b.writeUInt16BE(0x8000, 10); // broadcast
  Buffer.from(MAC).copy(b, 28);
  b.write('bootserver', 44, 'latin1');
  b.writeUInt32BE(0x63825363, 236);
  Buffer.from(options).copy(b, 240);
  return b;
}

function refused(buf: Buffer, pattern: RegExp): void {
  assert.throws(() => decodeDhcp(buf), (err: unknown) => err instanceof DhcpParseError && pattern.test(err.message));
}

function reply(options: Map<number, Buffer>): DhcpMessage {
  return {
    op: BOOTREPLY, htype: 1, hlen: 6, hops: 0, xid: 0x01020304, secs: 0, flags: FLAG_BROADCAST,
    ciaddr: '0.0.0.0', yiaddr: '192.168.1.100', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.concat([Buffer.from(MAC), Buffer.alloc(10)]), sname: '', file: '', options,
  };
}

describe('DHCP packets', () => {
  it('decodes a request laid out by hand', () => {
    const m = decodeDhcp(handDiscover());
    assert.equal(m.op, BOOTREQUEST);
    assert.equal(m.xid, 0xdeadbeef);
    assert.equal(m.secs, 3);
    assert.equal(m.flags & FLAG_BROADCAST, FLAG_BROADCAST);
    assert.equal(m.ciaddr, '0.0.0.0');
    assert.equal(formatMac(m.chaddr, m.hlen), '02:42:ac:11:00:07');
    assert.equal(m.sname, 'bootserver');
    assert.equal(m.file, '');
    assert.equal(messageType(m), MSG.DISCOVER);
    assert.equal(m.options.get(OPT.HOST_NAME)!.toString(), 'laptop');
    assert.deepEqual([...m.options.get(OPT.PARAMETERS)!], [1, 3, 6]);
    assert.equal(m.options.get(OPT.CLIENT_ID)!.toString('hex'), '010242ac110007');
  });

  it('round-trips a reply, pads it to 300 bytes, and splits values over 255 bytes (RFC 3396)', () => {
    const long = Buffer.alloc(600, 0x61);
    const out = encodeDhcp(reply(new Map([
      [OPT.MESSAGE_TYPE, Buffer.from([MSG.OFFER])],
      [OPT.SERVER_ID, Buffer.from([192, 168, 1, 1])],
      [OPT.DOMAIN_NAME, long],
    ])));
    assert.ok(out.length >= 300);
    assert.equal(out[240], OPT.MESSAGE_TYPE);
    const m = decodeDhcp(out);
    assert.equal(m.op, BOOTREPLY);
    assert.equal(m.xid, 0x01020304);
    assert.equal(m.yiaddr, '192.168.1.100');
    assert.equal(optionIp(m, OPT.SERVER_ID), '192.168.1.1');
    assert.deepEqual(m.options.get(OPT.DOMAIN_NAME), long);
    const small = encodeDhcp(reply(new Map([[OPT.MESSAGE_TYPE, Buffer.from([MSG.NAK])]])));
    assert.equal(small.length, 300);
  });

  it('accepts pads, a missing END, and concatenates an option sent twice', () => {
    const m = decodeDhcp(handDiscover([0, 0, 53, 1, 3, 12, 3, ...Buffer.from('lap'), 0, 12, 3, ...Buffer.from('top')]));
    assert.equal(messageType(m), MSG.REQUEST);
    assert.equal(m.options.get(OPT.HOST_NAME)!.toString(), 'laptop');
  });

  it('reads options from file and sname when overloaded (option 52)', () => {
    const b = handDiscover([53, 1, 1, 52, 1, 3, 255]);
    Buffer.from([12, 4, ...Buffer.from('host'), 255]).copy(b, 108);
    Buffer.from([50, 4, 10, 0, 0, 9, 255]).copy(b, 44);
    const m = decodeDhcp(b);
    assert.equal(m.options.get(OPT.HOST_NAME)!.toString(), 'host');
    assert.equal(optionIp(m, OPT.REQUESTED_IP), '10.0.0.9');
    assert.equal(m.sname, '');
    assert.equal(m.file, '');
  });

  it('refuses malformed messages, saying why', () => {
    refused(Buffer.alloc(100), /too short/);
    const badOp = handDiscover();
    badOp[0] = 3;
    refused(badOp, /op 3/);
    const badHlen = handDiscover();
    badHlen[2] = 17;
    refused(badHlen, /hardware address length 17/);
    const noCookie = handDiscover();
    noCookie.writeUInt32BE(0, 236);
    refused(noCookie, /magic cookie/);
    refused(handDiscover([53, 1, 1, 12, 10, 0x41]), /option 12 .* runs past the end/);
    refused(handDiscover([53, 1, 1, 12]), /option 12 .* no length byte/);
    refused(handDiscover([53, 2, 1, 1, 255]), /option 53 \(message type\) has length 2, must be 1/);
    refused(handDiscover([53, 1, 9, 255]), /message type 9/);
    refused(handDiscover([53, 1, 3, 50, 3, 1, 2, 3, 255]), /option 50 \(requested address\) has length 3/);
    refused(handDiscover([53, 1, 3, 61, 1, 1, 255]), /option 61 \(client identifier\) has length 1, must be at least 2/);
    refused(handDiscover([53, 1, 3, 3, 5, 1, 2, 3, 4, 5, 255]), /option 3 \(router\) has length 5, must be at least 4, a multiple of 4/);
    refused(handDiscover([53, 1, 1, 57, 2, 1, 0, 255]), /maximum message size 256 is below/);
    refused(handDiscover([53, 1, 1, 52, 1, 4, 255]), /overload/);
    const nested = handDiscover([53, 1, 1, 52, 1, 1, 255]);
    Buffer.from([52, 1, 2, 255]).copy(nested, 108);
    refused(nested, /overload \(52\) inside an overloaded field/);
  });

  it('converts addresses', () => {
    assert.equal(ipv4ToInt('192.168.1.10'), 0xc0a8010a);
    assert.equal(intToIpv4(0xc0a8010a), '192.168.1.10');
    assert.equal(ipv4ToInt('255.255.255.255'), 0xffffffff);
    for (const bad of ['1.2.3', '1.2.3.256', '01.2.3.4', 'a.b.c.d', '1.2.3.4.5', '']) assert.equal(ipv4ToInt(bad), undefined, bad);
  });
});

const SEED = Number(process.env.FUZZ_SEED ?? 0xd4c9) >>> 0;

/** mulberry32, as fuzz.test.ts: the same sequence for the same seed everywhere. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('DHCP packet fuzzing', { timeout: 60_000 }, () => {
  it(`survives 30,000 mutated requests (FUZZ_SEED=${SEED})`, () => {
    const rand = rng(SEED);
    const int = (n: number) => Math.floor(rand() * n);
    const overloaded = handDiscover([53, 1, 3, 52, 1, 3, 50, 4, 10, 0, 0, 9, 255]);
    Buffer.from([12, 4, ...Buffer.from('host'), 255]).copy(overloaded, 108);
    const seeds = [handDiscover(), handDiscover([53, 1, 3, 50, 4, 10, 0, 0, 9, 54, 4, 10, 0, 0, 1, 255]), overloaded];
    const outcomes = { parsed: 0, refused: 0 };
    for (let i = 0; i < 30_000; i++) {
      let b = Buffer.from(seeds[int(seeds.length)]);
      const edits = 1 + int(4);
      for (let e = 0; e < edits; e++) {
        switch (int(5)) {
          case 0:
            b[int(b.length)] ^= 1 << int(8);
            break;
          case 1:
            b[240 + int(Math.max(1, b.length - 240))] = int(256);
            break;
          case 2:
            b = b.subarray(0, int(b.length + 1));
            break;
          case 3:
            b = Buffer.concat([b, Buffer.from(Array.from({ length: int(40) }, () => int(256)))]);
            break;
          default:
            if (b.length > 0) b[int(b.length)] = [0, 255, 52, 53, 1, 3][int(6)];
        }
      }
      try {
        const m = decodeDhcp(b);
        outcomes.parsed++;
        // Whatever decoded must encode again, and decode to the same options.
        assert.deepEqual(decodeDhcp(encodeDhcp(m)).options, m.options);
      } catch (err) {
        if (!(err instanceof DhcpParseError)) throw new Error(`mutation ${i} (seed ${SEED}) threw ${String(err)}; packet ${b.toString('hex')}`);
        outcomes.refused++;
      }
    }
    assert.ok(outcomes.parsed > 1000 && outcomes.refused > 1000, JSON.stringify(outcomes));
  });
});
