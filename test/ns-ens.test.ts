// ENS names through cyfs-ns's trusted-name resolver against a real chain: ganache with the ENS registry and public
// resolver deployed from their published build artifacts, names registered and records set by transactions from the
// owners' accounts, then every answer read back through TrustedNames as cyfs-ns reads it. Between the resolver and
// ganache sits a counting proxy, which also stands in for an endpoint that stops answering.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { createEnsResolver, dnsWireName, encodeCall, keccak256, namehash, type EnsConfig } from '../src/net/ns/ens.ts';
import { TrustedNameError, TrustedNames } from '../src/net/ns/trusted.ts';
import { RCODE, TYPE, formatRData, type ResourceRecord } from '../src/net/ns/wire.ts';
import { freePort } from './support/ports.ts';
import pino from 'pino';
import { parseNsConfig } from '../src/net/ns/config.ts';
import { NsServer } from '../src/net/ns/server.ts';
import { ask } from '../src/net/ns/testing.suite.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const GANACHE = `${REPO}node_modules/ganache/dist/node/cli.js`;
const CHAIN_ID = 1337;

function artifact(path: string): { bytecode: string } {
  return JSON.parse(readFileSync(`${REPO}node_modules/${path}`, 'utf8')) as { bytecode: string };
}

async function rpcAt(url: string, method: string, params: unknown[] = []): Promise<unknown> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  const reply = (await res.json()) as { result?: unknown; error?: { message: string } };
  if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
  return reply.result;
}

/** ganache on a free port; a port taken between the check and the start is retried on another. */
async function startGanache(): Promise<{ child: ChildProcess; url: string }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(process.execPath, [GANACHE, '--port', String(port), '--wallet.deterministic', '--logging.quiet', '--chain.chainId', String(CHAIN_ID)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let gone = false;
    void exited.then(() => (gone = true));
    const url = `http://127.0.0.1:${port}`;
    for (const deadline = Date.now() + 30000; Date.now() < deadline && !gone; ) {
      try {
        await rpcAt(url, 'eth_chainId');
        return { child, url };
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    child.kill('SIGKILL');
    await exited;
    if (attempt >= 2) throw new Error(`ganache did not start: ${stderr}`);
  }
}

/** Forwards JSON-RPC to ganache, recording each method; while `hold` is set, requests get no answer at all. */
class CountingProxy {
  readonly methods: string[] = [];
  hold = false;
  private readonly held = new Set<ServerResponse>();
  private readonly server: Server;
  url = '';

  constructor(private readonly target: string) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        this.methods.push((JSON.parse(body) as { method: string }).method);
        if (this.hold) {
          this.held.add(res);
          return;
        }
        fetch(this.target, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
          .then(async (r) => res.writeHead(r.status, { 'content-type': 'application/json' }).end(await r.text()))
          .catch(() => res.writeHead(502).end());
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  }

  count(method: string): number {
    return this.methods.filter((m) => m === method).length;
  }

  async close(): Promise<void> {
    for (const res of this.held) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** One resource record in uncompressed wire format, as setDNSRecords takes it. */
function wireRecord(name: string, type: number, ttl: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([dnsWireName(name), fixed, rdata]);
}

function txtData(...strings: string[]): Buffer {
  return Buffer.concat(strings.map((s) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)])));
}

function show(records: ResourceRecord[]): string[] {
  return records.map((rr) => `${rr.name} ${rr.ttl} ${formatRData(rr.type, rr.data)}`);
}

const ZERO_NODE = `0x${'0'.repeat(64)}`;
const hex = (b: Buffer) => `0x${b.toString('hex')}`;
const label = (l: string) => keccak256(Buffer.from(l, 'utf8'));
/** EIP-1577 form of ipfs://bafybeibj6lixxzqtsb45ysdjnupvqkufgdvzqbnvmhw2kf7cfkesy7r7d4. */
const BOB_CONTENTHASH = '0xe3010170122029f2d17be6139079dc48696d1f582a8530eb9805b561eda517e22a892c7e3f1f';
/** Ganache's deterministic account 5, as bob's published address. */
const BOB_ADDR = '0x28a8746e75304c0780E011BEd21C72cD78cd535E';

describe('ENS trusted names against a local chain (ganache)', { timeout: 90000 }, () => {
  let ganache: { child: ChildProcess; url: string } | undefined;
  let proxy: CountingProxy | undefined;
  let registry = '';
  let resolver = '';
  let accounts: string[] = [];
  const open: TrustedNames[] = [];

  const rpc = (method: string, params: unknown[] = []) => rpcAt(ganache!.url, method, params);

  async function send(from: string, to: string | null, data: string): Promise<{ contractAddress: string | null }> {
    const hash = await rpc('eth_sendTransaction', [{ from, ...(to ? { to } : {}), data, gas: '0x7a1200' }]);
    const receipt = (await rpc('eth_getTransactionReceipt', [hash])) as { status: string; contractAddress: string | null };
    assert.equal(receipt.status, '0x1', `transaction ${data.slice(0, 10)} from ${from} failed`);
    return receipt;
  }

  function config(extra: Partial<EnsConfig> = {}): EnsConfig {
    return {
      rpc_url: proxy!.url, chain_id: CHAIN_ID, registry, suffixes: ['eth'], confirmations: 0, timeout_ms: 3000, cache_ttl: 300,
      text_keys: ['url', 'email', 'description'], ...extra,
    };
  }

  function names(extra: Partial<EnsConfig> = {}): TrustedNames {
    const t = new TrustedNames([createEnsResolver(config(extra))]);
    open.push(t);
    return t;
  }

  async function refused(t: TrustedNames, name: string, qtype: number, pattern: RegExp): Promise<TrustedNameError> {
    const err = await t.resolve(name, qtype).then(
      () => assert.fail(`${name} was answered`),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TrustedNameError, `expected TrustedNameError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return err;
  }

  before(async () => {
    ganache = await startGanache();
    proxy = new CountingProxy(ganache.url);
    await proxy.start();
    accounts = (await rpc('eth_accounts')) as string[];
    const [root, alice, bob, pizza] = accounts;

    registry = (await send(root, null, artifact('@ensdomains/ens/build/contracts/ENSRegistry.json').bytecode)).contractAddress!;
    const resolverCode = artifact('@ensdomains/resolver/build/contracts/PublicResolver.json').bytecode;
    // The constructor's one argument, the registry, follows the code as one ABI word.
    resolver = (await send(root, null, resolverCode + encodeCall('f(address)', [registry]).slice(10))).contractAddress!;

    const eth = hex(namehash('eth'));
    await send(root, registry, encodeCall('setSubnodeOwner(bytes32,bytes32,address)', [ZERO_NODE, label('eth'), root]));
    // ENS hashes labels as Unicode text, so 🍕.eth's node is computed here from the emoji, not from its punycode.
    const pizzaNode = keccak256(Buffer.concat([namehash('eth'), label('🍕')]));
    for (const [name, owner, node] of [['alice', alice, namehash('alice.eth')], ['bob', bob, namehash('bob.eth')], ['🍕', pizza, pizzaNode]] as const) {
      await send(root, registry, encodeCall('setSubnodeOwner(bytes32,bytes32,address)', [eth, label(name), owner]));
      await send(owner, registry, encodeCall('setResolver(bytes32,address)', [node, resolver]));
    }

    const aliceNode = namehash('alice.eth');
    const records = Buffer.concat([
      wireRecord('alice.eth', TYPE.A, 3600, Buffer.from([192, 0, 2, 1])),
      wireRecord('alice.eth', TYPE.A, 3600, Buffer.from([192, 0, 2, 2])),
      wireRecord('alice.eth', TYPE.TXT, 60, txtData('v=alice', 'hello world')),
      wireRecord('www.alice.eth', TYPE.A, 3600, Buffer.from([192, 0, 2, 3])),
    ]);
    await send(alice, resolver, encodeCall('setDNSRecords(bytes32,bytes)', [aliceNode, records]));
    await send(alice, resolver, encodeCall('setAddr(bytes32,address)', [aliceNode, alice]));

    const bobNode = namehash('bob.eth');
    await send(bob, resolver, encodeCall('setAddr(bytes32,address)', [bobNode, BOB_ADDR]));
    await send(bob, resolver, encodeCall('setContenthash(bytes32,bytes)', [bobNode, BOB_CONTENTHASH]));
    await send(bob, resolver, encodeCall('setText(bytes32,string,string)', [bobNode, 'url', 'https://bob.example/']));
    await send(bob, resolver, encodeCall('setText(bytes32,string,string)', [bobNode, 'email', 'bob@example.com']));
    await send(pizza, resolver, encodeCall('setAddr(bytes32,address)', [pizzaNode, pizza]));
  });

  after(async () => {
    for (const t of open) t.close();
    await proxy?.close();
    if (ganache && ganache.child.exitCode === null && ganache.child.signalCode === null) {
      const exited = new Promise((resolve) => ganache!.child.once('exit', resolve));
      ganache.child.kill('SIGKILL');
      await exited;
    }
  });

  it('answers A and TXT from the DNS records a name publishes (EIP-1185), TTLs capped to cache_ttl', async () => {
    const t = names();
    const a = await t.resolve('alice.eth', TYPE.A);
    assert.equal(a.rcode, RCODE.NOERROR);
    assert.deepEqual(show(a.answers), ['alice.eth 300 192.0.2.1', 'alice.eth 300 192.0.2.2']);
    const txt = await t.resolve('alice.eth', TYPE.TXT);
    assert.deepEqual(show(txt.answers), ['alice.eth 60 "v=alice" "hello world"']);
  });

  it('gives NODATA for a type a name has no records of, and never mixes in the ENS profile for A', async () => {
    const t = names();
    for (const qtype of [TYPE.AAAA, TYPE.MX]) {
      const r = await t.resolve('alice.eth', qtype);
      assert.deepEqual([r.rcode, r.answers.length], [RCODE.NOERROR, 0]);
    }
    const bobA = await t.resolve('bob.eth', TYPE.A);
    assert.deepEqual([bobA.rcode, bobA.answers.length], [RCODE.NOERROR, 0]);
  });

  it('synthesises TXT from the ENS profile: checksummed address, content hash as a URI, the configured text keys', async () => {
    const r = await names().resolve('bob.eth', TYPE.TXT);
    assert.equal(r.rcode, RCODE.NOERROR);
    assert.deepEqual(show(r.answers), [
      `bob.eth 300 "a=${BOB_ADDR}"`,
      'bob.eth 300 "contenthash=ipfs://bafybeibj6lixxzqtsb45ysdjnupvqkufgdvzqbnvmhw2kf7cfkesy7r7d4"',
      'bob.eth 300 "url=https://bob.example/"',
      'bob.eth 300 "email=bob@example.com"',
    ]);
  });

  it('hashes the Unicode form of a punycode label, as ENS registers it', async () => {
    const r = await names().resolve('xn--vi8h.eth', TYPE.TXT);
    assert.equal(r.rcode, RCODE.NOERROR);
    assert.equal(show(r.answers)[0].toLowerCase(), `xn--vi8h.eth 300 "a=${accounts[3]}"`);
  });

  it('is NXDOMAIN for a name nobody registered, NODATA for one that has an owner but no resolver', async () => {
    const t = names();
    const nobody = await t.resolve('nobody.eth', TYPE.A);
    assert.deepEqual([nobody.rcode, nobody.answers.length, nobody.ttl], [RCODE.NXDOMAIN, 0, 300]);
    // www.alice.eth has DNS records stored under alice.eth's node, but no ENS node of its own.
    assert.equal((await t.resolve('www.alice.eth', TYPE.A)).rcode, RCODE.NXDOMAIN);
    const eth = await t.resolve('eth', TYPE.A);
    assert.deepEqual([eth.rcode, eth.answers.length], [RCODE.NOERROR, 0]);
  });

  it('answers a second time from the cache without asking the chain, and checks the chain id once', async () => {
    const t = names();
    const chainChecks = proxy!.count('eth_chainId');
    const calls = proxy!.methods.length;
    const first = await t.resolve('bob.eth', TYPE.TXT);
    assert.equal(proxy!.count('eth_chainId'), chainChecks + 1);
    // The cost docs/ns-ens.md states: the chain id, then 8 reads, the text profile's check and one per text key.
    assert.equal(proxy!.methods.length - calls, 1 + 8 + 1 + 3);
    assert.equal((await t.resolve('bob.eth', TYPE.A)).rcode, RCODE.NOERROR);
    assert.equal(proxy!.count('eth_chainId'), chainChecks + 1, 'the chain id is not asked again');

    const before = proxy!.methods.length;
    const again = await t.resolve('bob.eth', TYPE.TXT);
    assert.equal(proxy!.methods.length, before, 'a cached answer asks the chain nothing');
    assert.deepEqual(show(again.answers).map((s) => s.replace(/ \d+ /, ' ')), show(first.answers).map((s) => s.replace(/ \d+ /, ' ')));
    assert.equal(t.stats()[0].cache_hits, 1);
  });

  it('refuses (SERVFAIL) when the endpoint serves another chain', async () => {
    await refused(names({ chain_id: 1 }), 'bob.eth', TYPE.TXT, /serves chain 1337, not the configured chain 1$/);
  });

  it('refuses when the endpoint cannot be reached, without its credentials or path in the message', async () => {
    const port = await freePort();
    const err = await refused(names({ rpc_url: `http://user:s3cret@127.0.0.1:${port}/v3/APIKEY123` }), 'bob.eth', TYPE.A, /cannot be reached \(ECONNREFUSED\)/);
    assert.doesNotMatch(err.message, /s3cret|APIKEY123|user/);
    assert.match(err.message, new RegExp(`http://127\\.0\\.0\\.1:${port}\\b`));
  });

  it('refuses when the endpoint does not answer within timeout_ms, and checks the chain id again afterwards', async () => {
    const t = names({ timeout_ms: 300 });
    assert.equal((await t.resolve('alice.eth', TYPE.A)).rcode, RCODE.NOERROR);
    proxy!.hold = true;
    const started = Date.now();
    try {
      await refused(t, 'bob.eth', TYPE.TXT, /^ens: no answer for bob\.eth within 300 ms$/);
    } finally {
      proxy!.hold = false;
    }
    assert.ok(Date.now() - started < 2000, `gave up after ${Date.now() - started} ms`);
    const chainChecks = proxy!.count('eth_chainId');
    assert.equal((await t.resolve('bob.eth', TYPE.TXT)).answers.length, 4);
    assert.equal(proxy!.count('eth_chainId'), chainChecks + 1);
    assert.equal(t.stats()[0].failures, 1);
  });

  it('reads `confirmations` blocks behind the head', async () => {
    await send(accounts[2], resolver, encodeCall('setText(bytes32,string,string)', [namehash('bob.eth'), 'description', 'changed']));
    const latest = await names().resolve('bob.eth', TYPE.TXT);
    assert.ok(show(latest.answers).includes('bob.eth 300 "description=changed"'));
    const behind = names({ confirmations: 2 });
    assert.equal((await behind.resolve('bob.eth', TYPE.TXT)).answers.length, 4, 'the change is not yet two blocks deep');
    await rpc('evm_mine');
    await rpc('evm_mine');
    assert.equal((await names({ confirmations: 2 }).resolve('bob.eth', TYPE.TXT)).answers.length, 5);
  });
  it('answers DNS clients through a server configured in YAML (trusted_names.ens), and SERVFAILs what it cannot verify', async () => {
    const yaml = [
      'listen: { addresses: [127.0.0.1], port: 0 }',
      'trusted_names:',
      `  ens: { rpc_url: "${proxy!.url}", chain_id: ${CHAIN_ID}, registry: "${registry}", text_keys: [url] }`,
    ].join('\n');
    const server = await NsServer.start({ config: parseNsConfig(yaml, 'ns.yaml'), log: pino({ level: 'silent' }) });
    try {
      const a = await ask(server.port, 'alice.eth', 'A');
      assert.equal(a.rcode, RCODE.NOERROR);
      assert.deepEqual(a.answers.map((r) => r.data).sort(), ['192.0.2.1', '192.0.2.2']);
      const txt = await ask(server.port, 'bob.eth', 'TXT');
      assert.ok(txt.answers.some((r) => String(r.data).includes('url=https://bob.example/')));
      assert.equal((await ask(server.port, 'nobody.eth', 'A')).rcode, RCODE.NXDOMAIN);
      const wrongChain = parseNsConfig(yaml.replace(`chain_id: ${CHAIN_ID}`, 'chain_id: 1'), 'ns.yaml');
      const other = await NsServer.start({ config: wrongChain, log: pino({ level: 'silent' }) });
      try {
        const r = await ask(other.port, 'alice.eth', 'A');
        assert.equal(r.rcode, RCODE.SERVFAIL);
        assert.equal(r.answers.length, 0);
      } finally {
        await other.close();
      }
    } finally {
      await server.close();
    }
  });
});
