// ENS resolver pieces: namehash (EIP-137 vectors), the ABI codec for the calls made, EIP-55, EIP-1577 content hashes,
// EIP-1185 record sets, and how every failure of a JSON-RPC endpoint becomes a TrustedNameError. The endpoint here is
// a scripted HTTP server, to produce replies a real node would not; test/ns-ens.test.ts runs against a real chain.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import {
  AbiError, EnsResolver, INTERFACE, abiEncode, checksumAddress, decodeAddress, decodeBool, decodeBytes, decodeContenthash, decodeRecords,
  decodeString, dnsWireName, encodeCall, ensLabels, keccak256, namehash, selector, type EnsConfig,
} from './ens.ts';
import { TrustedNameError } from './trusted.ts';
import { RCODE, TYPE, WireError, formatRData } from './wire.ts';

const word = (hex: string) => hex.padStart(64, '0');
const buf = (hex: string) => Buffer.from(hex.replace(/^0x/, ''), 'hex');

describe('namehash', () => {
  it('matches the EIP-137 vectors', () => {
    assert.equal(namehash('').toString('hex'), '0'.repeat(64));
    assert.equal(namehash('eth').toString('hex'), '93cdeb708b7545dc668eb9280176169d1c33cfd8ed6f04690a0bcc88a93fc4ae');
    assert.equal(namehash('foo.eth').toString('hex'), 'de9b09fd7c5f901e23a3f19fecc54828e9c848539801e86591bd9801b019f84f');
    assert.deepEqual(namehash('foo.eth.'), namehash('foo.eth'));
  });

  it('hashes punycode labels in their Unicode form, and knows invalid punycode is no ENS name', () => {
    const pizza = keccak256(Buffer.concat([namehash('eth'), keccak256(Buffer.from('🍕', 'utf8'))]));
    assert.deepEqual(namehash('xn--vi8h.eth'), pizza);
    assert.deepEqual(ensLabels('xn--mnchen-3ya.eth')?.map((l) => l.toString('utf8')), ['münchen', 'eth']);
    assert.equal(ensLabels('xn--zz.eth'), undefined);
    assert.throws(() => namehash('xn--zz.eth'), WireError);
  });

  it('writes names in DNS wire format for EIP-1185 keys', () => {
    assert.equal(dnsWireName('alice.eth').toString('hex'), '05616c6963650365746800');
    assert.equal(dnsWireName('').toString('hex'), '00');
  });
});

describe('ABI codec', () => {
  it('has the selectors and EIP-165 ids of the calls made', () => {
    assert.equal(selector('resolver(bytes32)').toString('hex'), '0178b8bf');
    assert.equal(selector('supportsInterface(bytes4)').toString('hex'), '01ffc9a7');
    assert.deepEqual(Object.fromEntries(Object.entries(INTERFACE).map(([k, v]) => [k, v.toString('hex')])), {
      ADDR: '3b3b57de', CONTENTHASH: 'bc1c58d1', TEXT: '59d1d43c', DNS_RECORD: 'a8fa5682',
    });
  });

  it('encodes static arguments as one word each', () => {
    const node = namehash('foo.eth').toString('hex');
    assert.equal(encodeCall('resolver(bytes32)', [`0x${node}`]), `0x0178b8bf${node}`);
    assert.equal(encodeCall('dnsRecord(bytes32,bytes32,uint16)', [buf(node), Buffer.alloc(32, 0xab), TYPE.AAAA]), `0xa8fa5682${node}${'ab'.repeat(32)}${word('1c')}`);
    assert.equal(encodeCall('supportsInterface(bytes4)', [INTERFACE.DNS_RECORD]), `0x01ffc9a7a8fa5682${'0'.repeat(56)}`);
    assert.equal(encodeCall('setAddr(bytes32,address)', [buf(node), `0x${'11'.repeat(20)}`]).slice(74), word('11'.repeat(20)));
    assert.equal(abiEncode(['bool', 'uint64'], [true, 2n ** 64n - 1n]).toString('hex'), word('1') + word('f'.repeat(16)));
  });

  it('encodes strings and bytes as offsets into a padded tail', () => {
    const node = namehash('foo.eth').toString('hex');
    assert.equal(encodeCall('text(bytes32,string)', [buf(node), 'url']), `0x59d1d43c${node}${word('40')}${word('3')}${'75726c'.padEnd(64, '0')}`);
    const data = Buffer.alloc(33, 7);
    const hex = abiEncode(['bytes32', 'bytes', 'string'], [buf(node), data, '']).toString('hex');
    assert.equal(hex, node + word('60') + word('c0') + word('21') + '07'.repeat(33).padEnd(128, '0') + word('0'));
  });

  it('refuses values that do not fit their types', () => {
    assert.throws(() => encodeCall('f(uint16)', [65536]), /does not fit in uint16/);
    assert.throws(() => encodeCall('f(uint16)', [-1]), AbiError);
    assert.throws(() => encodeCall('f(address)', ['0x1234']), /address must be 20 bytes/);
    assert.throws(() => encodeCall('f(bytes32)', ['0xzz']), /bytes32 must be bytes or 0x-prefixed hex/);
    assert.throws(() => encodeCall('f(bytes4)', [Buffer.alloc(5)]), /bytes4 must be 4 bytes/);
    assert.throws(() => encodeCall('f(string)', [5]), /string must be text/);
    assert.throws(() => encodeCall('f(bool)', [1]), /bool must be true or false/);
    assert.throws(() => encodeCall('f(bytes32', []), /not a function signature/);
    assert.throws(() => abiEncode(['bytes32'], []), /1 types but 0 values/);
  });

  it('decodes addresses, bools, bytes and strings, refusing malformed results', () => {
    assert.equal(decodeAddress(buf(word('ab'.repeat(20))), 'x'), `0x${'ab'.repeat(20)}`);
    assert.throws(() => decodeAddress(buf(`01${'0'.repeat(62)}`), 'registry resolver()'), /registry resolver\(\): not an address/);
    assert.throws(() => decodeAddress(Buffer.alloc(0), 'registry resolver()'), /returned no data \(no contract at that address\?\)/);
    assert.throws(() => decodeAddress(Buffer.alloc(31), 'x'), /31 bytes, too short/);
    assert.equal(decodeBool(buf(word('1')), 'x'), true);
    assert.equal(decodeBool(buf(word('0')), 'x'), false);
    assert.throws(() => decodeBool(buf(word('2')), 'x'), /2 is not a bool/);

    const payload = Buffer.from('hello, ENS', 'utf8');
    assert.deepEqual(decodeBytes(abiEncode(['bytes'], [payload]), 'x'), payload);
    assert.equal(decodeString(abiEncode(['string'], ['ünïcode']), 'x'), 'ünïcode');
    assert.equal(decodeBytes(abiEncode(['bytes'], [Buffer.alloc(0)]), 'x').length, 0);
    const encoded = abiEncode(['bytes'], [Buffer.alloc(40)]);
    assert.throws(() => decodeBytes(encoded.subarray(0, 96), 'resolver contenthash()'), /40 bytes of data run past the 96-byte result/);
    assert.throws(() => decodeBytes(buf(word('21') + word('0')), 'x'), /misaligned offset 33/);
    assert.throws(() => decodeBytes(buf(word('f'.repeat(64))), 'x'), /out of range/);
    assert.throws(() => decodeString(abiEncode(['bytes'], [Buffer.from([0xff, 0xfe])]), 'resolver text(url)'), /resolver text\(url\): the text is not UTF-8/);
  });
});

describe('EIP-55 checksums', () => {
  it('matches the EIP vectors', () => {
    for (const a of ['0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed', '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359', '0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB', '0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb']) {
      assert.equal(checksumAddress(a.toLowerCase()), a);
    }
    assert.throws(() => checksumAddress('0x123'), /not an address/);
  });
});

describe('EIP-1577 content hashes', () => {
  it('writes IPFS and IPNS CIDs as base32 CIDv1 URIs', () => {
    assert.equal(decodeContenthash(buf('e3010170122029f2d17be6139079dc48696d1f582a8530eb9805b561eda517e22a892c7e3f1f')), 'ipfs://bafybeibj6lixxzqtsb45ysdjnupvqkufgdvzqbnvmhw2kf7cfkesy7r7d4');
    assert.equal(decodeContenthash(buf('e501017200050102030405')), 'ipns://bafzaabibaibqibi');
  });

  it('writes Swarm manifests as bzz:// and onion addresses by their protocol', () => {
    const swarm = 'd1de9994b4d039f6548d191eb26786769f580809256b4685ef316805265ea162';
    assert.equal(decodeContenthash(buf(`e40101fa011b20${swarm}`)), `bzz://${swarm}`);
    assert.equal(decodeContenthash(Buffer.concat([buf('bc03'), Buffer.from('zqktlwi4fecvo6ri')])), 'onion://zqktlwi4fecvo6ri');
    assert.equal(decodeContenthash(Buffer.concat([buf('bd03'), Buffer.from('p53lf57qovyuvwsc6xnrppyply3vtqm7l6pcobkmyqsiofyeznfu5uqd')])), 'onion3://p53lf57qovyuvwsc6xnrppyply3vtqm7l6pcobkmyqsiofyeznfu5uqd');
  });

  it('falls back to hex for other protocols and for values that do not parse', () => {
    assert.equal(decodeContenthash(buf('90b2c6050102')), '0x90b2c6050102');
    assert.equal(decodeContenthash(buf('e301017012200102')), '0xe301017012200102');
    assert.equal(decodeContenthash(buf('e3010070122001')), '0xe3010070122001');
    assert.equal(decodeContenthash(buf('e40101fa011220' + '00'.repeat(32))), `0xe40101fa011220${'00'.repeat(32)}`);
    assert.equal(decodeContenthash(Buffer.concat([buf('bc03'), Buffer.from('short')])), '0xbc0373686f7274');
    assert.equal(decodeContenthash(buf('ffffffffff')), '0xffffffffff');
  });
});

/** One uncompressed wire-format record. */
function rr(owner: Buffer, type: number, ttl: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

describe('EIP-1185 record sets', () => {
  const alice = dnsWireName('alice.eth');

  it('decodes concatenated records', () => {
    const records = decodeRecords(Buffer.concat([
      rr(alice, TYPE.A, 60, Buffer.from([192, 0, 2, 1])),
      rr(alice, TYPE.TXT, 0x80000000, Buffer.from('\x02hi', 'latin1')),
      rr(alice, TYPE.CNAME, 60, dnsWireName('bob.eth')),
    ]));
    assert.deepEqual(records.map((r) => `${r.name} ${r.ttl} ${formatRData(r.type, r.data)}`), ['alice.eth 60 192.0.2.1', 'alice.eth 0 "hi"', 'alice.eth 60 bob.eth.']);
    assert.deepEqual(decodeRecords(Buffer.alloc(0)), []);
  });

  it('refuses compression pointers, which point nowhere in a stored record set', () => {
    const a = rr(alice, TYPE.A, 60, Buffer.from([192, 0, 2, 1]));
    assert.throws(() => decodeRecords(Buffer.concat([a, rr(buf('c000'), TYPE.A, 60, Buffer.from([1, 2, 3, 4]))])), /record 2 has a malformed or compressed owner name/);
    assert.throws(() => decodeRecords(rr(alice, TYPE.CNAME, 60, buf('03626f62c000'))), /compressed name in its data/);
    assert.throws(() => decodeRecords(rr(alice, TYPE.MX, 60, buf('000ac000'))), /compressed name in its data/);
  });

  it('refuses records cut short or malformed', () => {
    const a = rr(alice, TYPE.A, 60, Buffer.from([192, 0, 2, 1]));
    assert.throws(() => decodeRecords(a.subarray(0, a.length - 1)), /data runs past the end/);
    assert.throws(() => decodeRecords(a.subarray(0, alice.length + 4)), /cut short/);
    assert.throws(() => decodeRecords(rr(alice, TYPE.A, 60, Buffer.from([1, 2, 3]))), /A record with 3 bytes of data/);
    assert.throws(() => decodeRecords(buf('05616c696365')), /malformed or compressed owner name/);
  });
});

// ---- the resolver against a scripted endpoint ------------------------------------------------------------------

interface Scripted {
  status?: number;
  body: unknown;
}

/** Answers each JSON-RPC request with what `script` makes of it; `headers` keeps the last request's. */
class ScriptedEndpoint {
  script: (method: string, params: unknown[], id: unknown) => Scripted = () => ({ body: null });
  headers: IncomingHttpHeaders = {};
  readonly methods: string[] = [];
  private readonly server: Server;
  port = 0;

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.headers = req.headers;
        const { method, params, id } = JSON.parse(Buffer.concat(chunks).toString()) as { method: string; params: unknown[]; id: unknown };
        this.methods.push(method);
        const out = this.script(method, params, id);
        res.writeHead(out.status ?? 200, { 'content-type': 'application/json' });
        res.end(typeof out.body === 'string' ? out.body : JSON.stringify(out.body));
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const RESOLVER = `0x${'22'.repeat(20)}`;

/** A chain holding alice.eth with a resolver whose DNS records are `records`; `override` replaces single replies. */
function chain(records: Buffer, override: Partial<Record<string, unknown>> = {}) {
  return (method: string, params: unknown[], id: unknown): Scripted => {
    const ok = (result: unknown) => ({ body: { jsonrpc: '2.0', id, result } });
    if (method in override) return ok(override[method]);
    if (method === 'eth_chainId') return ok('0x1');
    if (method === 'eth_blockNumber') return ok('0x10');
    const [{ data }] = params as [{ data: string }];
    switch (data.slice(2, 10)) {
      case '0178b8bf':
        return ok(`0x${word(RESOLVER.slice(2))}`);
      case '01ffc9a7':
        return ok(`0x${word('1')}`);
      case 'a8fa5682':
        return ok(`0x${abiEncode(['bytes'], [records]).toString('hex')}`);
      default:
        return ok('0x');
    }
  };
}

describe('EnsResolver failures', () => {
  const endpoint = new ScriptedEndpoint();
  const config = (extra: Partial<EnsConfig> = {}): EnsConfig => ({
    rpc_url: `http://127.0.0.1:${endpoint.port}/`, chain_id: 1, registry: `0x${'11'.repeat(20)}`, suffixes: ['eth'], confirmations: 0, timeout_ms: 1000,
    cache_ttl: 300, text_keys: [], ...extra,
  });
  const aliceA = rr(dnsWireName('alice.eth'), TYPE.A, 60, Buffer.from([192, 0, 2, 1]));

  async function refusal(resolver: EnsResolver, name: string, qtype: number, signal = new AbortController().signal): Promise<string> {
    const err = await resolver.resolve(name, qtype, signal).then(() => assert.fail('answered'), (e: unknown) => e);
    assert.ok(err instanceof TrustedNameError, `expected TrustedNameError, got ${String(err)}`);
    return err.message;
  }

  before(() => endpoint.start());
  after(() => endpoint.close());

  it('answers from a well-formed endpoint, reading every call at one block', async () => {
    const seen: unknown[] = [];
    endpoint.script = (method, params, id) => {
      if (method === 'eth_call') seen.push(params[1]);
      return chain(aliceA)(method, params, id);
    };
    const r = await new EnsResolver(config({ confirmations: 3 })).resolve('alice.eth', TYPE.A, new AbortController().signal);
    assert.equal(r.rcode, RCODE.NOERROR);
    assert.deepEqual(r.answers.map((a) => formatRData(a.type, a.data)), ['192.0.2.1']);
    assert.deepEqual([...new Set(seen)], ['0xd']);
  });

  it('turns HTTP errors, non-JSON, foreign replies and JSON-RPC errors into TrustedNameErrors', async () => {
    const where = `http://127.0.0.1:${endpoint.port}`;
    endpoint.script = () => ({ status: 503, body: 'busy' });
    assert.equal(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), `ens: alice.eth A: the RPC endpoint ${where} answered eth_chainId with HTTP 503`);
    endpoint.script = () => ({ body: '<html>' });
    assert.match(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), /answered eth_chainId with something other than JSON$/);
    endpoint.script = () => ({ body: { jsonrpc: '2.0', id: 'other', result: '0x1' } });
    assert.match(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), /answered eth_chainId with something other than its JSON-RPC reply$/);
    endpoint.script = (_m, _p, id) => ({ body: { jsonrpc: '2.0', id, error: { code: -32000, message: 'header not found\n'.repeat(40) } } });
    const long = await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A);
    assert.match(long, /^ens: alice\.eth A: eth_chainId failed at http:\/\/127\.0\.0\.1:\d+: header not found header not found .*\.\.\. \(code -32000\)$/);
    assert.ok(long.length < 300);
    endpoint.script = (_m, _p, id) => ({ body: { jsonrpc: '2.0', id, result: 'one' } });
    assert.match(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), /eth_chainId: "one" is not a hex quantity$/);
  });

  it('sends URL credentials as basic authentication and keeps them, and the path, out of every message', async () => {
    endpoint.script = () => ({ status: 401, body: '' });
    const message = await refusal(new EnsResolver(config({ rpc_url: `http://ens%40user:p%3Ass@127.0.0.1:${endpoint.port}/v3/KEY42` })), 'alice.eth', TYPE.A);
    assert.equal(endpoint.headers.authorization, `Basic ${Buffer.from('ens@user:p:ss').toString('base64')}`);
    assert.match(message, /HTTP 401$/);
    assert.doesNotMatch(message, /ens%40user|ens@user|p:ss|KEY42/);
  });

  it('refuses record sets holding another name, type or class', async () => {
    for (const [records, held] of [
      [rr(dnsWireName('evil.eth'), TYPE.A, 60, Buffer.from([6, 6, 6, 6])), 'evil.eth IN A'],
      [Buffer.concat([aliceA, rr(dnsWireName('alice.eth'), TYPE.AAAA, 60, Buffer.alloc(16))]), 'alice.eth IN AAAA'],
      [Buffer.concat([aliceA.subarray(0, 13), buf('0003'), aliceA.subarray(15)]), 'alice.eth CLASS3 A'],
    ] as const) {
      endpoint.script = chain(records);
      assert.match(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), new RegExp(`DNS records for A hold ${held}, not only alice\\.eth IN A$`));
    }
    endpoint.script = chain(buf('c00c'));
    assert.match(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), /compressed owner name/);
  });

  it('refuses a registry address without a contract, another chain, and too few blocks for the confirmations', async () => {
    endpoint.script = (method, params, id) => (method === 'eth_call' ? { body: { jsonrpc: '2.0', id, result: '0x' } } : chain(aliceA)(method, params, id));
    assert.match(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), /registry resolver\(\): the call returned no data \(no contract at that address\?\)$/);
    endpoint.script = chain(aliceA, { eth_chainId: '0xaa36a7' });
    assert.match(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A), /serves chain 11155111, not the configured chain 1$/);
    endpoint.script = chain(aliceA, { eth_blockNumber: '0x2' });
    assert.match(await refusal(new EnsResolver(config({ confirmations: 5 })), 'alice.eth', TYPE.A), /the chain has 3 blocks, fewer than the 5 confirmations required$/);
  });

  it('checks the chain id again after a failure', async () => {
    const resolver = new EnsResolver(config());
    endpoint.script = chain(aliceA);
    endpoint.methods.length = 0;
    await resolver.resolve('alice.eth', TYPE.A, new AbortController().signal);
    await resolver.resolve('alice.eth', TYPE.A, new AbortController().signal);
    assert.equal(endpoint.methods.filter((m) => m === 'eth_chainId').length, 1);
    endpoint.script = chain(buf('c00c'));
    await refusal(resolver, 'alice.eth', TYPE.A);
    endpoint.script = chain(aliceA);
    await resolver.resolve('alice.eth', TYPE.A, new AbortController().signal);
    assert.equal(endpoint.methods.filter((m) => m === 'eth_chainId').length, 2);
  });

  it('stops when its signal aborts, with the abort reason', async () => {
    endpoint.script = chain(aliceA);
    const ctl = new AbortController();
    ctl.abort(new TrustedNameError('ens: no answer for alice.eth within 1 ms'));
    assert.equal(await refusal(new EnsResolver(config()), 'alice.eth', TYPE.A, ctl.signal), 'ens: no answer for alice.eth within 1 ms');
  });

  it('is NXDOMAIN for a punycode label that does not decode, without asking the chain', async () => {
    endpoint.methods.length = 0;
    const r = await new EnsResolver(config()).resolve('xn--zz.eth', TYPE.A, new AbortController().signal);
    assert.deepEqual([r.rcode, endpoint.methods.length], [RCODE.NXDOMAIN, 0]);
  });
});
