// `buckyos fs` against the real dfs file layer, HTTP and kRPC endpoint on a local port (what the node gateway would
// pass on), with faults put in the server's way: downloads cut short, upload connections broken, bytes changed.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import type { DfsVolumeStatus } from '../lib/api/dfs.ts';
import { dfsFaces } from '../storage/dfs/endpoint.suite.ts';
import { type TestFiles, openTestFiles, session } from '../storage/dfs/files.suite.ts';
import { promotionRefusal, registerFs } from './fs.ts';

/** What the server does to the next requests, set by each test. */
interface Faults {
  /** A download of a file is cut after this many bytes, once. */
  cutGetAt?: number;
  /** Sees each upload part first; true when it has dealt with the request itself. */
  part?: (req: IncomingMessage, res: ServerResponse) => boolean;
  fileGets: number;
}

let t: TestFiles;
let faults: Faults;
let server: ReturnType<typeof createServer>;
let base: string;
let root: string;
let work: string;

beforeEach(async () => {
  t = await openTestFiles('g, alice, user\n');
  t.meta.ensureHome('alice');
  const { endpoint, http } = dfsFaces(t, async (token: string) => session(token.split(':')[0]!, token.split(':')[1]!));
  faults = { fileGets: 0 };
  server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://st1');
    if (url.pathname === '/kapi/dfs') return void endpoint.handle(req, res);
    if (url.pathname.startsWith('/kapi/dfs/uploads/') && faults.part?.(req, res)) return;
    if (url.pathname.startsWith('/kapi/dfs/files/') && req.method === 'GET') {
      faults.fileGets++;
      if (faults.cutGetAt !== undefined) cutAt(res, faults.cutGetAt);
      faults.cutGetAt = undefined;
    }
    void http.handle(req, res, url);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  root = mkdtempSync(join(tmpdir(), 'cli-fs-'));
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'node.json'), JSON.stringify({ ports: { gateway: (server.address() as AddressInfo).port } }));
  work = join(root, 'work');
  mkdirSync(work);
  process.env.BUCKYOS_TOKEN = 'alice:buckyos-cli';
});

afterEach(async () => {
  server.closeAllConnections();
  server.close();
  await t.close();
  rmSync(root, { recursive: true, force: true });
});

/** Sends the first `at` bytes of the answer, then closes the connection, as a dropped link would. */
function cutAt(res: ServerResponse, at: number): void {
  const write = res.write.bind(res) as (chunk: Buffer, cb?: () => void) => boolean;
  let sent = 0;
  res.write = ((chunk: Buffer) => {
    if (sent >= at) return false;
    const piece = chunk.subarray(0, at - sent);
    sent += piece.length;
    // Ended rather than reset once the bytes are out, so all of them reach the client.
    return sent < at ? write(piece) : (write(piece, () => res.socket?.end()), false);
  }) as typeof res.write;
}

/** Runs `buckyos --user alice fs <args>` in this process. */
async function fs(...args: string[]): Promise<void> {
  const program = new Command('buckyos').option('--root <dir>').option('--user <name>').exitOverride();
  registerFs(program);
  await program.parseAsync(['--root', root, '--user', 'alice', 'fs', ...args], { from: 'user' });
}

async function store(path: string, data: Buffer): Promise<void> {
  const r = await fetch(`${base}/kapi/dfs/files/home${path}`, { method: 'PUT', headers: { authorization: 'Bearer alice:buckyos-cli' }, body: new Uint8Array(data) });
  assert.ok(r.ok, await r.text());
}

async function stored(path: string): Promise<Buffer | null> {
  const r = await fetch(`${base}/kapi/dfs/files/home${path}`, { headers: { authorization: 'Bearer alice:buckyos-cli' } });
  return r.status === 404 ? null : Buffer.from(await r.arrayBuffer());
}

/** Passes each chunk of a request's body, and how far into it it ends, through `fn` as the server reads it. */
function tap(req: IncomingMessage, fn: (chunk: Buffer, at: number) => Buffer): void {
  const chunks = req[Symbol.asyncIterator].bind(req);
  let at = 0;
  Object.defineProperty(req, Symbol.asyncIterator, {
    value: async function* () {
      for await (const c of { [Symbol.asyncIterator]: chunks }) {
        at += (c as Buffer).length;
        yield fn(c as Buffer, at);
      }
    },
  });
}

const spools = () => readdirSync(join(t.dir, 'uploads')).filter((n) => !n.startsWith('.'));

describe('buckyos fs get', () => {
  const A = randomBytes(3 << 20);
  const B = randomBytes(3 << 20);

  /** /home/alice/f.bin holds A, and its download to work/f.bin was cut after 1 MiB, leaving a part. */
  async function cutDownloadOfA(): Promise<void> {
    await store('/home/alice/f.bin', A);
    faults.cutGetAt = 1 << 20;
    await assert.rejects(fs('get', 'home:/home/alice/f.bin', join(work, 'f.bin')), /download stopped at \d+ of 3145728 bytes .*run the same command again to resume/);
  }

  it('resumes a download only while the server has the version it began, else starts over', async () => {
    await cutDownloadOfA();
    await store('/home/alice/f.bin', B);
    await fs('get', 'home:/home/alice/f.bin', join(work, 'f.bin'));
    assert.ok(readFileSync(join(work, 'f.bin')).equals(B), 'the new version, not the old one\'s start joined to its end');
    assert.deepEqual(readdirSync(work), ['f.bin']);
  });

  it('does not resume a partial download of another remote file under the same local name', async () => {
    await store('/home/alice/a.bin', A);
    await store('/home/alice/b.bin', B);
    faults.cutGetAt = 1 << 20;
    await assert.rejects(fs('get', 'home:/home/alice/a.bin', join(work, 'x.bin')));
    await fs('get', 'home:/home/alice/b.bin', join(work, 'x.bin'));
    assert.ok(readFileSync(join(work, 'x.bin')).equals(B));
  });

  it('resumes an unchanged file from where it stopped, having said it would', async () => {
    await cutDownloadOfA();
    await fs('get', 'home:/home/alice/f.bin', join(work, 'f.bin'));
    assert.ok(readFileSync(join(work, 'f.bin')).equals(A));
  });

  it('checks a resumed download against the content id, and deletes what does not match', async () => {
    await cutDownloadOfA();
    const part = join(work, 'f.bin.part');
    const damaged = readFileSync(part);
    damaged[10]! ^= 0xff;
    writeFileSync(part, damaged);
    await assert.rejects(fs('get', 'home:/home/alice/f.bin', join(work, 'f.bin')), /hash to sha256:[0-9a-f]{64}, not sha256:.*deleted them/);
    assert.deepEqual(readdirSync(work), []);
    await fs('get', 'home:/home/alice/f.bin', join(work, 'f.bin'));
    assert.ok(readFileSync(join(work, 'f.bin')).equals(A));
  });

  it('finishes a part that holds every byte without asking for more', async () => {
    await cutDownloadOfA();
    // As if the command had been stopped after the last byte was written, before the part was renamed.
    const part = join(work, 'f.bin.part');
    appendFileSync(part, A.subarray(statSync(part).size));
    const gets = faults.fileGets;
    await fs('get', 'home:/home/alice/f.bin', join(work, 'f.bin'));
    assert.ok(readFileSync(join(work, 'f.bin')).equals(A));
    assert.equal(faults.fileGets, gets);
  });

  it('downloads into a folder given as the destination', async () => {
    await store('/home/alice/f.bin', A);
    await fs('get', 'home:/home/alice/f.bin', `${join(work, 'new')}/`);
    assert.ok(readFileSync(join(work, 'new', 'f.bin')).equals(A));
    mkdirSync(join(work, 'there'));
    await fs('get', 'home:/home/alice/f.bin', join(work, 'there'));
    assert.ok(readFileSync(join(work, 'there', 'f.bin')).equals(A));
  });
});

describe('buckyos fs put', () => {
  const local = () => join(work, 'up.bin');
  const data = randomBytes(3 << 20);
  beforeEach(() => {
    writeFileSync(local(), data);
    // Well in the past, so a change during the upload is seen whatever the clock's resolution.
    utimesSync(local(), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  });

  it('resumes where the server stands after the connection breaks mid-part', async () => {
    let broken = false;
    faults.part = (req) => {
      if (!broken) {
        tap(req, (c, at) => {
          if (at > 1 << 20) req.socket.destroy();
          return c;
        });
      }
      broken = true;
      return false;
    };
    await fs('put', local(), 'home:/home/alice/up.bin');
    assert.ok((await stored('/home/alice/up.bin'))?.equals(data));
    assert.deepEqual(spools(), []);
  });

  it('gives up after some tries without progress, and drops the upload', async () => {
    faults.part = (req) => {
      req.socket.destroy();
      return true;
    };
    await assert.rejects(fs('put', local(), 'home:/home/alice/up.bin'), /connection lost.*gave up after resuming 5 times/);
    assert.equal(await stored('/home/alice/up.bin'), null);
    assert.deepEqual(spools(), []);
  });

  it('refuses to store bytes other than those read from the file, and drops the upload', async () => {
    // Damaged on the way, as a part sent again after a change in the file would be.
    faults.part = (req) => {
      tap(req, (c, at) => {
        if (at === c.length) c[0]! ^= 0xff;
        return c;
      });
      return false;
    };
    await assert.rejects(fs('put', local(), 'home:/home/alice/up.bin'), /the bytes received hash to/);
    assert.equal(await stored('/home/alice/up.bin'), null);
    assert.deepEqual(spools(), []);
  });

  it('refuses a file that changed while it was uploaded, and drops the upload', async () => {
    faults.part = (req) => {
      tap(req, (c, at) => {
        if (at === c.length) writeFileSync(local(), randomBytes(data.length));
        return c;
      });
      return false;
    };
    await assert.rejects(fs('put', local(), 'home:/home/alice/up.bin'), /changed while it was uploaded/);
    assert.equal(await stored('/home/alice/up.bin'), null);
    assert.deepEqual(spools(), []);
  });
});

describe('buckyos fs cp', () => {
  it('refuses a destination on another volume rather than copying within the source volume', async () => {
    await store('/home/alice/a.bin', randomBytes(10));
    await assert.rejects(fs('cp', 'home:/home/alice/a.bin', 'photos:/home/alice/b.bin'), /cp works within one volume/);
    assert.equal(await stored('/home/alice/b.bin'), null);
  });
});

describe('buckyos fs volume promote: the candidate', () => {
  const follower: DfsVolumeStatus = { name: 'home', role: 'follower', last_seq: 120, log_start: 0, lag: 3, synced_at: 1, sync_error: null };

  it('takes a follower that holds the log, behind or not', () => {
    assert.equal(promotionRefusal('st2', follower, false), null);
  });

  it('refuses a follower that holds nothing, which would start the volume empty, unless forced', () => {
    const empty = { ...follower, last_seq: 0, lag: null, synced_at: null, sync_error: 'st1: log of home: HTTP 503: going away' };
    assert.match(promotionRefusal('st2', empty, false)!, /st2 holds nothing of home \(log seq 0; its last pull of the log failed: st1: log of home: HTTP 503: going away\): as primary it would start home anew, empty/);
    assert.match(promotionRefusal('st2', { ...empty, sync_error: null }, false)!, /\(log seq 0; it has not pulled the log yet\)/);
    assert.equal(promotionRefusal('st2', empty, true), null);
  });

  it('refuses a node that holds no follower copy, forced or not', () => {
    for (const role of ['primary', 'none'] as const) {
      assert.match(promotionRefusal('st2', { ...follower, role }, true)!, new RegExp(`st2 holds no follower copy of home \\(its role: ${role}\\)`));
    }
  });
});
