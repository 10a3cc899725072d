// A follower pulling its primary's log over HTTP, made of the real parts: the primary's log endpoint (DfsHttp), the
// follower's PeerChunks and VolumeSet, and its `status` (createDfsEndpoint). Log entries of large files are large (every
// chunk listed), so a backlog, or a single entry, can be far more than one answer used to hold.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { until } from '../../../test/support/wait.ts';
import { type DfsVolumeStatus, dfsApi } from '../../lib/api/dfs.ts';
import type { VolumeRecord } from '../../lib/config/storage-records.ts';
import { type Principal, createClient } from '../../lib/krpc/index.ts';
import { type TestFiles, NODE, VOLUME, openTestFiles, session } from './files.suite.ts';
import { dfsFaces } from './endpoint.suite.ts';
import { Files } from './files.ts';
import { Collector, fileMarks } from './gc.ts';
import { PeerChunks } from './peers.ts';
import { Scrubber } from './scrub.ts';
import { createDfsEndpoint } from './service.ts';
import { Uploads } from './uploads.ts';
import { VolumeSet } from './volumes.ts';

const log = pino({ level: 'silent' });
const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
/** What a follower used to refuse: any log answer over 64 MiB. */
const OLD_ANSWER_LIMIT = 64 * 1024 * 1024;
const FOLLOWER = 'st2';
// A token of another dfs instance, or `<user>:<app>`: verify-hub's part, which this test is not about.
const authenticate = async (token: string): Promise<Principal> =>
  token === 'dfs' ? { userId: 'dfs', appId: 'dfs', kind: 'service', expiresAt: 0 } : session(token.split(':')[0]!, token.split(':')[1]!);

async function serve(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('a follower catching up with its primary over HTTP (volumes.ts, peers.ts, http.ts)', () => {
  let t: TestFiles;
  let primary: Server;
  let followerServer: Server;
  let follower: VolumeSet;
  /** Log requests the primary answers before it stops answering them (a primary going away mid-catch-up). */
  let answering = Infinity;
  /** The follower's `status` of the volume. */
  let status: () => Promise<DfsVolumeStatus>;

  /** A backlog of `files` writes of 1 GiB files, 4096 chunks each: about 390 KiB of log apiece. */
  function writeBacklog(files: number): void {
    for (let f = 0; f < files; f++) {
      const chunks = Array.from({ length: 4096 }, (_, i) => ({ id: sha(`${f}/${i}`), size: 256 * 1024 }));
      t.meta.writeFile(`/v/f${f}.mkv`, { content_id: sha(`file ${f}`), size: 4096 * 256 * 1024, chunks }, { user: 'alice' });
    }
  }
  const entryBytes = (seq: number) => Buffer.byteLength(JSON.stringify(t.meta.log(seq - 1, 1)[0]));

  before(async () => {
    t = await openTestFiles('');
    t.meta.mkdir('/v', 'alice');
    const { http } = dfsFaces(t, authenticate);
    const p = await serve((req, res) => {
      const url = new URL(req.url!, `http://${NODE}`);
      if (url.pathname.endsWith('/log') && answering-- <= 0) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'going away' } }));
        return;
      }
      void http.handle(req, res, url);
    });
    primary = p.server;
    // The follower reaches the primary's instance straight, where a node reaches it through its gateway.
    const peers = new PeerChunks({ gatewayUrl: p.url, token: async () => 'dfs' });
    follower = new VolumeSet(FOLLOWER, join(t.dir, FOLLOWER), peers, log);
    const record: VolumeRecord = { primary: NODE, followers: [FOLLOWER], policy: { copies: 1, failure_domain: 'disk' }, folders: {}, keep_versions: 10, created_at: 1 };
    const endpoint = createDfsEndpoint({
      self: FOLLOWER,
      gatewayUrl: p.url,
      files: new Files({ self: FOLLOWER, volumes: follower, io: t.io, zone: t.zone, rbac: t.rbac }),
      uploads: new Uploads(join(t.dir, 'uploads-st2')),
      disks: t.disks,
      volumes: follower,
      zone: t.zone,
      scrubber: new Scrubber(t.disks, t.io, follower, t.zone, log),
      collector: new Collector({ disks: () => [], volumes: async () => [], page: () => Promise.reject(new Error('unused')), marks: fileMarks(join(t.dir, 'gc-marks.json')), log }),
      authenticate,
      roleOf: async () => 'user',
      log,
    });
    const f = await serve((req, res) => void endpoint.handle(req, res));
    followerServer = f.server;
    const client = createClient(dfsApi, { baseUrl: f.url, token: 'alice:files' });
    status = async () => (await client.status({})).volumes.find((v) => v.name === VOLUME)!;
    // The zone's records as the follower's node would see them: it follows home, whose primary is st1.
    t.zone().volumes.set(VOLUME, record);
    writeBacklog(200);
    assert.ok(t.meta.log(0, 1000).reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e)), 0) > OLD_ANSWER_LIMIT);
  });
  after(async () => {
    follower.close();
    for (const s of [primary, followerServer]) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    await t.close();
  });

  it('reports how far behind the primary it is, and why, while the primary stops answering mid-way', async () => {
    answering = 1;
    follower.sync(t.zone().volumes);
    const behind = await until('the second log request fails', async () => {
      const s = await status();
      return s.sync_error ? s : undefined;
    });
    assert.match(behind.sync_error!, /HTTP 503: going away/);
    assert.equal(behind.synced_at, null, 'no pull has caught up yet');
    assert.ok(behind.last_seq > 1 && behind.last_seq < t.meta.lastSeq, `one answer of entries, cut by bytes: ${behind.last_seq} of ${t.meta.lastSeq}`);
    assert.equal(behind.lag, t.meta.lastSeq - behind.last_seq);
  });

  it('catches up on a backlog larger than any answer it used to take, then says it is in step', async () => {
    const from = Date.now();
    answering = Infinity;
    const caught = await until('the follower caught up', async () => {
      const s = await status();
      return s.last_seq === t.meta.lastSeq && s.synced_at !== null ? s : undefined;
    }, 120_000);
    assert.equal(caught.lag, 0);
    assert.equal(caught.sync_error, null);
    assert.ok(caught.synced_at! >= from);
    assert.equal(follower.get(VOLUME)!.meta.stat('/v/f199.mkv').size, 4096 * 256 * 1024);
  });

  it('takes one entry larger than any answer it used to take, and goes on after it', async () => {
    // A copy of the folder lists every chunk of every file in one entry.
    t.meta.copy('/v', '/v-copy', { user: 'alice' });
    assert.ok(entryBytes(t.meta.lastSeq) > OLD_ANSWER_LIMIT);
    t.meta.mkdir('/later', 'alice');
    await until('the follower caught up', async () => {
      const s = await status();
      return s.last_seq === t.meta.lastSeq && s.lag === 0 && s.sync_error === null ? s : undefined;
    }, 120_000);
    const copy = follower.get(VOLUME)!.meta;
    assert.equal(copy.stat('/v-copy/f199.mkv').size, 4096 * 256 * 1024);
    assert.equal(copy.stat('/later').type, 'dir');
  });
});
