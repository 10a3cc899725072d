// dcfs-lite across devices, each in its own network namespace: a core device and two storage devices with two disks
// each, a volume keeping two copies on different nodes (metadata on st1, followed by st2). A write lands on both
// nodes; resumable uploads sent to the follower run on the primary; a disk made unreadable leaves reads working,
// scrub reports it and repair restores the copies; flipped bytes are found and repaired; the primary killed in the
// middle of an upload loses no acknowledged file and shows no half file; a follower cut off from the primary still
// serves reads; with the primary gone for good, the follower is promoted, and the old primary, back, follows it from
// an empty copy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestNet, netnsUnavailableReason, startNet } from './support/netns.ts';
import { ADMIN_PASSWORD, type TestDevice, activateFirst, destroyDevice, joinDevice, startDevice } from './support/devices.ts';
import { until } from './support/wait.ts';
import { chunkIntact, flipByte, latestById, packFiles, packedChunks } from './support/dfs-packs.ts';

const ZONE = 'files.example.com';
const skip = netnsUnavailableReason();
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Status {
  disks: { node: string; disk_id: string; state: string; chunks: number; errors: { read: number; write: number; corrupt: number }; repairs: number }[];
  scrub: { running: boolean; checked: number; corrupt: number; missing: number; repaired: number };
  under_replicated: number;
  volumes: { name: string; role: string; last_seq: number }[];
}

describe('dcfs-lite on several devices', { skip: skip ?? false, timeout: 900_000 }, () => {
  let net: TestNet;
  const devices: TestDevice[] = [];
  let ood1: TestDevice;
  let st1: TestDevice;
  let st2: TestDevice;
  let token = '';
  const data = randomBytes(4 * 1024 * 1024 + 777);
  const disk = (d: TestDevice, n: number) => join(d.root, `disk${n}`);

  /** The CLI on a device as alice, with one session token for the whole test. */
  const as = (d: TestDevice, args: string[]) => d.cli(['--user', 'alice', ...args], { BUCKYOS_TOKEN: token }, 120_000);
  const status = async (d: TestDevice) => JSON.parse(await d.cli(['fs', 'status', '--json'])) as Status;

  before(async () => {
    net = await startNet({ devices: [{ name: 'ood1' }, { name: 'st1' }, { name: 'st2' }] });
    [ood1, st1, st2] = await Promise.all(['ood1', 'st1', 'st2'].map((n) => startDevice(net, n)));
    devices.push(ood1, st1, st2);
    await activateFirst(ood1, ZONE);
    await joinDevice(ood1, st1, 'storage');
    await joinDevice(ood1, st2, 'storage');
    const script = join(ood1.root, 'login.mjs');
    writeFileSync(script, `
      const hub = 'http://127.0.0.1:3180/kapi/verify-hub';
      const call = async (method, params) => (await (await fetch(hub, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method, params, sys: [1, null] }) })).json()).result;
      const { nonce } = await call('login_nonce', {});
      console.log((await call('login_password', { username: 'alice', password: ${JSON.stringify(ADMIN_PASSWORD)}, nonce, app_id: 'buckyos-cli' })).session_token);
    `);
    token = (await net.exec('ood1', process.execPath, [script])).trim();
    assert.ok(token.split('.').length === 3, 'alice logged in');
  });
  after(async () => {
    await Promise.all(devices.map(destroyDevice));
    await net?.destroy();
  });

  it('places dfs on the storage devices once they have disks, and a volume across them', async () => {
    for (const d of [st1, st2]) {
      for (const n of [1, 2]) {
        mkdirSync(disk(d, n));
        await ood1.cli(['fs', 'disk', 'add', disk(d, n), '--id', `d${n}`, '--node', d.name]);
      }
    }
    await ood1.cli(['fs', 'volume', 'create', 'home', '--copies', '2', '--domain', 'node', '--primary', 'st1', '--followers', 'st2']);
    for (const d of [st1, st2]) await d.waitFor((s) => s.children.some((c) => c.name === 'dfs' && c.healthy), 90_000, `dfs on ${d.name}`);
    assert.ok(!ood1.status()!.children.some((c) => c.name === 'dfs'), 'no dfs on the core device, which has no disk');
    await until('alice has a home on the volume', async () => ((await as(ood1, ['fs', 'ls', 'home:/home'])).includes('alice') ? true : undefined), 90_000);
  });

  it('stores a file with one copy on each storage node, and reads it from any device', async () => {
    const local = join(ood1.root, 'f.bin');
    writeFileSync(local, data);
    await as(ood1, ['fs', 'put', local, 'home:/home/alice/f.bin']);
    const back = join(st2.root, 'back.bin');
    await as(st2, ['fs', 'get', 'home:/home/alice/f.bin', back]);
    assert.equal(sha(readFileSync(back)), sha(data));
    const s = await until('both nodes report their chunks', async () => {
      const st = await status(ood1);
      const on = (n: string) => st.disks.filter((d) => d.node === n).reduce((a, d) => a + d.chunks, 0);
      return on('st1') > 0 && on('st1') === on('st2') ? st : undefined;
    }, 90_000);
    assert.equal(s.under_replicated, 0);
  });

  it('serves WebDAV on a follower\'s LAN listener: writes go on to the primary with the caller\'s session', async () => {
    // From the core device, as a computer on the LAN would: Basic credentials to st2, which only follows the volume.
    const script = join(ood1.root, 'dav.mjs');
    writeFileSync(script, `
      const auth = 'Basic ' + Buffer.from('alice:' + ${JSON.stringify(ADMIN_PASSWORD)}).toString('base64');
      const at = (ip) => 'http://' + ip + ':3780/dav/home/home/alice';
      const body = Buffer.from('written through the follower');
      const put = await fetch(at(${JSON.stringify(st2.ip)}) + '/via-follower.txt', { method: 'PUT', headers: { authorization: auth }, body });
      const move = await fetch(at(${JSON.stringify(st2.ip)}) + '/via-follower.txt', {
        method: 'MOVE', headers: { authorization: auth, destination: at(${JSON.stringify(st2.ip)}) + '/moved.txt' },
      });
      const read = await fetch(at(${JSON.stringify(st1.ip)}) + '/moved.txt', { headers: { authorization: auth } });
      console.log(JSON.stringify({ put: put.status, move: move.status, read: read.status, text: await read.text() }));
    `);
    const r = JSON.parse((await net.exec('ood1', process.execPath, [script])).trim()) as { put: number; move: number; read: number; text: string };
    assert.deepEqual(r, { put: 201, move: 201, read: 200, text: 'written through the follower' });
  });

  it('takes resumable uploads sent to the follower: every call and part runs on the primary, as the caller', async () => {
    // Run on st2, which only follows the volume: its gateway hands everything to st2's own dfs, which must pass the
    // upload's calls and parts on to st1, where the spool is.
    const body = randomBytes(3 * 1024 * 1024 + 555);
    const split = 2 * 1024 * 1024;
    writeFileSync(join(st2.root, 'up.bin'), body);
    const prelude = `
      const token = ${JSON.stringify(token)};
      const gw = 'http://127.0.0.1:3180';
      const call = async (method, params) => (await fetch(gw + '/kapi/dfs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method, params, sys: [1, token] }) })).json();
      const put = async (url, headers, bytes) => {
        const r = await fetch(gw + url, { method: 'PUT', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/octet-stream', ...headers }, body: bytes });
        return { status: r.status, body: await r.json() };
      };
      const data = (await import('node:fs')).readFileSync(${JSON.stringify(join(st2.root, 'up.bin'))});
    `;
    const run = async (name: string, code: string) => {
      const script = join(st2.root, name);
      writeFileSync(script, `${prelude}\n${code}`);
      return JSON.parse((await net.exec('st2', process.execPath, [script])).trim()) as Record<string, { result?: Record<string, unknown>; error?: { code: string; message: string }; status?: number; body?: Record<string, unknown> }>;
    };
    const spools = (d: TestDevice) => readdirSync(join(d.paths.data, 'dfs', 'uploads')).sort();

    const first = await run('upload-1.mjs', `
      const begin = await call('upload_begin', { volume: 'home', path: '/home/alice/resumed.bin', size: data.length });
      const part1 = await put(begin.result.url, { 'content-range': 'bytes 0-${split - 1}/' + data.length }, data.subarray(0, ${split}));
      const status = await call('upload_status', { upload_id: begin.result.upload_id });
      console.log(JSON.stringify({ begin, part1, status }));
    `);
    const id = String(first.begin!.result!.upload_id);
    assert.match(id, /^home\.[A-Za-z0-9_-]{22}$/, JSON.stringify(first.begin));
    assert.deepEqual(first.part1, { status: 200, body: { offset: split } });
    assert.deepEqual({ offset: first.status!.result!.offset, size: first.status!.result!.size }, { offset: split, size: body.length });
    const key = id.slice('home.'.length);
    assert.deepEqual(spools(st1), [`${key}.json`, `${key}.part`], 'the spool is on the primary');
    assert.deepEqual(spools(st2), [], 'and nothing on the follower');

    const second = await run('upload-2.mjs', `
      const id = ${JSON.stringify(id)};
      const url = '/kapi/dfs/uploads/' + id;
      const stale = await put(url, { 'content-range': 'bytes 0-4/' + data.length }, data.subarray(0, 5));
      const part2 = await put(url + '?offset=${split}', {}, data.subarray(${split}));
      const status = await call('upload_status', { upload_id: id });
      const commit = await call('upload_commit', { upload_id: id, content_id: ${JSON.stringify(`sha256:${sha(body)}`)} });
      const gone = await call('upload_status', { upload_id: id });
      const other = await call('upload_begin', { volume: 'home', path: '/home/alice/dropped.bin', size: 10 });
      const otherPart = await put(other.result.url, { 'content-range': 'bytes 0-4/10' }, Buffer.from('01234'));
      const abort = await call('upload_abort', { upload_id: other.result.upload_id });
      const afterAbort = await put(other.result.url + '?offset=5', {}, Buffer.from('56789'));
      const malformed = await call('upload_status', { upload_id: 'A'.repeat(22) });
      console.log(JSON.stringify({ stale, part2, status, commit, gone, other, otherPart, abort, afterAbort, malformed }));
    `);
    const stale = second.stale!.body!.error as { code: string; data: { offset: number } } | undefined;
    assert.deepEqual([second.stale!.status, stale?.code, stale?.data.offset], [409, 'CONFLICT', split], 'a part at an old offset: the primary\'s answer comes back');
    assert.deepEqual(second.part2, { status: 200, body: { offset: body.length } });
    assert.equal(second.status!.result!.offset, body.length);
    assert.deepEqual({ size: second.commit!.result?.size, content_id: second.commit!.result?.content_id }, { size: body.length, content_id: `sha256:${sha(body)}` }, JSON.stringify(second.commit));
    assert.equal(second.gone!.error?.code, 'NOT_FOUND');
    assert.match(second.gone!.error!.message, /no such upload/);
    assert.match(String(second.other!.result!.upload_id), /^home\./);
    assert.deepEqual(second.otherPart, { status: 200, body: { offset: 5 } });
    assert.deepEqual(second.abort!.result, { aborted: true });
    assert.equal(second.afterAbort!.status, 404, JSON.stringify(second.afterAbort));
    assert.equal(second.malformed!.error?.code, 'INVALID_PARAMS');
    assert.match(second.malformed!.error!.message, /<volume>\.<22 characters>/);
    assert.deepEqual([spools(st1), spools(st2)], [[], []], 'commit and abort leave no spool anywhere');

    const back = join(ood1.root, 'resumed.bin');
    await as(ood1, ['fs', 'get', 'home:/home/alice/resumed.bin', back]);
    assert.equal(sha(readFileSync(back)), sha(body), 'the file reads back whole');
    assert.doesNotMatch(await as(st2, ['fs', 'ls', 'home:/home/alice']), /dropped\.bin/, 'the aborted upload is not visible');
    // What a person on the follower runs: `fs put` is begin, parts and commit through st2's own dfs.
    await as(st2, ['fs', 'put', join(st2.root, 'up.bin'), 'home:/home/alice/put-on-follower.bin']);
    const back2 = join(st2.root, 'put-back.bin');
    await as(st2, ['fs', 'get', 'home:/home/alice/put-on-follower.bin', back2]);
    assert.equal(sha(readFileSync(back2)), sha(body));
  });

  it('reads through a disk made unreadable, scrub reports it, and repair restores the copies', async () => {
    const victim = [1, 2].map((n) => disk(st1, n)).find((d) => packedChunks(d).length > 0)!;
    const files = latestById(packedChunks(victim));
    // Root reads through any permission bit; a link to a file that fails every read is a disk that fails. The store
    // keeps its packs open, so the disk fails for it once dfs starts again (as after a reboot onto a failing disk).
    for (const f of packFiles(victim)) {
      unlinkSync(f);
      symlinkSync('/proc/self/mem', f);
    }
    const before = st1.status()!.children.find((c) => c.name === 'dfs')!.pid!;
    process.kill(before, 'SIGKILL');
    await st1.waitFor((s) => s.children.some((c) => c.name === 'dfs' && c.healthy && c.pid !== before), 120_000, 'dfs restarted on st1');
    const back = join(ood1.root, 'through.bin');
    await as(ood1, ['fs', 'get', 'home:/home/alice/f.bin', back]);
    assert.equal(sha(readFileSync(back)), sha(data), 'every chunk came from the copy on st2');
    await st1.cli(['fs', 'scrub']);
    const s = await until('scrub on st1 finished', async () => {
      const st = await status(st1);
      return !st.scrub.running && st.scrub.checked > 0 ? st : undefined;
    }, 90_000);
    assert.equal(s.scrub.missing + s.scrub.corrupt, files.length, 'every unreadable chunk is reported');
    assert.equal(s.scrub.repaired, files.length, 'and repaired from st2');
    const d = s.disks.find((x) => x.node === 'st1' && victim.endsWith(`disk${x.disk_id.slice(1)}`))!;
    assert.ok(d.errors.read + d.errors.corrupt > 0, `the disk's errors are counted: ${JSON.stringify(d.errors)}`);
    assert.equal(d.repairs, files.length);
    const now = packedChunks(victim);
    for (const f of files) assert.ok(now.some((x) => x.id === f.id && chunkIntact(x)), `chunk ${f.id} is whole again`);
  });

  it('finds every flipped chunk on a storage node with scrub and repairs it', async () => {
    const victim = [1, 2].map((n) => disk(st2, n)).find((d) => packedChunks(d).length > 0)!;
    const files = latestById(packedChunks(victim));
    for (const f of files) flipByte(f, f.length - 1);
    await st2.cli(['fs', 'scrub']);
    const s = await until('scrub on st2 finished', async () => {
      const st = await status(st2);
      return !st.scrub.running && st.scrub.checked > 0 ? st : undefined;
    }, 90_000);
    assert.equal(s.scrub.corrupt, files.length);
    assert.equal(s.scrub.repaired, files.length);
    const now = packedChunks(victim);
    for (const f of files) assert.ok(now.some((x) => x.id === f.id && chunkIntact(x)), `chunk ${f.id} is whole again`);
  });

  it('keeps every acknowledged file when the primary dies mid-upload, and shows no half-written file', async () => {
    const big = join(ood1.root, 'big.bin');
    writeFileSync(big, randomBytes(64 * 1024 * 1024));
    const upload = as(ood1, ['fs', 'put', big, 'home:/home/alice/big.bin']).then(
      () => 'finished',
      (err: Error) => err.message,
    );
    // Kill st1 (the volume's primary) once the upload has begun sending parts.
    await until('the upload is under way', async () => (readdirSync(join(st1.paths.data, 'dfs', 'uploads')).some((f) => f.endsWith('.part')) ? true : undefined), 60_000);
    await st1.kill();
    assert.notEqual(await upload, 'finished');
    st1.start();
    await st1.waitFor((s) => s.children.some((c) => c.name === 'dfs' && c.healthy), 120_000, 'dfs back on st1');
    const back = join(ood1.root, 'after-crash.bin');
    await until('the acknowledged file reads back after the crash', async () => {
      await as(ood1, ['fs', 'get', 'home:/home/alice/f.bin', back]);
      return sha(readFileSync(back)) === sha(data) ? true : undefined;
    }, 90_000);
    const ls = await as(ood1, ['fs', 'ls', 'home:/home/alice']);
    assert.doesNotMatch(ls, /big\.bin/, 'the interrupted upload is not visible');
  });

  it('serves reads from the follower while the primary is cut off, and refuses writes clearly', async () => {
    await net.cut('st1');
    try {
      // A WebDAV listing with a body, on the follower's LAN listener: st2 first passes it on to st1, which fails, then
      // answers it itself, with the body it had to keep (it is gone from the socket by then).
      const script = join(ood1.root, 'propfind.mjs');
      writeFileSync(script, `
        const auth = 'Basic ' + Buffer.from('alice:' + ${JSON.stringify(ADMIN_PASSWORD)}).toString('base64');
        const r = await fetch('http://${st2.ip}:3780/dav/home/home/alice/', {
          method: 'PROPFIND',
          headers: { authorization: auth, depth: '1', 'content-type': 'application/xml' },
          body: '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/></D:prop></D:propfind>',
        });
        console.log(JSON.stringify({ status: r.status, text: await r.text() }));
      `);
      const listing = JSON.parse((await net.exec('ood1', process.execPath, [script])).trim()) as { status: number; text: string };
      assert.equal(listing.status, 207, listing.text);
      assert.match(listing.text, /f\.bin/);
      assert.match(listing.text, new RegExp(`getcontentlength>${data.length}<`));
      assert.doesNotMatch(listing.text, /getlastmodified/, 'the properties asked for, not all of them');
      const back = join(st2.root, 'apart.bin');
      await until('st2 serves the file from its follower copy', async () => {
        await as(st2, ['fs', 'get', 'home:/home/alice/f.bin', back]);
        return sha(readFileSync(back)) === sha(data) ? true : undefined;
      }, 90_000);
      assert.match(await as(st2, ['fs', 'ls', 'home:/home/alice']), /f\.bin/);
      const w = await st2.tryCli(['--user', 'alice', 'fs', 'mkdir', 'home:/home/alice/new'], { BUCKYOS_TOKEN: token });
      assert.notEqual(w.code, 0);
      assert.match(w.stderr, /UNAVAILABLE/);
    } finally {
      await net.restore('st1');
    }
    rmSync(join(st2.root, 'apart.bin'), { force: true });
  });

  it('promotes the follower once the primary is gone for good; the old primary, back, follows it from the start', async () => {
    const volumeOn = async (d: TestDevice) =>
      (JSON.parse(await ood1.cli(['fs', 'status', '--json', '--node', d.name])) as Status).volumes.find((v) => v.name === 'home');
    const early = await ood1.tryCli(['fs', 'volume', 'promote', 'home', 'st2']);
    assert.notEqual(early.code, 0, early.stdout);
    // Refused whether st1 answers, or (its link just restored above) has not answered yet but is not counted dead.
    assert.match(early.stderr, /the primary st1 (still answers|does not answer .* does not count its dfs dead yet)/);
    const notFollower = await ood1.tryCli(['fs', 'volume', 'promote', 'home', 'ood1']);
    assert.notEqual(notFollower.code, 0);
    assert.match(notFollower.stderr, /ood1 is not a follower of the volume \(st1 is its primary; its followers are st2\)/);
    await until('st2 has followed everything st1 holds', async () => {
      const [a, b] = await Promise.all([volumeOn(st1), volumeOn(st2)]);
      return a && b && b.role === 'follower' && b.last_seq === a.last_seq ? true : undefined;
    }, 60_000);

    await st1.kill();
    const promoted = await until('st2 promoted', async () => {
      const r = await ood1.tryCli(['fs', 'volume', 'promote', 'home', 'st2']);
      return r.code === 0 ? r.stdout : undefined;
      // The scheduler counts st1's dfs dead 90 s after its last heartbeat.
    }, 180_000);
    assert.match(promoted, /volume home: metadata now on st2/);
    assert.match(promoted, /buckyos fs gc --accept home/);
    // Folders need no chunks: they can be made with one storage node left, where a file's two copies cannot.
    await until('the new primary takes writes', async () => {
      const r = await ood1.tryCli(['--user', 'alice', 'fs', 'mkdir', 'home:/home/alice/after-promotion'], { BUCKYOS_TOKEN: token });
      return r.code === 0 ? true : undefined;
    }, 90_000);
    const back = join(ood1.root, 'promoted.bin');
    await as(ood1, ['fs', 'get', 'home:/home/alice/f.bin', back]);
    assert.equal(sha(readFileSync(back)), sha(data));
    assert.equal((await volumeOn(st2))?.role, 'primary');

    st1.start();
    await st1.waitFor((s) => s.children.some((c) => c.name === 'dfs' && c.healthy), 120_000, 'dfs back on st1');
    await ood1.cli(['fs', 'volume', 'followers', 'home', 'st1']);
    await until('st1 follows st2 from an empty copy', async () => {
      const [a, b] = await Promise.all([volumeOn(st1), volumeOn(st2)]);
      return a && b && a.role === 'follower' && a.last_seq === b.last_seq ? true : undefined;
    }, 90_000);
    assert.ok(readdirSync(join(st1.paths.data, 'dfs', 'volumes')).some((n) => n.startsWith('home.retired-')), "st1's old primary copy is set aside");
    assert.match(await as(ood1, ['fs', 'ls', 'home:/home/alice']), /after-promotion/);
  });
});
