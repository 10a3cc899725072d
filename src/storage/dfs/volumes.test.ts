// Volumes on a node as their records change: a follower's copy promoted to primary goes on from where it is, and a
// copy that was primary is set aside, not followed, when the node is to follow another primary. And what each copy
// keeps of the log (log-retention.ts) as followers report, fall silent, and nodes restart.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { VolumeRecord } from '../../lib/config/storage-records.ts';
import type { PeerChunks } from './peers.ts';
import { VolumeMeta } from './volume-meta.ts';
import { VolumeSet } from './volumes.ts';

const log = pino({ level: 'silent' });
const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const record = (primary: string, followers: string[]): VolumeRecord => ({
  primary, followers, policy: { copies: 1, failure_domain: 'disk' }, folders: {}, keep_versions: 10, created_at: 1,
});

describe('volumes on a node (volumes.ts)', () => {
  let dir: string;
  let remote: VolumeMeta;
  let set: VolumeSet;
  /** The other node's primary, as this node's pulls reach it. */
  const peers = {
    log: async (_node: string, _volume: string, after: number, limit: number) => ({
      entries: after < remote.logStart ? [] : remote.log(after, limit),
      lastSeq: remote.lastSeq,
      logStart: remote.logStart,
    }),
  } as unknown as PeerChunks;

  /** The primary's metadata lost and made anew, empty: another instance. */
  function remakeRemote(): void {
    remote.close();
    rmSync(join(dir, 'remote.db'));
    remote = VolumeMeta.open(join(dir, 'remote.db'), { volume: 'home', role: 'primary' });
  }

  /** Opens the one copy set aside under `prefix` for `check`. */
  function keptAside(prefix: string, check: (kept: VolumeMeta) => void): void {
    const aside = readdirSync(join(dir, 'data', 'volumes')).filter((n) => n.startsWith(prefix));
    assert.equal(aside.length, 1);
    const kept = VolumeMeta.open(join(dir, 'data', 'volumes', aside[0]!, 'meta.db'), { volume: 'home', role: 'follower' });
    try {
      check(kept);
    } finally {
      kept.close();
    }
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'volumes-'));
    remote = VolumeMeta.open(join(dir, 'remote.db'), { volume: 'home', role: 'primary' });
    remote.mkdir('/remote-dir', 'alice');
    set = new VolumeSet('st2', join(dir, 'data'), peers, log);
  });
  afterEach(() => {
    set.close();
    remote.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a follower promoted to primary keeps what it followed and goes on writing after it', async () => {
    set.sync(new Map([['home', record('st1', ['st2'])]]));
    await set.pullAll();
    const followed = set.get('home')!;
    assert.equal(followed.role, 'follower');
    assert.equal(followed.meta.lastSeq, remote.lastSeq);

    set.sync(new Map([['home', record('st2', [])]]));
    const promoted = set.get('home')!;
    assert.equal(promoted.role, 'primary');
    assert.equal(promoted.meta.stat('/remote-dir').owner, 'alice');
    const before = promoted.meta.lastSeq;
    promoted.meta.writeFile('/after', { content_id: sha('f'), size: 1, chunks: [{ id: sha('c'), size: 1 }] }, { user: 'alice' });
    assert.equal(promoted.meta.lastSeq, before + 1);
    assert.deepEqual(promoted.meta.log(before).map((e) => e.seq), [before + 1]);
    assert.equal(readFileSync(join(dir, 'data', 'volumes', 'home', 'role'), 'utf8').trim(), 'primary');
  });

  it('a copy that was primary here is set aside, and the node follows the new primary from the start', async () => {
    set.sync(new Map([['home', record('st2', [])]]));
    set.get('home')!.meta.mkdir('/never-shipped', 'alice');

    set.sync(new Map([['home', record('st1', ['st2'])]]));
    const follower = set.get('home')!;
    assert.equal(follower.role, 'follower');
    assert.equal(follower.meta.lastSeq, 0, 'an empty copy');
    await set.pullAll();
    assert.equal(follower.meta.lastSeq, remote.lastSeq);
    assert.equal(follower.meta.tryStat('/never-shipped'), null);
    assert.equal(follower.meta.stat('/remote-dir').type, 'dir');

    keptAside('home.retired-', (kept) => assert.equal(kept.stat('/never-shipped').type, 'dir', 'what the old primary held is kept aside'));
  });

  it('a follower whose copy went another way than the primary\'s log sets it aside and follows from the start', async () => {
    set.sync(new Map([['home', record('st1', ['st2'])]]));
    await set.pullAll();
    const seq = remote.lastSeq;
    assert.equal(set.get('home')!.meta.lastSeq, seq);
    // The primary's metadata is made anew and goes another way: a different entry at the seq this copy holds.
    remakeRemote();
    while (remote.lastSeq < seq + 1) remote.mkdir(`/other-${remote.lastSeq}`, 'bob');
    await set.pullAll();
    const fresh = set.get('home')!;
    assert.equal(fresh.role, 'follower');
    assert.equal(fresh.meta.lastSeq, 0, 'an empty copy, in place of the one that went another way');
    await set.pullAll();
    assert.equal(fresh.meta.lastSeq, remote.lastSeq);
    assert.equal(fresh.meta.tryStat('/remote-dir'), null);
    assert.equal(fresh.meta.stat(`/other-${seq}`).owner, 'bob');
    keptAside('home.diverged-', (kept) => assert.equal(kept.stat('/remote-dir').type, 'dir', 'what the old copy held is kept aside'));
  });

  it('a follower ahead of its primary (the primary lost entries it had shipped) sets its copy aside too', async () => {
    remote.mkdir('/second', 'alice');
    set.sync(new Map([['home', record('st1', ['st2'])]]));
    await set.pullAll();
    remakeRemote();
    await set.pullAll();
    await set.pullAll();
    assert.equal(set.get('home')!.meta.lastSeq, remote.lastSeq);
    assert.equal(set.get('home')!.meta.tryStat('/second'), null);
    assert.equal(readdirSync(join(dir, 'data', 'volumes')).filter((n) => n.startsWith('home.diverged-')).length, 1);
  });

  describe('log retention', () => {
    const HOUR = 3_600_000;
    const retention = { windowMs: 24 * HOUR, keepEntries: 5 };
    let now = 1_700_000_000_000;
    const clock = () => now;
    const primaryRecord = () => record('st2', ['st3', 'st4']);
    /** This node as the volume's primary, with the retention above and the test's clock. */
    function asPrimary(): VolumeSet {
      set.close();
      set = new VolumeSet('st2', join(dir, 'data'), peers, log, { retention, now: clock });
      set.sync(new Map([['home', primaryRecord()]]));
      return set;
    }
    const grow = (n: number) => {
      const meta = set.get('home')!.meta;
      for (let i = 0; i < n; i++) meta.mkdir(`/d-${meta.lastSeq}`, 'alice');
      return meta;
    };

    it('the primary keeps what its followers need, not what one silent past the window needs, and holds to it across a restart', async () => {
      asPrimary();
      const meta = grow(40);
      await set.retainAll();
      assert.equal(meta.logStart, 0, 'followers not heard from yet hold the whole log');

      set.heard('home', 'st3', 10);
      set.heard('home', 'st4', 20);
      set.heard('home', 'st9', 0);
      await set.retainAll();
      assert.equal(meta.logStart, 10, 'kept after the furthest-behind follower; a node that is no follower counts for nothing');
      set.heard('home', 'st3', 30);
      await set.retainAll();
      assert.equal(meta.logStart, 20);

      // A restart: st4, away meanwhile, still has what it needs, and its silence is counted from when it was heard.
      now += HOUR;
      const again = asPrimary().get('home')!.meta;
      grow(10);
      await set.retainAll();
      assert.equal(again.logStart, 20);
      assert.deepEqual(again.log(20, 1).map((e) => e.seq), [21], 'st4 reads on from where it stood');

      now += retention.windowMs;
      set.heard('home', 'st3', again.lastSeq - 1);
      await set.retainAll();
      assert.equal(again.logStart, again.lastSeq - retention.keepEntries, 'st4, silent past the window, holds nothing back');
    });

    it('a follower keeps what its primary keeps, and its own recent entries', async () => {
      while (remote.lastSeq < 30) remote.mkdir(`/r-${remote.lastSeq}`, 'bob');
      set.close();
      set = new VolumeSet('st2', join(dir, 'data'), peers, log, { retention, now: clock });
      set.sync(new Map([['home', record('st1', ['st2'])]]));
      await set.pullAll();
      const copy = set.get('home')!.meta;
      assert.equal(copy.lastSeq, 30);
      await set.retainAll();
      assert.equal(copy.logStart, 0, 'the primary keeps all of it');

      remote.truncateLog(12);
      await set.pullAll();
      await set.retainAll();
      assert.equal(copy.logStart, 12);
      remote.truncateLog(29);
      await set.pullAll();
      await set.retainAll();
      assert.equal(copy.logStart, 30 - retention.keepEntries);
      assert.equal(copy.lastSeq, 30);
    });
  });

  it('a follower\'s last sync time survives a restart of the service', async () => {
    set.sync(new Map([['home', record('st1', ['st2'])]]));
    await set.pullAll();
    const synced = set.get('home')!.syncedAt;
    assert.ok(synced !== null);
    set.close();
    set = new VolumeSet('st2', join(dir, 'data'), peers, log);
    set.sync(new Map([['home', record('st1', ['st2'])]]));
    assert.equal(set.get('home')!.syncedAt, synced);
  });

  it('a primary purges what has been in its trash past the retention, freeing its owner\'s quota; retention 0 keeps it', async () => {
    const DAY = 86_400_000;
    let now = Date.now();
    const primaryWith = (trashRetentionMs: number) => {
      set.close();
      set = new VolumeSet('st2', join(dir, 'data'), peers, log, { trashRetentionMs, now: () => now });
      set.sync(new Map([['home', record('st2', [])]]));
      return set.get('home')!.meta;
    };
    let meta = primaryWith(30 * DAY);
    const file = (path: string) => meta.writeFile(path, { content_id: sha(path), size: 10, chunks: [{ id: sha(`chunk ${path}`), size: 10 }] }, { user: 'alice' });
    file('/old');
    file('/young');
    // Deletion times are the metadata's own clock; the set's clock is put just past the first's retention.
    const old = meta.remove('/old', 'alice').deleted_at;
    while (Date.now() < old + 3) await new Promise((r) => setTimeout(r, 1));
    meta.remove('/young', 'alice');
    now = old + 1 + 30 * DAY;
    await set.retainAll();
    assert.deepEqual(meta.trashList().map((t) => t.path), ['/young']);
    assert.equal(meta.usage('alice'), 10, 'the purged file is no longer charged');
    meta = primaryWith(0);
    now += 365 * DAY;
    await set.retainAll();
    assert.deepEqual(meta.trashList().map((t) => t.path), ['/young']);
  });

  it('a node leaving a volume closes its copy and keeps it', () => {
    set.sync(new Map([['home', record('st2', [])]]));
    set.sync(new Map());
    assert.equal(set.get('home'), undefined);
    assert.ok(existsSync(join(dir, 'data', 'volumes', 'home', 'meta.db')));
  });
});
