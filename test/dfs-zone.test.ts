// dcfs-lite on a real single-device zone with two disks: the CLI registers the disks and a volume keeping two copies
// on different disks, the scheduler starts dfs where storage now is, and a user stores, lists, reads (whole and by
// range), moves, deletes, restores and versions files through `buckyos fs` and HTTP; every chunk lands on both disks;
// flipped bytes are found and repaired by scrub; bad input and foreign homes are refused with clear errors; dfs's own
// LAN listener serves WebDAV and NDN and nothing else, drops the headers only a gateway may set, and limits Basic
// logins per address.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startZone, type TestZone } from './support/zone.ts';
import { activateDevice } from '../src/lib/identity/activation-client.ts';
import { generateMnemonic } from '../src/lib/identity/mnemonic.ts';
import { verifyHubApi } from '../src/lib/api/verify-hub.ts';
import { dfsApi } from '../src/lib/api/dfs.ts';
import { KrpcError, createClient } from '../src/lib/krpc/index.ts';
import { litmusProblems, parseLitmus, runLitmus } from './support/litmus.ts';
import { until } from './support/wait.ts';
import { chunkIntact, flipByte, latestById, packedChunks } from './support/dfs-packs.ts';
import { Chunker } from '../src/storage/dfs/chunker.ts';

const ALICE_PW = 'Correct-horse-battery-9';
const BOB_PW = 'Staple-Battery-42x';
const CAROL_PW = 'Lantern-Quartz-77q';
const GWEN_PW = 'Meadow-Violet-58k';
const DAVE_PW = 'Harbor-Copper-31z';
/** dfs's chunk collection grace in this zone: short, so a round can take a purged file's chunks within the test. */
const GC_GRACE_S = 2;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;

/** A request with the path sent exactly as given: fetch() would drop a fragment before it left. */
function rawRequest(port: number, method: string, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('dcfs-lite on a single-device zone with two disks', { timeout: 300_000 }, () => {
  let zone: TestZone;
  let dir: string;
  let alice: string;
  const disk = (n: number) => join(dir, `disk${n}`);

  const tokens = new Map<string, string>();
  /** The CLI as a user, with a session token from one login per user (a login per command would meet the rate limit). */
  const as = async (user: string, pw: string, args: string[]) => {
    if (!tokens.has(user)) {
      const hub = createClient(verifyHubApi, { baseUrl: zone.gatewayUrl });
      const { nonce } = await hub.login_nonce({});
      tokens.set(user, (await hub.login_password({ username: user, password: pw, nonce, app_id: 'buckyos-cli' })).session_token);
    }
    return zone.cli(['--user', user, ...args], { BUCKYOS_TOKEN: tokens.get(user)! });
  };
  async function ok(p: Promise<{ code: number; stdout: string; stderr: string }>): Promise<string> {
    const r = await p;
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  }
  const dfs = () => createClient(dfsApi, { baseUrl: zone.gatewayUrl, token: alice });

  before(async () => {
    dir = mkdtempDir();
    zone = await startZone({ gcGraceS: GC_GRACE_S });
    await activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: 'alice.example.com', owner: 'alice', password: ALICE_PW });
    await zone.waitFor((s) => s.state === 'running' && s.children.some((c) => c.name === 'gateway' && c.healthy), 90_000, 'zone running');
    await zone.waitRoutable(['system-config', 'verify-hub']);
    const hub = createClient(verifyHubApi, { baseUrl: zone.gatewayUrl });
    const { nonce } = await hub.login_nonce({});
    alice = (await hub.login_password({ username: 'alice', password: ALICE_PW, nonce, app_id: 'control-panel' })).session_token;
    await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: alice }).user_create({ name: 'bob', password: BOB_PW, role: 'user' });
  });

  after(async () => {
    await zone?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A WebDAV PUT through the gateway whose body is sent chunked, with no length, until `total` bytes or an answer. */
  function streamPut(path: string, total: number, headers: Record<string, string>): Promise<number> {
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = request(`${zone.gatewayUrl}/dav/home${path}`, { method: 'PUT', headers }, (res) => {
        answered = true;
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      // Once answered, the server may close the connection on the rest of the body.
      req.on('error', (err) => (answered ? undefined : reject(err)));
      const piece = randomBytes(1024 * 1024);
      let sent = 0;
      const pump = () => {
        while (sent < total && !answered) {
          sent += piece.length;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
  }

  function dirBytes(d: string): number {
    let n = 0;
    for (const e of readdirSync(d, { withFileTypes: true, recursive: true })) if (e.isFile()) n += statSync(join(e.parentPath ?? e.path, e.name)).size;
    return n;
  }

  function mkdtempDir(): string {
    const d = join(tmpdir(), `dfs-zone-${randomBytes(4).toString('hex')}`);
    mkdirSync(d);
    return d;
  }

  it('registers disks and a volume, and starts dfs where storage now is', async () => {
    mkdirSync(disk(1));
    mkdirSync(disk(2));
    assert.ok(!zone.status()!.children.some((c) => c.name === 'dfs'), 'no dfs without storage');
    await ok(zone.cli(['fs', 'disk', 'add', disk(1), '--id', 'd1']));
    await ok(zone.cli(['fs', 'disk', 'add', disk(2), '--id', 'd2']));
    const overlap = await zone.cli(['fs', 'disk', 'add', join(disk(1), 'sub'), '--id', 'd3']);
    assert.equal(overlap.code, 1);
    const nowhere = await zone.cli(['fs', 'volume', 'create', 'home', '--copies', '2', '--domain', 'disk', '--followers', 'nosuch']);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.stderr, /no device nosuch in the zone/);
    const short = await zone.cli(['fs', 'volume', 'create', 'home', '--copies', '3', '--domain', 'disk']);
    assert.equal(short.code, 1);
    assert.match(short.stderr, /3 copies on different disks need that many; the zone has 2/);
    await ok(zone.cli(['fs', 'volume', 'create', 'home', '--copies', '2', '--domain', 'disk']));
    // Followers and promotion, refused with the reason on a one-device zone.
    const self = /^home\s+primary (\S+)/m.exec(await ok(zone.cli(['fs', 'volume', 'ls'])))![1]!;
    for (const [args, why] of [
      [['followers', 'home', 'nosuch'], /no device nosuch in the zone/],
      [['followers', 'home', self], new RegExp(`${self} is the volume's primary; it cannot also follow it`)],
      [['promote', 'home', 'nosuch'], new RegExp(`nosuch is not a follower of the volume \\(${self} is its primary; it has no followers\\)`)],
      [['promote', 'nothere', self], /no volume nothere/],
    ] as const) {
      const r = await zone.cli(['fs', 'volume', ...args]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, why);
    }
    await zone.waitFor((s) => s.children.some((c) => c.name === 'dfs' && c.healthy), 60_000, 'dfs running');
    await zone.waitRoutable(['dfs']);
    await until('alice has a home folder', async () => ((await dfs().stat({ volume: 'home', path: '/home/alice' })).type === 'dir' ? true : undefined));
  });

  it('stores a file with two copies on different disks, and reads it back whole and by range', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    const local = join(dir, 'big.bin');
    writeFileSync(local, data);
    const put = await ok(as('alice', ALICE_PW, ['fs', 'put', local, 'home:/home/alice/big.bin']));
    assert.match(put, new RegExp(`home:/home/alice/big.bin .* sha256:${sha(data)}`));
    const back = join(dir, 'back.bin');
    await ok(as('alice', ALICE_PW, ['fs', 'get', 'home:/home/alice/big.bin', back]));
    assert.equal(sha(readFileSync(back)), sha(data));
    const r = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/home/home/alice/big.bin`, { headers: { authorization: `Bearer ${alice}`, range: 'bytes=1000000-1000099' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('etag'), `"sha256:${sha(data)}"`);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), data.subarray(1000000, 1000100));
    const same = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/home/home/alice/big.bin`, { headers: { authorization: `Bearer ${alice}`, 'if-none-match': `"sha256:${sha(data)}"` } });
    assert.equal(same.status, 304);
    const ndn = await fetch(`${zone.gatewayUrl}/ndn/sha256:${sha(data)}`, { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(ndn.status, 200);
    assert.equal(sha(Buffer.from(await ndn.arrayBuffer())), sha(data));
    const s = await dfs().status({});
    const [d1, d2] = ['d1', 'd2'].map((id) => s.disks.find((d) => d.disk_id === id)!);
    assert.ok(d1.chunks > 0 && d1.chunks === d2.chunks, `both disks hold every chunk: ${d1.chunks} and ${d2.chunks}`);
  });

  it('moves, copies, deletes to the trash, restores and keeps versions', async () => {
    const v1 = join(dir, 'v1.txt');
    writeFileSync(v1, 'first version\n');
    await ok(as('alice', ALICE_PW, ['fs', 'put', v1, 'home:/home/alice/notes.txt']));
    writeFileSync(v1, 'second version\n');
    await ok(as('alice', ALICE_PW, ['fs', 'put', v1, 'home:/home/alice/notes.txt']));
    assert.equal((await dfs().versions({ volume: 'home', path: '/home/alice/notes.txt' })).versions.length, 2);
    await ok(as('alice', ALICE_PW, ['fs', 'mkdir', 'home:/home/alice/docs']));
    await ok(as('alice', ALICE_PW, ['fs', 'mv', 'home:/home/alice/notes.txt', 'home:/home/alice/docs/notes.txt']));
    await ok(as('alice', ALICE_PW, ['fs', 'cp', 'home:/home/alice/docs/notes.txt', 'home:/home/alice/copy.txt']));
    const ls = await ok(as('alice', ALICE_PW, ['fs', 'ls', 'home:/home/alice']));
    assert.match(ls, /docs\//);
    assert.match(ls, /copy\.txt/);
    const rm = await ok(as('alice', ALICE_PW, ['fs', 'rm', 'home:/home/alice/docs']));
    const trashId = /\(([^)]+)\)/.exec(rm)![1]!;
    await assert.rejects(dfs().stat({ volume: 'home', path: '/home/alice/docs/notes.txt' }), (e: KrpcError) => e.code === 'NOT_FOUND');
    await ok(as('alice', ALICE_PW, ['fs', 'restore', 'home', trashId]));
    const got = join(dir, 'notes.txt');
    await ok(as('alice', ALICE_PW, ['fs', 'get', 'home:/home/alice/docs/notes.txt', got]));
    assert.equal(readFileSync(got, 'utf8'), 'second version\n');
  });

  it('refuses other users\' homes, traversal, overlong names and invalid UTF-8, each with a clear error', async () => {
    const note = join(dir, 'bob.txt');
    writeFileSync(note, 'bob\n');
    const denied = await as('bob', BOB_PW, ['fs', 'put', note, 'home:/home/alice/bob.txt']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /PERMISSION_DENIED.*may not write home:\/home\/alice\/bob\.txt/);
    await ok(as('bob', BOB_PW, ['fs', 'put', note, 'home:/home/bob/bob.txt']));
    const peek = await as('bob', BOB_PW, ['fs', 'ls', 'home:/home/alice']);
    assert.equal(peek.code, 1);
    assert.match(peek.stderr, /PERMISSION_DENIED/);
    await assert.rejects(dfs().stat({ volume: 'home', path: '/home/alice/../bob' }), (e: KrpcError) => e.code === 'INVALID_PARAMS' && /\.\./.test(e.message));
    await assert.rejects(dfs().mkdir({ volume: 'home', path: `/home/alice/${'x'.repeat(256)}` }), (e: KrpcError) => e.code === 'INVALID_PARAMS' && /255/.test(e.message));
    const bad = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/home/home/alice/%C3%28`, { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /UTF-8/);
  });

  it('sets a deleted user\'s home aside: a later account of the name starts with nothing, and an admin finds the files', async () => {
    const hub = createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: alice });
    await hub.user_create({ name: 'dave', password: DAVE_PW, role: 'user' });
    await until('dave has a home folder', async () => ((await dfs().stat({ volume: 'home', path: '/home/dave' })).type === 'dir' ? true : undefined));
    const note = join(dir, 'dave.txt');
    writeFileSync(note, 'dave\'s medical records\n');
    await ok(as('dave', DAVE_PW, ['fs', 'put', note, 'home:/home/dave/medical.txt']));
    await ok(as('dave', DAVE_PW, ['fs', 'put', note, 'home:/home/dave/old.txt']));
    await ok(as('dave', DAVE_PW, ['fs', 'rm', 'home:/home/dave/old.txt']));
    tokens.delete('dave');

    const { sudo_token } = await hub.sudo({ password: ALICE_PW });
    await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: sudo_token }).user_delete({ name: 'dave' });
    await hub.user_create({ name: 'dave', password: DAVE_PW, role: 'user' });
    const aside = await until('the former dave\'s home is set aside', async () => {
      const retired = (await dfs().list({ volume: 'home', path: '/home/.deleted' })).entries.find((e) => /^\/home\/\.deleted\/dave-/.test(e.path));
      return retired?.path;
    });
    await until('the new dave has a home folder', async () => ((await dfs().stat({ volume: 'home', path: '/home/dave' })).type === 'dir' ? true : undefined));
    assert.deepEqual(JSON.parse(await ok(as('dave', DAVE_PW, ['fs', 'ls', 'home:/home/dave', '--json']))), []);
    assert.equal(await ok(as('dave', DAVE_PW, ['fs', 'trash', 'home'])), '');
    const daveClient = createClient(dfsApi, { baseUrl: zone.gatewayUrl, token: tokens.get('dave')! });
    assert.deepEqual(await daveClient.usage({ volume: 'home' }), { user: 'dave', used_bytes: 0, quota_bytes: null });
    await assert.rejects(daveClient.list({ volume: 'home', path: aside }), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
    assert.deepEqual((await dfs().list({ volume: 'home', path: aside })).entries.map((e) => [e.path, e.owner]), [[`${aside}/medical.txt`, 'kernel']]);
    assert.ok((await dfs().trash_list({ volume: 'home' })).items.some((i) => i.path === `${aside}/old.txt`));
  });

  it('enforces quotas before anything is stored', async () => {
    await ok(zone.cli(['fs', 'quota', 'home', 'bob', '1K']));
    const big = join(dir, 'bob-big.bin');
    writeFileSync(big, randomBytes(4096));
    const r = await as('bob', BOB_PW, ['fs', 'put', big, 'home:/home/bob/big.bin']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /quota exceeded/);
    await assert.rejects(createClient(dfsApi, { baseUrl: zone.gatewayUrl, token: alice }).stat({ volume: 'home', path: '/home/bob/big.bin' }), (e: KrpcError) => e.code === 'NOT_FOUND');

    // A stream that announces no size, or a false one, is counted as it comes and stopped at the quota: the disks
    // never take the whole of it.
    const before = dirBytes(disk(1)) + dirBytes(disk(2));
    for (const headers of [{}, { 'x-expected-entity-length': '0' }] as Record<string, string>[]) {
      const status = await streamPut('/home/bob/stream.bin', 64 * 1024 * 1024, { authorization: basic('bob', BOB_PW), ...headers });
      assert.equal(status, 507, JSON.stringify(headers));
    }
    const grown = dirBytes(disk(1)) + dirBytes(disk(2)) - before;
    assert.ok(grown < 32 * 1024 * 1024, `the disks took ${grown} bytes of two 64 MiB streams (two copies each)`);
    await assert.rejects(createClient(dfsApi, { baseUrl: zone.gatewayUrl, token: alice }).stat({ volume: 'home', path: '/home/bob/stream.bin' }), (e: KrpcError) => e.code === 'NOT_FOUND');
  });

  it('serves WebDAV through the gateway that passes litmus (basic, copymove, props, locks), as the user with Basic credentials', async () => {
    const cwd = join(dir, 'litmus');
    mkdirSync(cwd);
    const groups = ['basic', 'copymove', 'props', 'locks'];
    const unauth = await fetch(`${zone.gatewayUrl}/dav/home/home/alice/`, { method: 'PROPFIND', headers: { depth: '0' } });
    assert.equal(unauth.status, 401);
    assert.match(unauth.headers.get('www-authenticate') ?? '', /^Basic /);
    const output = await runLitmus(`${zone.gatewayUrl}/dav/home/home/alice/`, cwd, groups, { user: 'alice', password: ALICE_PW });
    const parsed = parseLitmus(output);
    for (const g of groups) assert.deepEqual(litmusProblems(parsed, g, output), [], `litmus ${g}`);
    const wrong = await fetch(`${zone.gatewayUrl}/dav/home/home/alice/`, { method: 'PROPFIND', headers: { depth: '0', authorization: `Basic ${Buffer.from('bob:wrong-password').toString('base64')}` } });
    assert.equal(wrong.status, 401);
    const bobs = await fetch(`${zone.gatewayUrl}/dav/home/home/alice/`, { method: 'PROPFIND', headers: { depth: '1', authorization: `Basic ${Buffer.from(`bob:${BOB_PW}`).toString('base64')}` } });
    assert.equal(bobs.status, 403, "bob may not list alice's home");

    // A guest may read what is public but not lock it: a lock would keep its owners from writing.
    await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: alice }).user_create({ name: 'gwen', password: GWEN_PW, role: 'guest' });
    const shared = `${zone.gatewayUrl}/dav/home/public/shared.txt`;
    assert.equal((await fetch(shared, { method: 'PUT', body: 'for everyone', headers: { authorization: basic('alice', ALICE_PW) } })).status, 201);
    const asGwen = { authorization: basic('gwen', GWEN_PW) };
    assert.equal((await fetch(shared, { method: 'PROPFIND', headers: { ...asGwen, depth: '0' } })).status, 207);
    const lockInfo = '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>';
    for (const target of [shared, `${zone.gatewayUrl}/dav/home/public/`, `${zone.gatewayUrl}/dav/home/public/new.txt`]) {
      const locked = await fetch(target, { method: 'LOCK', body: lockInfo, headers: { ...asGwen, depth: 'infinity', 'content-type': 'application/xml' } });
      assert.equal(locked.status, 403, `a guest's LOCK on ${target}`);
    }
    assert.equal((await fetch(shared, { method: 'PUT', body: 'still writable', headers: { authorization: basic('alice', ALICE_PW) } })).status, 204);
  });

  it('finds flipped bytes with scrub and repairs them from the other disk', async () => {
    const victims = latestById(packedChunks(disk(1))).filter((c) => c.length >= 64 * 1024).slice(0, 2);
    assert.equal(victims.length, 2, 'large chunks are in the packs of the disk');
    for (const c of victims) flipByte(c);
    await ok(zone.cli(['fs', 'scrub']));
    const s = await until('scrub finished with repairs', async () => {
      const st = await dfs().status({});
      return !st.scrub.running && st.scrub.repaired >= 2 ? st : undefined;
    });
    assert.equal(s.scrub.corrupt, 2);
    assert.equal(s.disks.find((d) => d.disk_id === 'd1')!.repairs, 2);
    // The repair stored each chunk anew; the damaged record is dead space in its pack.
    const now = packedChunks(disk(1));
    for (const c of victims) assert.ok(now.some((x) => x.id === c.id && chunkIntact(x)), `chunk ${c.id} is whole again on d1`);
  });

  it('runs chunk collection on demand: a purged file\'s chunks go, and nothing a version or the trash names', async () => {
    const bytes = randomBytes(300 * 1024);
    const trashed = join(dir, 'trashed.bin');
    writeFileSync(trashed, bytes);
    const chunker = new Chunker();
    const ids = new Set([...chunker.cut(bytes), ...chunker.finish()].map((c) => `sha256:${sha(c)}`));
    await ok(as('alice', ALICE_PW, ['fs', 'put', trashed, 'home:/home/alice/trashed.bin']));
    const trashId = /moved to the trash \(([^)]+)\)/.exec(await ok(as('alice', ALICE_PW, ['fs', 'rm', 'home:/home/alice/trashed.bin'])))![1]!;
    const denied = await as('bob', BOB_PW, ['fs', 'gc']);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /PERMISSION_DENIED.*admin role/);
    const round = async () => {
      const last = (await dfs().status({})).gc?.last_at ?? null;
      assert.match(await ok(zone.cli(['fs', 'gc'])), /started|already running/);
      const s = await until('a collection round ended', async () => {
        const st = await dfs().status({});
        return st.gc && !st.gc.running && st.gc.last_at !== null && st.gc.last_at !== last ? st : undefined;
      });
      assert.equal(s.gc!.last_outcome, 'swept', s.gc!.last_reason ?? '');
      return s;
    };
    // Past the grace period (shortened for this zone), every chunk here is old enough to be taken if nothing names it.
    await new Promise((r) => setTimeout(r, (GC_GRACE_S + 1) * 1000));
    // The first round takes whatever earlier tests left unnamed (writes refused after storing); the trash keeps the file.
    const first = await round();
    assert.ok(first.gc!.live_chunks > 0);
    const restored = await dfs().restore({ volume: 'home', trash_id: trashId });
    assert.equal(restored.content_id, `sha256:${sha(bytes)}`);
    const back = join(dir, 'after-gc.bin');
    await ok(as('alice', ALICE_PW, ['fs', 'get', 'home:/home/alice/trashed.bin', back]));
    assert.equal(sha(readFileSync(back)), sha(bytes), 'a file in the trash through a round keeps every chunk');
    await ok(as('alice', ALICE_PW, ['fs', 'rm', 'home:/home/alice/trashed.bin']));
    const again = (await dfs().trash_list({ volume: 'home' })).items.find((t) => t.path === '/home/alice/trashed.bin')!;
    await dfs().trash_purge({ volume: 'home', trash_id: again.trash_id });

    const before = await dfs().status({});
    const second = await round();
    // Two copies of each of the purged file's chunks, one on each disk, and nothing else.
    for (const d of ['d1', 'd2']) {
      const deleted = (second.gc!.disks[d]?.chunks ?? 0) - (first.gc!.disks[d]?.chunks ?? 0);
      assert.equal(deleted, ids.size, `${d}: the purged file's chunks deleted`);
      assert.equal(second.disks.find((x) => x.disk_id === d)!.chunks, before.disks.find((x) => x.disk_id === d)!.chunks - ids.size);
    }
    assert.match(await ok(zone.cli(['fs', 'status'])), /chunk collection on .*: idle; last round .*: swept/);
    await ok(as('alice', ALICE_PW, ['fs', 'get', 'home:/home/alice/big.bin', back]));
    assert.equal(statSync(back).size, 3 * 1024 * 1024 + 12345);
  });

  it('moves copies onto a disk added later, and re-replicates off a disk set draining, keeping two copies throughout', async () => {
    const copies = (st: Awaited<ReturnType<ReturnType<typeof dfs>['status']>>) => st.disks.reduce((a, d) => a + d.chunks, 0);
    const before = copies(await dfs().status({}));
    mkdirSync(disk(3));
    await ok(zone.cli(['fs', 'disk', 'add', disk(3), '--id', 'd3']));
    const moved = await until('copies moved onto d3', async () => {
      const st = await dfs().status({});
      const d3 = st.disks.find((d) => d.disk_id === 'd3');
      return st.rebalanced > 0 && d3 && d3.chunks > 0 ? st : undefined;
    });
    assert.equal(copies(moved), before, 'a move adds one copy and drops one');
    await ok(zone.cli(['fs', 'disk', 'rm', 'd2']));
    // Its copies leave it once the others hold two, and the empty disk is forgotten without --force.
    await until('every chunk has its two copies on d1 and d3, and d2 holds nothing', async () => {
      const st = await dfs().status({});
      const on = (id: string) => st.disks.find((d) => d.disk_id === id)!.chunks;
      return st.under_replicated === 0 && on('d1') === on('d3') && on('d1') * 2 === before && on('d2') === 0 ? true : undefined;
    });
    assert.match(await ok(zone.cli(['fs', 'disk', 'rm', 'd2'])), /disk d2 on \S+ is empty and forgotten/);
    rmSync(disk(2), { recursive: true, force: true });
    const back = join(dir, 'after-drain.bin');
    await ok(as('alice', ALICE_PW, ['fs', 'get', 'home:/home/alice/big.bin', back]));
    assert.equal(statSync(back).size, 3 * 1024 * 1024 + 12345);
  });

  // Last: it spends the per-address limit on Basic logins, which the WebDAV test above shares (one client address).
  it('serves WebDAV and NDN on its own LAN listener, and nothing else there', async () => {
    const lan = `http://127.0.0.1:${zone.ports.files}`;
    const asAlice = { authorization: basic('alice', ALICE_PW) };
    // Carol logs in for the first time just before the guessing below, so her remembered login is fresh then.
    await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: alice }).user_create({ name: 'carol', password: CAROL_PW, role: 'user' });

    const cwd = join(dir, 'litmus-lan');
    mkdirSync(cwd);
    const groups = ['basic', 'copymove'];
    const output = await runLitmus(`${lan}/dav/home/home/alice/`, cwd, groups, { user: 'alice', password: ALICE_PW });
    const parsed = parseLitmus(output);
    for (const g of groups) assert.deepEqual(litmusProblems(parsed, g, output), [], `litmus ${g} on the LAN listener`);

    // The same files whichever way in: stored on the LAN listener, read through the gateway, and the other way round.
    const fromLan = randomBytes(200 * 1024 + 7);
    const put = await fetch(`${lan}/dav/home/home/alice/from-lan.bin`, { method: 'PUT', headers: asAlice, body: fromLan });
    assert.equal(put.status, 201);
    const viaGateway = await fetch(`${zone.gatewayUrl}/dav/home/home/alice/from-lan.bin`, { headers: asAlice });
    assert.equal(viaGateway.status, 200);
    assert.equal(sha(Buffer.from(await viaGateway.arrayBuffer())), sha(fromLan));
    const fromGateway = randomBytes(150 * 1024 + 3);
    assert.equal((await fetch(`${zone.gatewayUrl}/dav/home/home/alice/from-gateway.bin`, { method: 'PUT', headers: asAlice, body: fromGateway })).status, 201);
    const viaLan = await fetch(`${lan}/dav/home/home/alice/from-gateway.bin`, { headers: asAlice });
    assert.equal(viaLan.status, 200);
    assert.equal(sha(Buffer.from(await viaLan.arrayBuffer())), sha(fromGateway));
    const ranged = await fetch(`${lan}/dav/home/home/alice/from-lan.bin`, { headers: { ...asAlice, range: 'bytes=100000-100999' } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get('content-range'), `bytes 100000-100999/${fromLan.length}`);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), fromLan.subarray(100000, 101000));

    // Reads by content id, for whoever may read a file holding it.
    const ndn = `${lan}/ndn/sha256:${sha(fromLan)}`;
    const byId = await fetch(ndn, { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(byId.status, 200);
    assert.equal(sha(Buffer.from(await byId.arrayBuffer())), sha(fromLan));
    const byIdBasic = await fetch(ndn, { headers: asAlice });
    assert.equal(byIdBasic.status, 200, 'a download tool with a user and password reads by content id too');
    assert.equal(sha(Buffer.from(await byIdBasic.arrayBuffer())), sha(fromLan));
    const anonymous = await fetch(ndn);
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
    // Windows' redirector asks the server's root first.
    const root = await fetch(`${lan}/`, { method: 'OPTIONS' });
    assert.equal(root.status, 200);
    assert.equal(root.headers.get('dav'), '1, 2');

    // The rest of dfs's HTTP side is the gateway's, not the LAN's.
    const bearer = { authorization: `Bearer ${alice}` };
    const gatewayOnly: [string, RequestInit][] = [
      ['/kapi/dfs', { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: JSON.stringify({ method: 'status', params: {} }) }],
      ['/kapi/dfs/files/home/home/alice/from-lan.bin', { headers: bearer }],
      ['/kapi/dfs/chunks-has', { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: JSON.stringify({ ids: [`sha256:${sha(fromLan)}`] }) }],
      ['/kapi/dfs/meta/home/log', { headers: bearer }],
      ['/kapi/dfs/health', {}],
      ['/health', {}],
    ];
    for (const [path, init] of gatewayOnly) {
      const r = await fetch(`${lan}${path}`, init);
      assert.equal(r.status, 404, `${init.method ?? 'GET'} ${path} on the LAN listener`);
      await r.body?.cancel();
    }
    const file = await fetch(`${zone.gatewayUrl}/kapi/dfs/files/home/home/alice/from-lan.bin`, { headers: bearer });
    assert.equal(file.status, 200, 'the file API is still served through the gateway');
    await file.body?.cancel();

    // Headers only a gateway may set are dropped: a client cannot name another node, host or prefix.
    const hrefs = async (extra: Record<string, string>) => {
      const r = await fetch(`${lan}/dav/home/home/alice/`, { method: 'PROPFIND', headers: { ...asAlice, depth: '1', ...extra } });
      assert.equal(r.status, 207, `PROPFIND with ${JSON.stringify(extra)}`);
      return [...(await r.text()).matchAll(/<D:href>([^<]*)<\/D:href>/g)].map((m) => m[1]).sort();
    };
    const plain = await hrefs({});
    assert.ok(plain.includes('/dav/home/home/alice/from-lan.bin'), plain.join(' '));
    assert.deepEqual(await hrefs({ 'x-buckyos-node': 'some-other-node' }), plain);
    assert.deepEqual(await hrefs({ 'x-forwarded-host': 'evil.example', 'x-forwarded-prefix': '/elsewhere', forwarded: 'host=evil.example' }), plain);
    // Had x-forwarded-host been taken for the Host, this Destination would name another server (502).
    const copy = await fetch(`${lan}/dav/home/home/alice/from-lan.bin`, {
      method: 'COPY',
      headers: { ...asAlice, destination: `${lan}/dav/home/home/alice/lan-copy.bin`, 'x-forwarded-host': 'evil.example', 'x-buckyos-node': 'some-other-node' },
    });
    assert.equal(copy.status, 201);
    const copied = await fetch(`${zone.gatewayUrl}/dav/home/home/alice/lan-copy.bin`, { headers: asAlice });
    assert.equal(sha(Buffer.from(await copied.arrayBuffer())), sha(fromLan));

    assert.equal(await rawRequest(zone.ports.files, 'GET', '/dav/home/home/alice/from-lan.bin#part', asAlice), 400);
    // A client that waits to be told to go on (Expect: 100-continue) hears a refusal before it sends the body.
    const expectPut = (path: string) =>
      new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
        let continued = false;
        const req = request({ host: '127.0.0.1', port: zone.ports.files, method: 'PUT', path, headers: { ...asAlice, expect: '100-continue', 'content-length': '4' } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, continued }));
        });
        req.on('continue', () => {
          continued = true;
          req.end('body');
        });
        req.on('error', reject);
      });
    // (A refusal that needs no login: a wrong password here would spend the per-address login limit tested below.)
    assert.deepEqual(await expectPut('/dav/home/home/bob'), { status: 405, continued: false }, 'a PUT on a folder');
    assert.deepEqual(await expectPut('/dav/home/home/alice/expect.bin'), { status: 201, continued: true });
    // Paths URL parsing would resolve into others are refused, not resolved: each names /home/alice/from-lan.bin.
    for (const p of ['/dav/home/home/alice/x/%2E%2E/from-lan.bin', '/dav/home/home/alice/x/../from-lan.bin', '/dav/home/home/alice/./from-lan.bin', '/dav/home/home\\alice/from-lan.bin']) {
      assert.equal(await rawRequest(zone.ports.files, 'GET', p, asAlice), 400, p);
    }

    // Guessing passwords meets the per-address limit: 401 until it is spent, then 429 with a Retry-After. A new user
    // name each time, so verify-hub's lockout of one account is not what answers; a new X-Forwarded-For each time,
    // which the listener drops rather than counting each as another client.
    await until('carol has a home folder', async () => ((await dfs().stat({ volume: 'home', path: '/home/carol' })).type === 'dir' ? true : undefined));
    const asCarol = { authorization: basic('carol', CAROL_PW), depth: '0' };
    const carolIn = await fetch(`${lan}/dav/home/home/carol/`, { method: 'PROPFIND', headers: asCarol });
    assert.equal(carolIn.status, 207);
    await carolIn.body?.cancel();
    let limited: Response | undefined;
    let refused = 0;
    for (let i = 0; i < 30 && !limited; i++) {
      const r = await fetch(`${lan}/dav/home/home/alice/`, {
        method: 'PROPFIND',
        headers: { depth: '0', authorization: basic(`guess${i}`, `wrong-password-${i}`), 'x-forwarded-for': `192.0.2.${i + 1}` },
      });
      const body = await r.text();
      if (r.status === 429) {
        assert.match(body, /too many logins from this address/);
        limited = r;
      } else {
        assert.equal(r.status, 401, body);
        refused++;
      }
    }
    assert.ok(limited, 'wrong passwords met the limit on logins');
    assert.ok(refused >= 1, 'a wrong password is refused with 401 before the limit is met');
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After: ${limited.headers.get('retry-after')}`);
    // A login that succeeded is remembered: carol, at the same address, spends no more of the limit and still gets in.
    const carolAgain = await fetch(`${lan}/dav/home/home/carol/`, { method: 'PROPFIND', headers: asCarol });
    assert.equal(carolAgain.status, 207);
    await carolAgain.body?.cancel();
  });
});
