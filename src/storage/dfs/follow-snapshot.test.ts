// Followers catching up from a snapshot once their primary no longer keeps the log they need, made of the real parts:
// the primary's VolumeSet (its retention) and HTTP endpoints (DfsHttp: the log and the snapshot), and each follower's
// PeerChunks and VolumeSet. A follower away past the retention window, and a new empty one, take the primary's
// snapshot and then follow the log; a snapshot cut short or damaged on the way leaves the copy as it was, and is asked
// for again only after growing waits. A snapshot that never comes holds up none of the node's other volumes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, readdirSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { until } from '../../../test/support/wait.ts';
import type { VolumeRecord } from '../../lib/config/storage-records.ts';
import type { Principal } from '../../lib/krpc/index.ts';
import { type TestFiles, NODE, VOLUME, openTestFiles, session } from './files.suite.ts';
import { dfsFaces } from './endpoint.suite.ts';
import { PeerChunks } from './peers.ts';
import { VolumeMeta } from './volume-meta.ts';
import { SNAPSHOT_RETRY_MS, VolumeSet } from './volumes.ts';

const log = pino({ level: 'silent' });
const HOUR = 3_600_000;
/** The primary keeps its last 5 entries, and the log for followers heard from within the hour. */
const RETENTION = { windowMs: HOUR, keepEntries: 5 };
const authenticate = async (token: string): Promise<Principal> =>
  token === 'dfs' ? { userId: 'dfs', appId: 'dfs', kind: 'service', expiresAt: 0 } : session(token.split(':')[0]!, token.split(':')[1]!);

/** How the primary's test server sends a snapshot: whole, cut off after CUT_AT bytes, with a byte flipped there, or
 * not at all (the request is held unanswered, as by a primary still making a snapshot of a large namespace). */
type SnapshotMode = 'whole' | 'cut' | 'corrupt' | 'hold';
const CUT_AT = 8192;

describe('followers catching up from a snapshot of the primary\'s metadata (volumes.ts, snapshots.ts, http.ts)', () => {
  let t: TestFiles;
  let primary: Server;
  let primaryUrl: string;
  let now = 1_700_000_000_000;
  let mode: SnapshotMode = 'whole';
  /** Snapshots the primary sent whole. */
  let sent = 0;
  /** Snapshot requests the primary was sent, and log requests, by asking node. */
  let asked = 0;
  const logAsks = new Map<string, number>();
  /** Snapshot requests held unanswered ('hold'). */
  const holding: ServerResponse[] = [];
  const followers: VolumeSet[] = [];
  const record = (names: string[]): VolumeRecord => ({ primary: NODE, followers: names, policy: { copies: 1, failure_domain: 'disk' }, folders: {}, keep_versions: 10, created_at: 1 });

  /** The zone's volume record, as every node sees it. */
  function setFollowers(names: string[], volume = VOLUME): void {
    t.zone().volumes.set(volume, record(names));
    t.volumes.sync(t.zone().volumes);
    for (const f of followers) f.sync(t.zone().volumes);
  }
  /** A follower node's dfs, started (again) on its own data directory. */
  function startFollower(name: string, clock?: () => number): VolumeSet {
    const peers = new PeerChunks({ gatewayUrl: primaryUrl, token: async () => 'dfs' });
    const f = new VolumeSet(name, join(t.dir, name), peers, log, { retention: RETENTION, ...(clock ? { now: clock } : {}) });
    followers.push(f);
    f.sync(t.zone().volumes);
    return f;
  }
  function stopFollower(f: VolumeSet): void {
    f.close();
    followers.splice(followers.indexOf(f), 1);
  }
  const volumeDirs = (name: string) => readdirSync(join(t.dir, name, 'volumes')).sort();
  const caughtUp = (f: VolumeSet) => until('the follower caught up', () => {
    const v = f.get(VOLUME);
    return v && v.meta.lastSeq === t.meta.lastSeq && v.syncError === null ? v : undefined;
  }, 60_000);
  /** Until the primary has heard `node` ask from its last entry: a follower reports where it stands with each pull. */
  const heardAtEnd = (node: string) => until(`the primary heard ${node} at its last entry`, () =>
    t.volumes.get(VOLUME)!.positions!.positions.get(node)?.seq === t.meta.lastSeq - 1 ? true : undefined);
  const write = (n: number) => {
    for (let i = 0; i < n; i++) t.meta.mkdir(`/v/d${t.meta.lastSeq}`, 'alice');
  };

  before(async () => {
    t = await openTestFiles('', { retention: RETENTION, now: () => now });
    t.meta.mkdir('/v', 'alice');
    write(20);
    const { http } = dfsFaces(t, authenticate);
    primary = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url!, `http://${NODE}`);
      if (url.pathname.endsWith('/log')) {
        const from = url.searchParams.get('from')!;
        logAsks.set(from, (logAsks.get(from) ?? 0) + 1);
      }
      if (url.pathname.endsWith('/snapshot')) {
        asked++;
        const how = mode;
        if (how === 'hold') {
          holding.push(res);
          return;
        }
        let at = 0;
        const write = res.write.bind(res) as (chunk: Buffer, cb?: () => void) => boolean;
        res.write = ((chunk: Buffer) => {
          const from = at;
          at += chunk.length;
          if (how === 'cut' && at > CUT_AT) {
            write(chunk.subarray(0, Math.max(0, CUT_AT - from)), () => res.destroy());
            return false;
          }
          if (how === 'corrupt' && from <= CUT_AT && at > CUT_AT) {
            chunk = Buffer.from(chunk);
            chunk[CUT_AT - from]! ^= 0xff;
          }
          return write(chunk);
        }) as typeof res.write;
        if (how === 'whole') res.on('finish', () => sent++);
      }
      void http.handle(req, res, url);
    });
    primary.listen(0, '127.0.0.1');
    await once(primary, 'listening');
    primaryUrl = `http://127.0.0.1:${(primary.address() as AddressInfo).port}`;
    setFollowers(['st2']);
  });
  after(async () => {
    for (const f of followers.splice(0)) f.close();
    for (const res of holding.splice(0)) res.destroy();
    primary.closeAllConnections();
    await new Promise((r) => primary.close(r));
    await t.close();
  });

  it('a follower away past the window takes a snapshot (one cut short or damaged leaving its copy as it was), then follows the log', async () => {
    let st2 = startFollower('st2');
    await caughtUp(st2);
    await heardAtEnd('st2');
    await t.volumes.retainAll();
    assert.equal(t.meta.logStart, t.meta.lastSeq - RETENTION.keepEntries, 'st2 is at the end: the last entries are kept');
    // st2 goes away; the primary writes on, and an hour and more later keeps only its last entries.
    stopFollower(st2);
    const held = t.meta.lastSeq;
    write(30);
    await t.volumes.retainAll();
    assert.equal(t.meta.logStart, held - 1, 'while st2 is within its window, what it needs is kept');
    now += 2 * HOUR;
    await t.volumes.retainAll();
    assert.equal(t.meta.logStart, t.meta.lastSeq - RETENTION.keepEntries);

    /** The copy as it was; once st2 stops (its attempt under way, if any, then ends), nothing fetched is left. */
    const keptAsItWas = async (f: VolumeSet) => {
      const v = f.get(VOLUME)!;
      assert.equal(v.meta.lastSeq, held, 'the copy is as it was');
      assert.equal(v.meta.stat('/v').type, 'dir');
      assert.ok(v.syncedAt !== null, 'its last sync time is the one from before');
      stopFollower(f);
      await until('no snapshot is left half-fetched', () => (existsSync(join(t.dir, 'st2', 'volumes', `${VOLUME}.incoming`)) ? undefined : true));
      assert.deepEqual(volumeDirs('st2'), [VOLUME], 'nothing set aside');
    };
    mode = 'cut';
    st2 = startFollower('st2');
    const cut = await until('a snapshot cut short', () => st2.get(VOLUME)?.syncError ?? undefined);
    assert.match(cut, /catching up from a snapshot of the primary st1 failed; the copy here is kept as it was: .*(ended after \d+ of \d+ bytes|aborted|socket hang up)/);
    await keptAsItWas(st2);

    mode = 'corrupt';
    st2 = startFollower('st2');
    await until('a damaged snapshot refused', () => (/SHA-256/.test(st2.get(VOLUME)?.syncError ?? '') ? true : undefined));
    await keptAsItWas(st2);

    mode = 'whole';
    st2 = startFollower('st2');
    const v = await caughtUp(st2);
    assert.equal(sent, 1);
    assert.deepEqual(v.meta.list('/v').map((e) => e.name), t.meta.list('/v').map((e) => e.name));
    const aside = volumeDirs('st2').filter((n) => n.startsWith(`${VOLUME}.replaced-`));
    assert.equal(aside.length, 1, 'the old copy is set aside');
    const kept = VolumeMeta.open(join(t.dir, 'st2', 'volumes', aside[0]!, 'meta.db'), { volume: VOLUME, role: 'follower' });
    assert.equal(kept.lastSeq, held);
    kept.close();

    // From here it follows the log: new entries arrive without another snapshot, and the primary keeps them for it.
    write(12);
    await caughtUp(st2);
    assert.equal(sent, 1);
    await heardAtEnd('st2');
    await t.volumes.retainAll();
    assert.equal(t.meta.logStart, t.meta.lastSeq - RETENTION.keepEntries);
    await until('st2 heard what its primary keeps', () => (st2.get(VOLUME)!.primaryLogStart === t.meta.logStart ? true : undefined));
    await st2.retainAll();
    assert.equal(st2.get(VOLUME)!.meta.logStart, t.meta.logStart, 'st2 keeps what its primary keeps');
  });

  it('a new follower, with nothing yet, starts from a snapshot and then follows the log', async () => {
    write(10);
    // st2 keeps up; the clock jumps (st2 is heard from again within a second, but the round below does not wait).
    await caughtUp(followers[0]!);
    await heardAtEnd('st2');
    now += 2 * HOUR;
    await t.volumes.retainAll();
    assert.ok(t.meta.logStart > 0);
    setFollowers(['st2', 'st3']);
    const st3 = startFollower('st3');
    await caughtUp(st3);
    assert.equal(sent, 2);
    assert.deepEqual(volumeDirs('st3'), [VOLUME], 'an empty copy is not kept aside');
    write(3);
    const v = await caughtUp(st3);
    assert.equal(sent, 2);
    assert.equal(v.meta.stat(`/v/d${t.meta.lastSeq - 1}`).owner, 'alice');
  });

  it('a volume whose snapshot never comes holds up none of the node\'s other volumes', async () => {
    const OTHER = 'media';
    setFollowers(['st2', 'st3', 'st4']);
    setFollowers(['st4'], OTHER);
    const other = t.volumes.get(OTHER)!.meta;
    other.mkdir('/m', 'alice');
    other.mkdir('/m/a', 'alice');
    assert.ok(t.meta.logStart > 0, 'st4 can catch up with home only from a snapshot');
    mode = 'hold';
    const st4 = startFollower('st4');
    const otherCaughtUp = () => until(`st4 caught up with ${OTHER}`, () => {
      const v = st4.get(OTHER);
      return v && v.meta.lastSeq === other.lastSeq && v.syncError === null ? v : undefined;
    }, 20_000);
    await otherCaughtUp();
    await until('st4 asked for a snapshot of home', () => (holding.length === 1 ? true : undefined));
    // And it goes on following while that snapshot is still awaited.
    other.mkdir('/m/b', 'alice');
    const v = await otherCaughtUp();
    assert.equal(v.meta.stat('/m/b').type, 'dir');
    assert.equal(st4.get(VOLUME)!.meta.lastSeq, 0, 'home still waits for its snapshot');
    assert.equal(holding.length, 1, 'one snapshot request at a time');
    // Stopping the node aborts the download, leaving nothing fetched behind.
    stopFollower(st4);
    await until('the snapshot awaited is given up', () => (existsSync(join(t.dir, 'st4', 'volumes', `${VOLUME}.incoming`)) ? undefined : true));
    for (const res of holding.splice(0)) res.destroy();
    setFollowers(['st2', 'st3']);
    setFollowers([], OTHER);
  });

  it('a snapshot that keeps failing is asked for again after growing waits, not every second, until one comes whole', async () => {
    setFollowers(['st2', 'st3', 'st5']);
    mode = 'cut';
    let clock = 1_800_000_000_000;
    const first = asked;
    const st5 = startFollower('st5', () => clock);
    /** Until the `n`th snapshot has failed and st5 says it waits `seconds` before the next. */
    const failed = (n: number, seconds: number) => until(`the snapshot failed ${n} times`, () => {
      const why = st5.get(VOLUME)?.syncError ?? '';
      return asked === first + n && why.endsWith(`; asking for another in ${seconds} s`) ? why : undefined;
    }, 20_000);
    /** Until st5 has pulled the log `n` times more: each pull could have asked for a snapshot. */
    const pulls = async (n: number) => {
      const from = logAsks.get('st5') ?? 0;
      await until(`st5 pulled ${n} more times`, () => ((logAsks.get('st5') ?? 0) >= from + n ? true : undefined));
    };
    await until('the first snapshot failed', () => (asked === first + 1 && st5.get(VOLUME)?.syncError ? true : undefined), 20_000);
    await pulls(3);
    assert.equal(asked, first + 1, 'not asked again before its wait is over');
    assert.match(await failed(1, 5), /^catching up from a snapshot of the primary st1 failed; the copy here is kept as it was: /);
    clock += SNAPSHOT_RETRY_MS.first;
    await failed(2, 10);
    clock += SNAPSHOT_RETRY_MS.first;
    await pulls(3);
    assert.equal(asked, first + 2, 'the second wait is twice the first');
    clock += SNAPSHOT_RETRY_MS.first;
    await failed(3, 20);
    mode = 'whole';
    clock += 4 * SNAPSHOT_RETRY_MS.first;
    await caughtUp(st5);
    assert.equal(asked, first + 4);
    stopFollower(st5);
    setFollowers(['st2', 'st3']);
  });
});
