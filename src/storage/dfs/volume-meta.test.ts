import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  type LogEntry,
  type MetaErrorCode,
  type NewVersion,
  type VolumeMetaOptions,
  MAX_PROP_VALUE_BYTES,
  MAX_PROPS,
  MAX_PROPS_BYTES,
  MetaError,
  RETIRED_HOMES_DIR,
  SYSTEM_OWNER,
  VolumeMeta,
} from './volume-meta.ts';

const sha = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const chunkId = (tag: string): string => sha(`chunk:${tag}`);

/** A file version made of the named chunks (a chunk's size must be the same wherever it is named). */
function content(tag: string, chunks: Array<[string, number]>, mtime?: number): NewVersion {
  return {
    content_id: sha(`file:${tag}`),
    size: chunks.reduce((n, [, s]) => n + s, 0),
    chunks: chunks.map(([c, size]) => ({ id: chunkId(c), size })),
    ...(mtime === undefined ? {} : { mtime }),
  };
}
const blob = (tag: string, size = 100): NewVersion => content(tag, [[tag, size]]);

function fails(fn: () => unknown, code: MetaErrorCode, message?: RegExp): MetaError {
  let caught: MetaError | undefined;
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof MetaError, `expected a MetaError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    caught = err;
    return true;
  });
  return caught!;
}

/** Holds each WAL sync until the test settles it: a disk's timing and failures are beyond this machine's reach, so
 * the sync (an fdatasync on the thread pool) is the one thing these tests replace. */
const heldSyncs = (v: VolumeMeta) => {
  const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  (v as unknown as { syncWal: () => Promise<void> }).syncWal = () => new Promise<void>((resolve, reject) => pending.push({ resolve, reject }));
  return pending;
};
const nextTurn = () => new Promise((r) => setImmediate(r));

const T0 = 1_700_000_000_000;
class Clock {
  t = T0;
  readonly now = (): number => this.t;
  advance(ms = 1000): number {
    this.t += ms;
    return this.t;
  }
}

const TABLES = ['meta', 'counters', 'nodes', 'versions', 'props', 'trash', 'quotas', 'usage', 'chunk_refs', 'log', 'homes'];

/** Every row of every table, read through a connection of its own; but the metadata's instance, which is each
 * database's own (a follower's is not its primary's). */
function tables(file: string): Record<string, unknown[]> {
  const db = new Database(file, { readonly: true });
  try {
    const where = (t: string) => (t === 'meta' ? " WHERE name <> 'instance'" : '');
    return Object.fromEntries(TABLES.map((t) => [t, db.prepare(`SELECT * FROM ${t}${where(t)} ORDER BY 1, 2`).all()]));
  } finally {
    db.close();
  }
}

/** What the public API shows: the whole tree with versions and properties, the trash, usage and quotas. */
function dump(m: VolumeMeta, users: string[] = ['alice', 'bob', SYSTEM_OWNER]) {
  const tree: unknown[] = [];
  const walk = (p: string): void => {
    const e = m.stat(p);
    tree.push({ ...e, props: m.props(p), versions: e.type === 'file' ? m.versions(p) : [] });
    if (e.type === 'dir') for (const c of m.list(p)) walk(c.path);
  };
  walk('/');
  return {
    tree,
    trash: m.trashList(),
    users: users.map((u) => [u, m.usage(u), m.quota(u)]),
    lastSeq: m.lastSeq,
  };
}

/** Derived state recomputed from scratch must equal what the changes maintained. `purging`: a purge is under way, so
 * detached subtrees in no trash entry are expected. */
function checkInvariants(file: string, keepVersions: number, opts: { purging?: boolean } = {}): void {
  const db = new Database(file, { readonly: true });
  try {
    const all = (sql: string): unknown[] => db.prepare(sql).all();
    assert.deepEqual(
      all('SELECT user, bytes FROM usage WHERE bytes <> 0 ORDER BY user'),
      all('SELECT n.owner AS user, SUM(v.size) AS bytes FROM nodes n JOIN versions v ON v.vid = n.cur GROUP BY n.owner HAVING SUM(v.size) <> 0 ORDER BY n.owner'),
      'usage',
    );
    assert.deepEqual(
      all('SELECT id, refs FROM chunk_refs ORDER BY id'),
      all("SELECT j.value ->> 'id' AS id, COUNT(*) AS refs FROM versions, json_each(versions.chunks) j GROUP BY 1 ORDER BY 1"),
      'chunk references',
    );
    assert.deepEqual(all('PRAGMA foreign_key_check'), [], 'dangling references');
    if (!opts.purging) assert.deepEqual(all('SELECT id FROM nodes WHERE parent IS NULL AND id <> 1 AND id NOT IN (SELECT node FROM trash)'), [], 'lost nodes');
    assert.deepEqual(all("SELECT id FROM nodes WHERE (type = 'file') <> (cur IS NOT NULL)"), [], 'files without versions, or directories with');
    assert.deepEqual(all(`SELECT file FROM versions GROUP BY file HAVING COUNT(*) > ${keepVersions}`), [], 'too many versions kept');
    assert.deepEqual(all('SELECT n.id FROM nodes n JOIN versions v ON v.vid = n.cur WHERE v.file <> n.id'), [], 'a current version of another file');
  } finally {
    db.close();
  }
}

/** Brings a follower up to the primary through the log, in pages of `page` new entries after `overlap` already
 * applied ones. */
function sync(primary: VolumeMeta, follower: VolumeMeta, page = 3, overlap = 1): void {
  while (follower.lastSeq < primary.lastSeq) {
    const from = Math.max(0, follower.lastSeq - overlap);
    const r = follower.apply(primary.log(from, follower.lastSeq - from + page));
    assert.ok(r.applied > 0);
  }
}

describe('VolumeMeta', () => {
  let dir: string;
  let clock: Clock;
  let file: string;
  let m: VolumeMeta;
  const opened: VolumeMeta[] = [];
  const open = (f: string, opts: Partial<VolumeMetaOptions> = {}): VolumeMeta => {
    const v = VolumeMeta.open(f, { volume: 'main', role: 'primary', now: clock.now, ...opts });
    opened.push(v);
    return v;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'volume-meta-'));
    clock = new Clock();
    file = join(dir, 'main', 'meta.db');
    m = open(file);
  });
  afterEach(() => {
    for (const v of opened.splice(0)) {
      try {
        v.close();
      } catch {
        // already closed by the test
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  describe('open', () => {
    it('creates the root of a new primary and logs it as entry 1', () => {
      const root = m.stat('/');
      assert.deepEqual(root, { id: 1, path: '/', name: '', type: 'dir', owner: SYSTEM_OWNER, created: T0, mtime: T0, size: 0, content_id: null, version_id: null });
      assert.equal(m.lastSeq, 1);
      assert.deepEqual(m.log(0), [
        {
          seq: 1,
          at: T0,
          volume: 'main',
          op: 'init',
          user: null,
          paths: ['/'],
          changes: [{ t: 'node', id: 1, parent: null, name: '', type: 'dir', owner: SYSTEM_OWNER, created: T0, mtime: T0 }],
        },
      ]);
      assert.deepEqual(m.list('/'), []);
    });

    it('reopens with its data and does not log a second root', () => {
      m.mkdir('/a', 'alice');
      m.close();
      clock.advance();
      const again = open(file);
      assert.equal(again.lastSeq, 2);
      assert.equal(again.stat('/a').owner, 'alice');
      assert.equal(again.stat('/').created, T0);
    });

    it('refuses a file of another volume, a bad volume name and a bad keepVersions', () => {
      m.close();
      fails(() => open(file, { volume: 'other' }), 'CONFLICT', /holds the metadata of volume "main", not "other"/);
      fails(() => open(join(dir, 'x.db'), { volume: 'Bad Name' }), 'INVALID_ARGUMENT', /invalid volume name/);
      fails(() => open(join(dir, 'x.db'), { keepVersions: 0 }), 'INVALID_ARGUMENT', /keepVersions/);
      fails(() => open(join(dir, 'x.db'), { role: 'leader' as 'primary' }), 'INVALID_ARGUMENT', /role/);
    });

    it('a new follower is empty until it applies the log', () => {
      const f = open(join(dir, 'f.db'), { role: 'follower' });
      assert.equal(f.lastSeq, 0);
      fails(() => f.stat('/'), 'NOT_FOUND');
      f.apply(m.log(0));
      assert.deepEqual(f.stat('/'), m.stat('/'));
    });

    it('a primary reopened as a follower keeps its data and refuses writes', () => {
      m.mkdir('/a', 'alice');
      m.close();
      const f = open(file, { role: 'follower' });
      assert.equal(f.stat('/a').type, 'dir');
      fails(() => f.mkdir('/b', 'alice'), 'READ_ONLY');
    });
  });

  describe('directories, stat and list', () => {
    it('mkdir records owner and times and updates the parent mtime', () => {
      clock.advance();
      const e = m.mkdir('/docs', 'alice');
      assert.deepEqual(e, { id: 2, path: '/docs', name: 'docs', type: 'dir', owner: 'alice', created: T0 + 1000, mtime: T0 + 1000, size: 0, content_id: null, version_id: null });
      assert.equal(m.stat('/').mtime, T0 + 1000);
      assert.deepEqual(m.stat('/docs/'), e);
    });

    it('mkdir errors: exists, missing parent, parent is a file, invalid path', () => {
      m.mkdir('/a', 'alice');
      m.writeFile('/f', blob('f'), { user: 'alice' });
      const seq = m.lastSeq;
      fails(() => m.mkdir('/a', 'alice'), 'EXISTS', /\/a already exists/);
      fails(() => m.mkdir('/f', 'alice'), 'EXISTS');
      fails(() => m.mkdir('/', 'alice'), 'EXISTS');
      fails(() => m.mkdir('/x/y', 'alice'), 'NOT_FOUND_PARENT', /the directory \/x does not exist/);
      fails(() => m.mkdir('/f/y', 'alice'), 'NOT_A_DIRECTORY', /\/f is a file/);
      const e = fails(() => m.mkdir('/a/../etc', 'alice'), 'INVALID_PATH', /"\.\." is not allowed/);
      assert.equal(e.detail.reason, 'dot_segment');
      assert.equal(fails(() => m.mkdir(`/${'n'.repeat(256)}`, 'alice'), 'INVALID_PATH').detail.reason, 'name_too_long');
      assert.equal(fails(() => m.mkdir('/a\0b', 'alice'), 'INVALID_PATH').detail.reason, 'control_character');
      assert.equal(fails(() => m.mkdir('/bad\ud800', 'alice'), 'INVALID_PATH').detail.reason, 'invalid_utf8');
      assert.equal(fails(() => m.mkdir('relative', 'alice'), 'INVALID_PATH').detail.reason, 'not_absolute');
      fails(() => m.mkdir('/u', ''), 'INVALID_ARGUMENT', /invalid user/);
      assert.equal(m.lastSeq, seq);
    });

    it('list returns sorted entries with what PROPFIND needs', () => {
      m.mkdir('/d', 'alice');
      for (const n of ['b', 'B', 'a', 'é', 'Z']) m.writeFile(`/d/${n}`, blob(n, n.length * 10), { user: 'alice' });
      m.mkdir('/d/sub', 'bob');
      const l = m.list('/d');
      assert.deepEqual(l.map((e) => e.name), ['B', 'Z', 'a', 'b', 'sub', 'é']);
      const a = l.find((e) => e.name === 'a')!;
      assert.deepEqual(a, m.stat('/d/a'));
      assert.equal(a.size, 10);
      assert.equal(a.content_id, sha('file:a'));
      assert.equal(a.type, 'file');
      assert.equal(typeof a.version_id, 'string');
      const sub = l.find((e) => e.name === 'sub')!;
      assert.deepEqual([sub.type, sub.owner, sub.size, sub.content_id, sub.path], ['dir', 'bob', 0, null, '/d/sub']);
      fails(() => m.list('/d/a'), 'NOT_A_DIRECTORY');
      fails(() => m.list('/nope'), 'NOT_FOUND');
    });

    it('names are case-sensitive and NFC: an NFD name finds the NFC entry', () => {
      m.mkdir('/Case', 'alice');
      m.mkdir('/case', 'alice');
      m.mkdir('/caf\u00e9', 'alice');
      fails(() => m.mkdir('/cafe\u0301', 'alice'), 'EXISTS');
      assert.equal(m.stat('/cafe\u0301').path, '/caf\u00e9');
      assert.equal(m.list('/').length, 3);
    });

    it('stat and tryStat', () => {
      fails(() => m.stat('/missing'), 'NOT_FOUND', /\/missing does not exist/);
      assert.equal(m.tryStat('/missing'), null);
      m.writeFile('/f', blob('f'), { user: 'alice' });
      fails(() => m.stat('/f/x'), 'NOT_FOUND');
      assert.equal(m.tryStat('/f')!.type, 'file');
      fails(() => m.tryStat('/a//b'), 'INVALID_PATH');
    });
  });

  describe('files and versions', () => {
    it('writeFile creates a file with one version and replaces its content with a new one', () => {
      m.mkdir('/d', 'alice');
      clock.advance();
      const r1 = m.writeFile('/d/f', blob('one', 5), { user: 'alice' });
      assert.deepEqual(r1.version, { version_id: '1', content_id: sha('file:one'), size: 5, chunks: [{ id: chunkId('one'), size: 5 }], mtime: T0 + 1000, author: 'alice' });
      assert.deepEqual(r1.entry, { id: 3, path: '/d/f', name: 'f', type: 'file', owner: 'alice', created: T0 + 1000, mtime: T0 + 1000, size: 5, content_id: sha('file:one'), version_id: '1' });
      assert.deepEqual([r1.dropped, r1.released], [[], []]);
      assert.equal(m.stat('/d').mtime, T0 + 1000);
      clock.advance();
      const r2 = m.writeFile('/d/f', blob('two', 7), { user: 'bob' });
      assert.equal(r2.entry.id, r1.entry.id);
      assert.equal(r2.entry.owner, 'alice', 'the owner stays');
      assert.equal(r2.version.author, 'bob');
      assert.deepEqual([r2.entry.size, r2.entry.content_id, r2.entry.mtime, r2.entry.created], [7, sha('file:two'), T0 + 2000, T0 + 1000]);
      assert.equal(m.stat('/d').mtime, T0 + 1000, 'rewriting a file does not touch its directory');
      assert.deepEqual(m.versions('/d/f').map((v) => v.content_id), [sha('file:two'), sha('file:one')]);
    });

    it('takes the client mtime when given', () => {
      const r = m.writeFile('/f', content('x', [['x', 3]], 1234), { user: 'alice' });
      assert.equal(r.entry.mtime, 1234);
      assert.equal(r.version.mtime, 1234);
    });

    it('an empty file has no chunks', () => {
      const r = m.writeFile('/empty', { content_id: sha(''), size: 0, chunks: [] }, { user: 'alice' });
      assert.deepEqual([r.entry.size, r.version.chunks], [0, []]);
    });

    it('writeFile errors leave nothing behind', () => {
      m.mkdir('/d', 'alice');
      const seq = m.lastSeq;
      fails(() => m.writeFile('/d', blob('x'), { user: 'alice' }), 'IS_A_DIRECTORY');
      fails(() => m.writeFile('/', blob('x'), { user: 'alice' }), 'IS_A_DIRECTORY');
      fails(() => m.writeFile('/nope/f', blob('x'), { user: 'alice' }), 'NOT_FOUND_PARENT');
      m.writeFile('/file', blob('x'), { user: 'alice' });
      fails(() => m.writeFile('/file/f', blob('x'), { user: 'alice' }), 'NOT_A_DIRECTORY');
      const bad: unknown[] = [
        { ...blob('x'), content_id: 'md5:abc' },
        { ...blob('x'), size: 99 },
        { ...blob('x'), size: -1, chunks: [] },
        { ...blob('x'), chunks: [{ id: 'nope', size: 100 }] },
        { ...blob('x'), chunks: [{ id: chunkId('x'), size: 0 }], size: 0 },
        { ...blob('x'), version_id: '7' },
        { ...blob('x'), mtime: 1.5 },
      ];
      for (const b of bad) fails(() => m.writeFile('/d/f', b as NewVersion, { user: 'alice' }), 'INVALID_ARGUMENT', /invalid file version/);
      fails(() => m.writeFile('/d/f', content('y', [['x', 5]]), { user: 'alice' }), 'INVALID_ARGUMENT', /is 100 bytes elsewhere, not 5/);
      fails(() => m.writeFile('/d/f', content('y', [['y', 5], ['y', 6]]), { user: 'alice' }), 'INVALID_ARGUMENT', /is 5 bytes elsewhere, not 6/);
      assert.equal(m.tryStat('/d/f'), null);
      assert.equal(m.lastSeq, seq + 1);
    });

    it('expectVersion guards against lost updates', () => {
      const r1 = m.writeFile('/f', blob('a'), { user: 'alice', expectVersion: null });
      fails(() => m.writeFile('/f', blob('b'), { user: 'alice', expectVersion: null }), 'PRECONDITION_FAILED', /already exists/);
      const r2 = m.writeFile('/f', blob('b'), { user: 'alice', expectVersion: r1.version.version_id });
      fails(() => m.writeFile('/f', blob('c'), { user: 'bob', expectVersion: r1.version.version_id }), 'PRECONDITION_FAILED', /is at version 2, not 1/);
      fails(() => m.writeFile('/g', blob('c'), { user: 'bob', expectVersion: '1' }), 'PRECONDITION_FAILED', /does not exist/);
      assert.equal(m.stat('/f').version_id, r2.version.version_id);
      assert.equal(m.tryStat('/g'), null);
    });

    it('keeps at most keepVersions and returns the dropped versions and the chunks nothing refers to any more', () => {
      const v = open(join(dir, 'k.db'), { keepVersions: 3 });
      // Every version shares chunk s and has a chunk of its own.
      const results = [1, 2, 3, 4, 5].map((i) => v.writeFile('/f', content(`v${i}`, [['s', 50], [`u${i}`, 10]]), { user: 'alice' }));
      assert.deepEqual(results.slice(0, 3).map((r) => [r.dropped, r.released]), [[[], []], [[], []], [[], []]]);
      assert.deepEqual(results[3].dropped, [results[0].version]);
      assert.deepEqual(results[3].released, [{ id: chunkId('u1'), size: 10 }]);
      assert.deepEqual(results[4].dropped, [results[1].version]);
      assert.deepEqual(results[4].released, [{ id: chunkId('u2'), size: 10 }]);
      assert.deepEqual(v.versions('/f'), [results[4].version, results[3].version, results[2].version]);
      assert.equal(v.usage('alice'), 60, 'only the current version counts');
      checkInvariants(join(dir, 'k.db'), 3);
    });

    it('a chunk listed twice in one version is released only when no list names it', () => {
      const v = open(join(dir, 'k.db'), { keepVersions: 1 });
      v.writeFile('/f', content('zeros', [['z', 10], ['z', 10], ['q', 1]]), { user: 'alice' });
      const r = v.writeFile('/f', content('other', [['z', 10]]), { user: 'alice' });
      assert.deepEqual(r.released, [{ id: chunkId('q'), size: 1 }]);
      assert.deepEqual(v.writeFile('/f', blob('new', 3), { user: 'alice' }).released, [{ id: chunkId('z'), size: 10 }]);
      checkInvariants(join(dir, 'k.db'), 1);
    });

    it('restoreVersion adds the old content as the newest version', () => {
      const v = open(join(dir, 'k.db'), { keepVersions: 3 });
      const r = [1, 2, 3].map((i) => v.writeFile('/f', blob(`v${i}`, i), { user: 'alice' }));
      clock.advance();
      const back = v.restoreVersion('/f', r[0].version.version_id, { user: 'bob' });
      assert.deepEqual(
        { ...back.version, version_id: '' },
        { version_id: '', content_id: sha('file:v1'), size: 1, chunks: [{ id: chunkId('v1'), size: 1 }], mtime: T0 + 1000, author: 'bob' },
      );
      // The restored version was the oldest and is dropped, but its chunk lives on in the new version.
      assert.deepEqual(back.dropped, [r[0].version]);
      assert.deepEqual(back.released, []);
      assert.deepEqual(v.versions('/f').map((x) => x.content_id), [sha('file:v1'), sha('file:v3'), sha('file:v2')]);
      assert.equal(v.stat('/f').size, 1);
      assert.equal(v.usage('alice'), 1);
      fails(() => v.restoreVersion('/f', r[0].version.version_id, { user: 'bob' }), 'NOT_FOUND', /has no version "1"/);
      fails(() => v.restoreVersion('/f', 'x', { user: 'bob' }), 'NOT_FOUND');
      v.writeFile('/g', blob('g'), { user: 'alice' });
      fails(() => v.restoreVersion('/g', r[2].version.version_id, { user: 'bob' }), 'NOT_FOUND', /\/g has no version/);
    });

    it('getVersion returns the current or a kept version; versions of a directory is refused', () => {
      const r1 = m.writeFile('/f', blob('a'), { user: 'alice' });
      const r2 = m.writeFile('/f', blob('b'), { user: 'alice' });
      assert.deepEqual(m.getVersion('/f'), r2.version);
      assert.deepEqual(m.getVersion('/f', r1.version.version_id), r1.version);
      fails(() => m.getVersion('/f', '999'), 'NOT_FOUND');
      m.mkdir('/d', 'alice');
      fails(() => m.versions('/d'), 'IS_A_DIRECTORY');
      fails(() => m.getVersion('/d'), 'IS_A_DIRECTORY');
      fails(() => m.versions('/none'), 'NOT_FOUND');
    });

    it('grouped writes share one transaction: one that fails leaves the others, and all are answered once committed', async () => {
      m.mkdir('/d', 'alice');
      const seq = m.lastSeq;
      const a = m.grouped(() => m.writeFile('/d/a', blob('a'), { user: 'alice' }));
      const bad = m.grouped(() => m.writeFile('/d/none/b', blob('b'), { user: 'alice' }));
      const c = m.grouped(() => m.writeFile('/d/c', blob('c'), { user: 'alice' }));
      assert.equal(m.tryStat('/d/a'), null, 'nothing is written before the group runs');
      const [ra, rb, rc] = await Promise.allSettled([a, bad, c]);
      assert.equal(ra.status === 'fulfilled' && ra.value.entry.path, '/d/a');
      assert.ok(rb.status === 'rejected' && rb.reason instanceof MetaError && rb.reason.code === 'NOT_FOUND_PARENT');
      assert.equal(rc.status === 'fulfilled' && rc.value.entry.path, '/d/c');
      assert.equal(m.lastSeq, seq + 2);
      const committed = tables(file);
      assert.deepEqual(committed.log!.slice(-2).map((r) => (JSON.parse((r as { entry: string }).entry) as LogEntry).paths), [['/d/a'], ['/d/c']]);
      assert.equal(committed.versions!.length, 2);
    });

    it('paths resolve right after moves, removals, restores and rolled-back creations (remembered directories)', async () => {
      m.mkdir('/a', 'alice');
      m.mkdir('/a/b', 'alice');
      m.writeFile('/a/b/f', blob('1'), { user: 'alice' });
      assert.equal(m.stat('/a/b/f').path, '/a/b/f');
      m.rename('/a/b', '/a/c', { user: 'alice', overwrite: false });
      assert.equal(m.tryStat('/a/b/f'), null);
      assert.equal(m.stat('/a/c/f').path, '/a/c/f');
      m.mkdir('/a/b', 'alice');
      assert.equal(m.tryStat('/a/b/f'), null, 'a new directory at an old path is not the old one');
      const { trash_id } = m.remove('/a/c', 'alice');
      assert.equal(m.tryStat('/a/c/f'), null);
      m.restore(trash_id, { user: 'alice' });
      assert.equal(m.stat('/a/c/f').path, '/a/c/f');
      // A directory made in a group op that then fails is rolled back with its savepoint (its log entry too), and its
      // id is handed out again.
      const seq = m.lastSeq;
      const failing = m.grouped(() => {
        m.mkdir('/a/x', 'alice');
        assert.equal(m.tryStat('/a/x/none'), null);
        throw new Error('rolled back');
      });
      const other = m.grouped(() => m.writeFile('/a/h', blob('3'), { user: 'alice' }));
      await assert.rejects(failing, /rolled back/);
      await other;
      assert.equal(m.lastSeq, seq + 1, 'only the write that stayed is logged');
      assert.equal(m.tryStat('/a/x'), null);
      m.mkdir('/a/y', 'alice');
      m.writeFile('/a/y/g', blob('2'), { user: 'alice' });
      assert.equal(m.tryStat('/a/x/g'), null);
      assert.equal(m.stat('/a/y/g').path, '/a/y/g');
      assert.deepEqual(m.log(seq).map((e) => e.seq), [seq + 1, seq + 2, seq + 3], 'the log has no gap and no repeat');
    });

    it('a group is answered, and shipped to followers, only once its WAL sync is done', async () => {
      m.mkdir('/d', 'alice');
      const seq = m.lastSeq;
      let answered = false;
      const a = m.grouped(() => m.writeFile('/d/a', blob('a'), { user: 'alice' })).then((r) => ((answered = true), r));
      // Right after the group ran: committed (readable here), its fdatasync still on the thread pool.
      await new Promise((r) => setImmediate(r));
      assert.equal(m.tryStat('/d/a')?.path, '/d/a');
      assert.equal(answered, false);
      assert.deepEqual(m.log(seq).map((e) => e.seq), [], 'not shipped before it is durable');
      await a;
      assert.deepEqual(m.log(seq).map((e) => e.seq), [seq + 1]);
      // A plain mutation is durable when it returns, and ships at once.
      m.mkdir('/e', 'alice');
      assert.deepEqual(m.log(seq).map((e) => e.seq), [seq + 1, seq + 2]);
    });

    it('a group that logged nothing does not clear the mark of the next group, which starts at the same seq', async () => {
      m.mkdir('/d', 'alice');
      const seq = m.lastSeq;
      const syncs = heldSyncs(m);
      const refused = m.grouped(() => m.writeFile('/none/a', blob('a'), { user: 'alice' }));
      await nextTurn();
      const written = m.grouped(() => m.writeFile('/d/b', blob('b'), { user: 'alice' }));
      await nextTurn();
      assert.equal(syncs.length, 2);
      syncs[0]!.resolve();
      await assert.rejects(refused, (e: MetaError) => e.code === 'NOT_FOUND_PARENT');
      assert.deepEqual(m.log(seq).map((e) => e.seq), [], "the second group's entry waits for its own sync");
      syncs[1]!.resolve();
      await written;
      assert.deepEqual(m.log(seq).map((e) => e.seq), [seq + 1]);
    });

    it('after a failed WAL sync, takes no writes and ships nothing from that group on', async () => {
      m.mkdir('/d', 'alice');
      const seq = m.lastSeq;
      const syncs = heldSyncs(m);
      const lost = m.grouped(() => m.writeFile('/d/a', blob('a'), { user: 'alice' }));
      await nextTurn();
      syncs[0]!.reject(new Error('EIO: i/o error, fdatasync'));
      await assert.rejects(lost, (e: MetaError) => e.code === 'READ_ONLY' && /could not be made durable \(EIO.*until dfs is restarted/.test(e.message));
      assert.throws(() => m.mkdir('/e', 'alice'), (e: MetaError) => e.code === 'READ_ONLY');
      await assert.rejects(m.grouped(() => m.mkdir('/f', 'alice')), (e: MetaError) => e.code === 'READ_ONLY');
      assert.deepEqual(m.log(seq), [], 'the entry whose sync failed is never shipped');
      assert.equal(m.tryStat('/e'), null);
    });

    it('closed with a change queued, rejects it instead of running it on a closed database', async () => {
      m.mkdir('/d', 'alice');
      const queued = m.grouped(() => m.writeFile('/d/a', blob('a'), { user: 'alice' }));
      m.close();
      await assert.rejects(queued, (e: MetaError) => e.code === 'READ_ONLY' && /closed here before this change/.test(e.message));
      await nextTurn();
    });
  });

  describe('rename', () => {
    it('moves a file, keeping its id, owner, versions, mtime and properties', () => {
      m.mkdir('/a', 'alice');
      m.mkdir('/b', 'alice');
      const w1 = m.writeFile('/a/f', blob('1'), { user: 'alice' });
      m.writeFile('/a/f', blob('2'), { user: 'alice' });
      m.patchProps('/a/f', { '{DAV:}x': 'y' }, []);
      const before = m.stat('/a/f');
      const versions = m.versions('/a/f');
      clock.advance();
      const r = m.rename('/a/f', '/b/g', { user: 'bob' });
      assert.equal(r.replaced, null);
      assert.deepEqual(r.entry, { ...before, path: '/b/g', name: 'g' });
      assert.deepEqual(m.versions('/b/g'), versions);
      assert.deepEqual(m.props('/b/g'), { '{DAV:}x': 'y' });
      assert.equal(m.tryStat('/a/f'), null);
      assert.deepEqual([m.stat('/a').mtime, m.stat('/b').mtime], [T0 + 1000, T0 + 1000]);
      assert.equal(w1.entry.id, r.entry.id);
    });

    it('moves a whole subtree', () => {
      m.mkdir('/a', 'alice');
      m.mkdir('/a/b', 'alice');
      m.writeFile('/a/b/f', blob('f'), { user: 'alice' });
      m.patchProps('/a/b', { p: 'v' }, []);
      const ids = ['/a', '/a/b', '/a/b/f'].map((p) => m.stat(p).id);
      m.rename('/a', '/z', { user: 'alice' });
      assert.deepEqual(['/z', '/z/b', '/z/b/f'].map((p) => m.stat(p).id), ids);
      assert.deepEqual(m.props('/z/b'), { p: 'v' });
      assert.equal(m.tryStat('/a'), null);
      m.rename('/z/b/f', '/z/B', { user: 'alice' });
      assert.deepEqual(m.list('/z').map((e) => e.name), ['B', 'b']);
    });

    it('refuses an existing destination unless overwriting, which sends it to the trash', () => {
      m.writeFile('/a', blob('a'), { user: 'alice' });
      m.mkdir('/b', 'bob');
      m.writeFile('/b/inner', blob('inner'), { user: 'bob' });
      fails(() => m.rename('/a', '/b', { user: 'alice' }), 'EXISTS', /\/b already exists/);
      clock.advance();
      const r = m.rename('/a', '/b', { user: 'alice', overwrite: true });
      assert.deepEqual(r.replaced, { trash_id: '1', path: '/b', type: 'dir', owner: 'bob', size: 100, deleted_at: T0 + 1000, deleted_by: 'alice' });
      assert.equal(m.stat('/b').content_id, sha('file:a'));
      assert.deepEqual(m.trashList(), [r.replaced]);
      assert.equal(m.usage('bob'), 100, 'the replaced subtree still counts until purged');
      m.rename('/b', '/c', { user: 'alice' });
      assert.equal(m.restore('1', { user: 'bob' }).path, '/b');
      assert.equal(m.stat('/b/inner').owner, 'bob');
    });

    it('a file moved over a file becomes its newest version, the replaced content kept, not trashed (a safe save)', () => {
      m.setQuota('alice', 250);
      m.writeFile('/doc', blob('v1'), { user: 'alice' });
      const before = m.stat('/doc');
      for (const i of [2, 3, 4]) {
        clock.advance();
        m.writeFile('/doc.tmp', blob(`v${i}`), { user: 'alice' });
        const r = m.rename('/doc.tmp', '/doc', { user: 'alice', overwrite: true });
        assert.deepEqual([r.overwritten, r.replaced, r.entry.mtime], [true, null, clock.t]);
      }
      assert.deepEqual(m.versions('/doc').map((v) => v.content_id), ['v4', 'v3', 'v2', 'v1'].map((v) => sha(`file:${v}`)));
      const after = m.stat('/doc');
      assert.deepEqual([after.id, after.created, after.owner], [before.id, before.created, 'alice']);
      assert.equal(m.tryStat('/doc.tmp'), null);
      assert.deepEqual(m.trashList(), []);
      assert.equal(m.usage('alice'), 100, 'only the current version is charged, as after a write');
    });

    it('a file moved over a file brings its kept versions and properties, prunes to keepVersions, charges the owner', () => {
      const kFile = join(dir, 'keep3.db');
      const k = open(kFile, { keepVersions: 3 });
      k.writeFile('/shared', content('d1', [['d1', 10]]), { user: 'alice' });
      k.writeFile('/shared', content('d2', [['d2', 20]]), { user: 'alice' });
      k.patchProps('/shared', { old: 'x', same: 's' }, []);
      k.writeFile('/mine', content('s1', [['s1', 30]]), { user: 'bob' });
      clock.advance();
      k.writeFile('/mine', content('s2', [['s2', 40], ['d2', 20]]), { user: 'bob' });
      k.patchProps('/mine', { same: 's', new: 'y' }, []);
      const r = k.rename('/mine', '/shared', { user: 'bob', overwrite: true });
      assert.deepEqual([r.entry.owner, r.entry.size, r.entry.mtime], ['alice', 60, clock.t]);
      assert.deepEqual(
        k.versions('/shared').map((v) => [v.content_id, v.author]),
        [[sha('file:s2'), 'bob'], [sha('file:s1'), 'bob'], [sha('file:d2'), 'alice']],
        'the source\'s history on top of the destination\'s, the oldest dropped',
      );
      assert.deepEqual(k.props('/shared'), { same: 's', new: 'y' });
      assert.deepEqual([k.usage('alice'), k.usage('bob')], [60, 0]);
      assert.deepEqual(k.chunkIds().map((c) => c.id), [chunkId('d2'), chunkId('s1'), chunkId('s2')].sort(), 'the dropped version\'s chunk is released');
      const f = open(join(dir, 'keep3-f.db'), { role: 'follower', keepVersions: 3 });
      sync(k, f);
      assert.deepEqual(dump(f), dump(k));
      checkInvariants(kFile, 3);
    });

    it('refuses moving into itself, onto itself, over an ancestor, the root, and missing paths', () => {
      m.mkdir('/a', 'alice');
      m.mkdir('/a/b', 'alice');
      const seq = m.lastSeq;
      fails(() => m.rename('/a', '/a/b/c', { user: 'alice' }), 'CONFLICT', /into itself/);
      fails(() => m.rename('/a', '/a/x', { user: 'alice' }), 'CONFLICT', /into itself/);
      fails(() => m.rename('/a', '/a/', { user: 'alice' }), 'CONFLICT', /onto itself/);
      fails(() => m.rename('/a/b', '/a', { user: 'alice', overwrite: true }), 'CONFLICT', /contains the source/);
      fails(() => m.rename('/a/b', '/a', { user: 'alice' }), 'EXISTS');
      fails(() => m.rename('/', '/x', { user: 'alice' }), 'CONFLICT', /root/);
      fails(() => m.rename('/a/b', '/', { user: 'alice' }), 'EXISTS', /root/);
      fails(() => m.rename('/a/b', '/', { user: 'alice', overwrite: true }), 'CONFLICT', /root/);
      fails(() => m.rename('/nope', '/x', { user: 'alice' }), 'NOT_FOUND');
      fails(() => m.rename('/a/b', '/nope/x', { user: 'alice' }), 'NOT_FOUND_PARENT');
      fails(() => m.rename('/a/b', '/a/../x', { user: 'alice' }), 'INVALID_PATH');
      assert.equal(m.lastSeq, seq);
      assert.deepEqual(m.trashList(), []);
    });
  });

  describe('copy', () => {
    it('copies by reference: same content ids and chunks, new entries owned by the copier', () => {
      m.mkdir('/a', 'alice');
      const w = m.writeFile('/a/f', content('f', [['k1', 10], ['k2', 20]]), { user: 'alice' });
      m.writeFile('/a/f', content('f2', [['k1', 10], ['k3', 5]]), { user: 'alice' });
      m.patchProps('/a/f', { color: 'red' }, []);
      m.patchProps('/a', { kind: 'album' }, []);
      clock.advance();
      const r = m.copy('/a', '/b', { user: 'bob' });
      assert.equal(r.replaced, null);
      assert.deepEqual([r.entry.path, r.entry.type, r.entry.owner, r.entry.created], ['/b', 'dir', 'bob', T0 + 1000]);
      const src = m.stat('/a/f');
      const dst = m.stat('/b/f');
      assert.equal(dst.content_id, src.content_id);
      assert.notEqual(dst.version_id, src.version_id);
      assert.notEqual(dst.id, src.id);
      assert.deepEqual([dst.owner, dst.size, dst.mtime], ['bob', 15, src.mtime]);
      assert.deepEqual(m.getVersion('/b/f').chunks, m.getVersion('/a/f').chunks);
      assert.equal(m.versions('/b/f').length, 1, 'only the current version is copied');
      assert.equal(m.getVersion('/b/f').author, 'bob');
      assert.deepEqual(m.props('/b/f'), { color: 'red' });
      assert.deepEqual(m.props('/b'), { kind: 'album' });
      assert.deepEqual([m.usage('alice'), m.usage('bob')], [15, 15]);
      assert.equal(w.version.content_id, sha('file:f'));
    });

    it('shared chunks are released only when the last copy is purged', () => {
      m.writeFile('/f', content('f', [['k1', 10], ['k2', 20]]), { user: 'alice' });
      m.copy('/f', '/g', { user: 'bob' });
      const t1 = m.remove('/f', 'alice').trash_id;
      assert.deepEqual(m.purge(t1), { purged: [t1], released: [] });
      const t2 = m.remove('/g', 'bob').trash_id;
      assert.deepEqual(m.purge(t2).released, [{ id: chunkId('k1'), size: 10 }, { id: chunkId('k2'), size: 20 }].sort((a, b) => (a.id < b.id ? -1 : 1)));
      assert.deepEqual([m.usage('alice'), m.usage('bob')], [0, 0]);
    });

    it('depth 0 copies a directory without its contents', () => {
      m.mkdir('/a', 'alice');
      m.writeFile('/a/f', blob('f'), { user: 'alice' });
      m.patchProps('/a', { p: '1' }, []);
      m.copy('/a', '/b', { user: 'alice', depth: 0 });
      assert.deepEqual(m.list('/b'), []);
      assert.deepEqual(m.props('/b'), { p: '1' });
      m.copy('/a/f', '/g', { user: 'alice', depth: 0 });
      assert.equal(m.stat('/g').content_id, sha('file:f'));
      fails(() => m.copy('/a', '/c', { user: 'alice', depth: 1 as 0 }), 'INVALID_ARGUMENT');
    });

    it('copies deep trees and overwrites into the trash', () => {
      m.mkdir('/a', 'alice');
      m.mkdir('/a/b', 'alice');
      m.mkdir('/a/b/c', 'alice');
      m.writeFile('/a/b/c/f', blob('f'), { user: 'alice' });
      m.writeFile('/a/top', blob('top'), { user: 'alice' });
      m.writeFile('/x', blob('x'), { user: 'bob' });
      fails(() => m.copy('/a', '/x', { user: 'alice' }), 'EXISTS');
      const r = m.copy('/a', '/x', { user: 'alice', overwrite: true });
      assert.deepEqual([r.replaced?.path, r.replaced?.owner], ['/x', 'bob']);
      assert.deepEqual(m.list('/x').map((e) => e.name), ['b', 'top']);
      assert.equal(m.stat('/x/b/c/f').content_id, sha('file:f'));
      assert.equal(m.stat('/a/b/c/f').content_id, sha('file:f'));
    });

    it('refuses copying into itself, onto itself, over an ancestor of the source and missing paths', () => {
      m.mkdir('/a', 'alice');
      m.mkdir('/a/b', 'alice');
      const seq = m.lastSeq;
      fails(() => m.copy('/a', '/a/b/c', { user: 'alice' }), 'CONFLICT', /into itself/);
      fails(() => m.copy('/a', '/a', { user: 'alice' }), 'CONFLICT', /onto itself/);
      fails(() => m.copy('/a/b', '/a', { user: 'alice', overwrite: true }), 'CONFLICT', /contains the source/);
      fails(() => m.copy('/', '/x', { user: 'alice' }), 'CONFLICT', /into itself/);
      fails(() => m.copy('/nope', '/x', { user: 'alice' }), 'NOT_FOUND');
      fails(() => m.copy('/a', '/nope/x', { user: 'alice' }), 'NOT_FOUND_PARENT');
      assert.equal(m.lastSeq, seq);
    });
  });

  describe('paths past the limit', () => {
    it('a move, copy or restore that would put an entry past 4096 bytes is refused, changing nothing', () => {
      // /p holds a file whose path is 4090 bytes: under a name 6 bytes longer than /p it is at the limit.
      m.mkdir('/p', 'alice');
      let deep = '/p';
      for (let i = 0; i < 16; i++) m.mkdir((deep += `/${'d'.repeat(250)}`), 'alice');
      const file = `${deep}/${'f'.repeat(4090 - Buffer.byteLength(deep) - 1)}`;
      m.writeFile(file, blob('f'), { user: 'alice' });
      assert.equal(Buffer.byteLength(file), 4090);
      m.mkdir('/p2345678', 'bob');
      const seq = m.lastSeq;
      const tooLong = (fn: () => unknown, bytes = 4097) => {
        const e = fails(fn, 'INVALID_PATH', new RegExp(`would take a path of ${bytes} bytes in UTF-8; the limit is 4096`));
        assert.equal(e.detail.reason, 'path_too_long');
      };
      tooLong(() => m.rename('/p', '/p2345678', { user: 'alice', overwrite: true }));
      tooLong(() => m.rename('/p', '/p2345678/p', { user: 'alice' }), 4099);
      tooLong(() => m.copy('/p', '/p2345678', { user: 'alice', overwrite: true }));
      assert.equal(m.lastSeq, seq);
      assert.equal(m.stat('/p2345678').owner, 'bob');
      assert.deepEqual(m.trashList(), []);
      // The folder alone is short enough.
      assert.equal(m.copy('/p', '/p23456789', { user: 'alice', depth: 0 }).entry.path, '/p23456789');
      // At the limit, and back under it.
      assert.equal(m.rename('/p', '/p234567', { user: 'alice' }).entry.path, '/p234567');
      assert.equal(m.stat(file.replace('/p/', '/p234567/')).size, 100);
      const t = m.remove('/p234567', 'alice');
      tooLong(() => m.restore(t.trash_id, { user: 'alice', to: '/p2345670' }));
      m.restore(t.trash_id, { user: 'alice', to: '/p' });
      assert.equal(m.stat(file).size, 100);
    });
  });

  describe('trash', () => {
    it('remove moves a subtree to the trash, with props and versions, and restore brings it back', () => {
      m.mkdir('/d', 'alice');
      m.writeFile('/d/f', blob('1', 10), { user: 'alice' });
      m.writeFile('/d/f', blob('2', 20), { user: 'alice' });
      m.patchProps('/d/f', { p: 'v' }, []);
      const before = { d: m.stat('/d'), f: m.stat('/d/f'), versions: m.versions('/d/f') };
      clock.advance();
      const t = m.remove('/d', 'bob');
      assert.deepEqual(t, { trash_id: '1', path: '/d', type: 'dir', owner: 'alice', size: 20, deleted_at: T0 + 1000, deleted_by: 'bob' });
      assert.equal(m.tryStat('/d'), null);
      fails(() => m.props('/d/f'), 'NOT_FOUND');
      assert.equal(m.stat('/').mtime, T0 + 1000);
      assert.equal(m.usage('alice'), 20, 'trash counts until purged');
      assert.deepEqual(m.trashList(), [t]);
      clock.advance();
      const back = m.restore(t.trash_id, { user: 'alice' });
      assert.deepEqual(back, before.d);
      assert.deepEqual(m.stat('/d/f'), before.f);
      assert.deepEqual(m.versions('/d/f'), before.versions);
      assert.deepEqual(m.props('/d/f'), { p: 'v' });
      assert.deepEqual(m.trashList(), []);
      assert.equal(m.stat('/').mtime, T0 + 2000);
    });

    it('restore refuses a taken path and a missing parent, and restores elsewhere with to', () => {
      m.mkdir('/d', 'alice');
      m.writeFile('/d/f', blob('old'), { user: 'alice' });
      const t = m.remove('/d/f', 'alice');
      m.writeFile('/d/f', blob('new'), { user: 'alice' });
      fails(() => m.restore(t.trash_id, { user: 'alice' }), 'EXISTS', /the path is taken/);
      const r = m.restore(t.trash_id, { user: 'alice', to: '/d/f (restored)' });
      assert.deepEqual([r.path, r.content_id], ['/d/f (restored)', sha('file:old')]);
      const t2 = m.remove('/d/f', 'alice');
      m.remove('/d', 'alice');
      fails(() => m.restore(t2.trash_id, { user: 'alice' }), 'NOT_FOUND_PARENT');
      fails(() => m.restore(t2.trash_id, { user: 'alice', to: '/' }), 'EXISTS');
      fails(() => m.restore(t2.trash_id, { user: 'alice', to: '/a/../b' }), 'INVALID_PATH');
      fails(() => m.restore('999', { user: 'alice' }), 'NOT_FOUND', /trash entry "999"/);
      fails(() => m.restore('abc', { user: 'alice' }), 'NOT_FOUND');
      assert.equal(m.restore(t2.trash_id, { user: 'alice', to: '/f' }).content_id, sha('file:new'));
    });

    it('removing the root or a missing path is refused', () => {
      fails(() => m.remove('/', 'alice'), 'CONFLICT', /root/);
      fails(() => m.remove('/nope', 'alice'), 'NOT_FOUND');
    });

    it('purge deletes for good, frees usage and returns the released chunks', () => {
      m.mkdir('/d', 'alice');
      m.writeFile('/d/f', content('1', [['a', 10], ['s', 5]]), { user: 'alice' });
      m.writeFile('/d/f', content('2', [['b', 20], ['s', 5]]), { user: 'alice' });
      m.writeFile('/keep', content('k', [['s', 5]]), { user: 'bob' });
      m.patchProps('/d/f', { p: 'v' }, []);
      const t = m.remove('/d', 'alice');
      const r = m.purge(t.trash_id);
      assert.deepEqual(r.purged, [t.trash_id]);
      assert.deepEqual(new Set(r.released), new Set([{ id: chunkId('a'), size: 10 }, { id: chunkId('b'), size: 20 }]));
      assert.equal(r.released.length, 2);
      assert.deepEqual([m.usage('alice'), m.usage('bob')], [0, 5]);
      assert.deepEqual(m.trashList(), []);
      fails(() => m.purge(t.trash_id), 'NOT_FOUND');
      checkInvariants(file, 10);
    });

    it('emptyTrash purges what was removed before a time, or everything', () => {
      for (const n of ['a', 'b', 'c']) {
        m.writeFile(`/${n}`, blob(n), { user: 'alice' });
        clock.advance();
        m.remove(`/${n}`, 'alice');
      }
      const seq = m.lastSeq;
      assert.deepEqual(m.emptyTrash(T0), { purged: [], released: [] });
      assert.equal(m.lastSeq, seq, 'nothing purged, nothing logged');
      const r = m.emptyTrash(T0 + 2500);
      assert.deepEqual(r.purged, ['1', '2']);
      assert.deepEqual(r.released.map((c) => c.id).sort(), [chunkId('a'), chunkId('b')].sort());
      assert.deepEqual(m.trashList().map((t) => t.path), ['/c']);
      assert.deepEqual(m.emptyTrash().purged, ['3']);
      assert.equal(m.usage('alice'), 0);
      fails(() => m.emptyTrash(Number.NaN), 'INVALID_ARGUMENT');
    });

    it('trashItem finds an entry by its id, without adding up its size', () => {
      m.mkdir('/d', 'alice');
      m.writeFile('/d/f', blob('f', 30), { user: 'alice' });
      const t = m.remove('/d', 'alice');
      const { size, ...item } = t;
      assert.equal(size, 30);
      assert.deepEqual(m.trashItem(t.trash_id), item);
      for (const bad of ['99', '0', 'x', '', '1.5']) assert.equal(m.trashItem(bad), null);
    });
  });

  describe('purging a folder larger than one transaction takes', () => {
    it('takes it out of the trash at once, then deletes it batch by batch; interrupted, the rest is deleted after a restart', async () => {
      const pFile = join(dir, 'p.db');
      const p = open(pFile, { purgeBatch: 5 });
      p.writeFile('/keep', content('keep', [['shared', 7]]), { user: 'bob' });
      p.mkdir('/big', 'alice');
      for (const d of ['a', 'b', 'c']) {
        p.mkdir(`/big/${d}`, 'alice');
        for (let i = 0; i < 4; i++) {
          p.writeFile(`/big/${d}/${i}`, content(`${d}${i}v1`, [[`${d}${i}old`, 5]]), { user: 'alice' });
          p.writeFile(`/big/${d}/${i}`, content(`${d}${i}`, [[`${d}${i}`, 10], ['shared', 7]]), { user: 'alice' });
          p.patchProps(`/big/${d}/${i}`, { p: 'v' }, []);
        }
      }
      p.writeFile('/big/top', blob('top', 3), { user: 'bob' });
      const t = p.remove('/big', 'alice');
      assert.equal(t.size, 12 * 17 + 3);
      const chunks = p.chunkIds('', 1000);
      assert.deepEqual(p.purge(t.trash_id), { purged: [t.trash_id], released: [] });
      // Out of the trash for good, and nothing of it deleted yet: still charged, its chunks still referenced.
      assert.equal(p.trashItem(t.trash_id), null);
      assert.deepEqual(p.trashList(), []);
      fails(() => p.restore(t.trash_id, { user: 'alice' }), 'NOT_FOUND');
      fails(() => p.purge(t.trash_id), 'NOT_FOUND');
      assert.deepEqual([p.usage('alice'), p.usage('bob')], [204, 10]);
      assert.deepEqual(p.chunkIds('', 1000), chunks);
      assert.equal(p.purgesLeft, true);
      checkInvariants(pFile, 10, { purging: true });

      const step = p.purgeStep();
      assert.deepEqual([step.erased, step.remaining], [5, true]);
      assert.ok(p.usage('alice') < 204 && p.usage('alice') > 0);
      checkInvariants(pFile, 10, { purging: true });

      // Interrupted here: opened again, the rest is deleted.
      p.close();
      const again = open(pFile, { purgeBatch: 5 });
      assert.equal(again.purgesLeft, true);
      await again.finishPurges();
      assert.equal(again.purgesLeft, false);
      assert.deepEqual([again.usage('alice'), again.usage('bob')], [0, 7]);
      assert.deepEqual(again.chunkIds('', 1000), [{ id: chunkId('shared'), size: 7 }]);
      checkInvariants(pFile, 10);
      assert.deepEqual(again.purgeStep(), { erased: 0, released: [], remaining: false });
      const erased = again
        .log(0, 10_000)
        .flatMap((e) => e.changes)
        .flatMap((c) => (c.t === 'erase' ? [c.ids.length] : []));
      assert.ok(erased.every((n) => n <= 5), `batches of ${erased.join(', ')} entries`);
      assert.equal(erased.reduce((a, b) => a + b, 0), 1 + 3 + 12 + 1, 'every entry deleted once');

      // A follower applying the log one entry at a time ends identical.
      const fFile = join(dir, 'f.db');
      const f = open(fFile, { role: 'follower' });
      sync(again, f, 1, 0);
      assert.deepEqual(tables(fFile), tables(pFile));
      checkInvariants(fFile, 10);
    });

    it('emptyTrash deletes at most one batch at once and leaves larger entries to finishPurges', async () => {
      const pFile = join(dir, 'p.db');
      const p = open(pFile, { purgeBatch: 4 });
      p.writeFile('/a', blob('a', 1), { user: 'alice' });
      p.remove('/a', 'alice');
      p.mkdir('/d', 'alice');
      for (let i = 0; i < 6; i++) p.writeFile(`/d/${i}`, blob(`d${i}`, 1), { user: 'alice' });
      p.remove('/d', 'alice');
      p.writeFile('/b', blob('b', 1), { user: 'alice' });
      p.remove('/b', 'alice');
      assert.deepEqual(p.emptyTrash().purged, ['1', '2', '3']);
      assert.deepEqual(p.trashList(), []);
      assert.equal(p.usage('alice'), 6, '/a and /b deleted at once, /d left');
      await p.finishPurges();
      assert.equal(p.usage('alice'), 0);
      checkInvariants(pFile, 10);
    });
  });

  describe('dead properties', () => {
    it('sets and removes in one step and lists them by name', () => {
      m.writeFile('/f', blob('f'), { user: 'alice' });
      assert.deepEqual(m.props('/f'), {});
      assert.deepEqual(m.patchProps('/f', { '{urn:x}b': '2', '{urn:x}a': '<x:v xmlns:x="urn:x">1</x:v>' }, []), {
        '{urn:x}a': '<x:v xmlns:x="urn:x">1</x:v>',
        '{urn:x}b': '2',
      });
      assert.deepEqual(m.patchProps('/f', { '{urn:x}c': '3', '{urn:x}a': 'one' }, ['{urn:x}b', '{urn:x}absent']), { '{urn:x}a': 'one', '{urn:x}c': '3' });
      assert.deepEqual(m.patchProps('/', { 'root-prop': '😀 ünï' }, []), { 'root-prop': '😀 ünï' });
      assert.deepEqual(m.patchProps('/f', { __proto__x: 'p', constructor: 'c' }, []).constructor, 'c');
    });

    it('is atomic: one bad property refuses the whole patch', () => {
      m.writeFile('/f', blob('f'), { user: 'alice' });
      m.patchProps('/f', { a: '1' }, []);
      const seq = m.lastSeq;
      fails(() => m.patchProps('/f', { b: '2', '': 'x' }, []), 'INVALID_ARGUMENT', /invalid property name/);
      fails(() => m.patchProps('/f', { b: '2', c: 'x'.repeat(64 * 1024 + 1) }, []), 'INVALID_ARGUMENT', /invalid value/);
      fails(() => m.patchProps('/f', { b: '\ud800' }, []), 'INVALID_ARGUMENT');
      fails(() => m.patchProps('/f', { b: 2 as unknown as string }, []), 'INVALID_ARGUMENT');
      fails(() => m.patchProps('/f', { b: '2' }, ['a', 'b']), 'INVALID_ARGUMENT', /both set and removed/);
      fails(() => m.patchProps('/f', { b: '2' }, ['n'.repeat(1025)]), 'INVALID_ARGUMENT');
      fails(() => m.patchProps('/nope', { b: '2' }, []), 'NOT_FOUND');
      assert.deepEqual(m.props('/f'), { a: '1' });
      assert.equal(m.lastSeq, seq);
      assert.deepEqual(m.patchProps('/f', {}, []), { a: '1' });
      assert.equal(m.lastSeq, seq, 'an empty patch logs nothing');
    });

    it('go with moves and copies, vanish with delete, and come back with restore', () => {
      m.mkdir('/d', 'alice');
      m.patchProps('/d', { dp: '1' }, []);
      m.writeFile('/d/f', blob('f'), { user: 'alice' });
      m.patchProps('/d/f', { fp: '2' }, []);
      m.copy('/d', '/c', { user: 'alice' });
      m.rename('/d', '/m', { user: 'alice' });
      assert.deepEqual([m.props('/m'), m.props('/m/f'), m.props('/c'), m.props('/c/f')], [{ dp: '1' }, { fp: '2' }, { dp: '1' }, { fp: '2' }]);
      m.patchProps('/c/f', { fp: 'changed' }, []);
      assert.deepEqual(m.props('/m/f'), { fp: '2' }, 'a copy has properties of its own');
      const t = m.remove('/m/f', 'alice');
      m.writeFile('/m/f', blob('new'), { user: 'alice' });
      assert.deepEqual(m.props('/m/f'), {}, 'a new file at a removed path has none');
      m.restore(t.trash_id, { user: 'alice', to: '/m/g' });
      assert.deepEqual(m.props('/m/g'), { fp: '2' });
    });
  });

  describe('dead properties: what one entry may hold', () => {
    it('refuses growth past MAX_PROPS_BYTES or MAX_PROPS with QUOTA_EXCEEDED, changing nothing', () => {
      m.writeFile('/f', blob('f'), { user: 'alice' });
      m.patchProps('/f', { big: 'x'.repeat(MAX_PROP_VALUE_BYTES) }, []);
      const seq = m.lastSeq;
      const err = fails(() => m.patchProps('/f', { more: 'y'.repeat(MAX_PROPS_BYTES - MAX_PROP_VALUE_BYTES) }, []), 'QUOTA_EXCEEDED', /^the dead properties of \/f would be 2 taking 66567 bytes; an entry may hold at most 128 taking 66560 bytes$/);
      assert.deepEqual(err.detail, { path: '/f', props: 2, bytes: 66_567, max_props: MAX_PROPS, max_bytes: MAX_PROPS_BYTES });
      assert.deepEqual(Object.keys(m.props('/f')), ['big']);
      assert.equal(m.lastSeq, seq);
      // Just up to the bound, the largest value and a name of the largest size fit together.
      m.patchProps('/f', { ['n'.repeat(MAX_PROPS_BYTES - MAX_PROP_VALUE_BYTES)]: 'x'.repeat(MAX_PROP_VALUE_BYTES) }, ['big']);

      m.writeFile('/g', blob('g'), { user: 'alice' });
      const many = Object.fromEntries(Array.from({ length: MAX_PROPS }, (_, i) => [`p${i}`, '1']));
      m.patchProps('/g', many, []);
      fails(() => m.patchProps('/g', { extra: '1' }, []), 'QUOTA_EXCEEDED', /would be 129 taking \d+ bytes/);
      m.patchProps('/g', { extra: '1' }, ['p0']);
      assert.equal(Object.keys(m.props('/g')).length, MAX_PROPS);
      // Each entry has bounds of its own, and a copy takes its source's properties whole.
      m.copy('/g', '/g2', { user: 'alice' });
      assert.equal(Object.keys(m.props('/g2')).length, MAX_PROPS);
    });

    it('lets an entry over the bounds, written before there were any, shrink but not grow', () => {
      m.writeFile('/f', blob('f'), { user: 'alice' });
      m.patchProps('/f', { a: '1' }, []);
      // The log entry of a patch the bounds would refuse today, applied by a follower that is then promoted.
      const entries = m.log(0);
      const last = entries[entries.length - 1]!;
      const forty = 'x'.repeat(40 * 1024);
      const old: LogEntry = { ...last, changes: [{ t: 'props', id: m.stat('/f').id, set: [['a', forty], ['b', forty]], remove: [] }] };
      m.close();
      const f = open(join(dir, 'f.db'), { role: 'follower' });
      f.apply([...entries.slice(0, -1), old]);
      f.close();
      const promoted = open(join(dir, 'f.db'));
      fails(() => promoted.patchProps('/f', { c: '1' }, []), 'QUOTA_EXCEEDED');
      fails(() => promoted.patchProps('/f', { a: forty + 'x' }, []), 'QUOTA_EXCEEDED');
      promoted.patchProps('/f', { a: 'short' }, []);
      promoted.patchProps('/f', { c: '1' }, ['b']);
      assert.deepEqual(promoted.props('/f'), { a: 'short', c: '1' });
    });
  });

  describe('below', () => {
    it('lists the entries below a folder relative to it, up to a limit, and what a trash entry holds', () => {
      m.mkdir('/d', 'alice');
      m.mkdir('/d/e', 'alice');
      m.writeFile('/d/e/f', blob('f'), { user: 'alice' });
      m.writeFile('/d/g', blob('g'), { user: 'alice' });
      assert.deepEqual(m.below('/d', 10).paths.sort(), ['e', 'e/f', 'g']);
      assert.equal(m.below('/d', 3).complete, true);
      const two = m.below('/d', 2);
      assert.equal(two.paths.length, 2);
      assert.equal(two.complete, false);
      assert.deepEqual(m.below('/d/g', 10), { paths: [], complete: true });
      assert.deepEqual(m.below('/', 10).paths.sort(), ['d', 'd/e', 'd/e/f', 'd/g']);
      const t = m.remove('/d/e', 'alice');
      assert.deepEqual(m.below('/d', 10).paths, ['g']);
      assert.deepEqual(m.trashBelow(t.trash_id, 10), { paths: ['f'], complete: true });
      fails(() => m.below('/nope', 10), 'NOT_FOUND');
      fails(() => m.trashBelow('99', 10), 'NOT_FOUND');
      fails(() => m.below('/d', -1), 'INVALID_ARGUMENT', /a limit is a whole number of entries/);
    });

    it('names an entry at or below a folder, live or trashed, that a user does not own', () => {
      m.mkdir('/d', 'alice');
      m.mkdir('/d/e', 'alice');
      m.writeFile('/d/e/f', blob('f'), { user: 'alice' });
      assert.equal(m.notOwnedBy('/d', 'alice'), null);
      assert.deepEqual(m.notOwnedBy('/d', 'bob'), { path: '/d', owner: 'alice' });
      m.writeFile('/d/e/g', blob('g'), { user: 'bob' });
      assert.deepEqual(m.notOwnedBy('/d', 'alice'), { path: '/d/e/g', owner: 'bob' });
      assert.equal(m.notOwnedBy('/d/e/f', 'alice'), null);
      const t = m.remove('/d/e', 'alice');
      assert.deepEqual(m.trashNotOwnedBy(t.trash_id, 'alice'), { path: '/d/e/g', owner: 'bob' });
      assert.equal(m.notOwnedBy('/d', 'alice'), null);
      fails(() => m.notOwnedBy('/nope', 'alice'), 'NOT_FOUND');
    });
  });

  describe('quotas', () => {
    it('setQuota, quota and usage', () => {
      assert.equal(m.quota('alice'), null);
      assert.equal(m.usage('alice'), 0);
      m.setQuota('alice', 1000);
      assert.equal(m.quota('alice'), 1000);
      const seq = m.lastSeq;
      m.setQuota('alice', 1000);
      assert.equal(m.lastSeq, seq, 'an unchanged quota logs nothing');
      m.setQuota('alice', null);
      assert.equal(m.quota('alice'), null);
      for (const bad of [-1, 1.5, Number.NaN, '5' as unknown as number]) fails(() => m.setQuota('alice', bad), 'INVALID_ARGUMENT');
    });

    it('a write over the quota fails before anything changes', () => {
      m.setQuota('alice', 250);
      m.ensureHome('alice');
      m.writeFile('/home/alice/a', blob('a', 100), { user: 'alice' });
      m.writeFile('/home/alice/b', blob('b', 100), { user: 'alice' });
      const snapshot = { api: dump(m), rows: tables(file) };
      const e = fails(() => m.writeFile('/home/alice/c', blob('c', 51), { user: 'alice' }), 'QUOTA_EXCEEDED', /alice has a quota of 250 bytes and uses 200; this would make it 251 \(1 over\)/);
      assert.deepEqual(e.detail, { user: 'alice', quota: 250, used: 200, wanted: 251 });
      fails(() => m.writeFile('/home/alice/a', blob('a2', 151), { user: 'alice' }), 'QUOTA_EXCEEDED');
      fails(() => m.copy('/home/alice/a', '/home/alice/a-copy', { user: 'alice' }), 'QUOTA_EXCEEDED');
      assert.deepEqual({ api: dump(m), rows: tables(file) }, snapshot);
      const big = m.stat('/home/alice/b').version_id!;
      m.writeFile('/home/alice/b', blob('b2', 10), { user: 'alice' });
      m.writeFile('/home/alice/c', blob('c', 100), { user: 'alice' });
      assert.equal(m.usage('alice'), 210);
      fails(() => m.restoreVersion('/home/alice/b', big, { user: 'alice' }), 'QUOTA_EXCEEDED', /this would make it 300/);
      assert.equal(m.usage('alice'), 210);
    });

    it('a copy that would overrun the quota after trashing its destination leaves the destination in place', () => {
      m.mkdir('/src', 'alice');
      for (const n of ['1', '2', '3']) m.writeFile(`/src/${n}`, blob(n, 100), { user: 'alice' });
      m.writeFile('/dst', blob('dst', 10), { user: 'bob' });
      m.setQuota('bob', 250);
      const rows = tables(file);
      fails(() => m.copy('/src', '/dst', { user: 'bob', overwrite: true }), 'QUOTA_EXCEEDED');
      assert.deepEqual(tables(file), rows);
      assert.equal(m.stat('/dst').owner, 'bob');
      assert.deepEqual(m.trashList(), []);
      // Ids allocated inside the failed operation were rolled back too.
      assert.equal(m.mkdir('/next', 'bob').id, 7);
    });

    it('counts the difference when replacing, charges the owner, and lets a user over quota shrink', () => {
      m.writeFile('/f', blob('a', 100), { user: 'alice' });
      m.setQuota('alice', 50);
      fails(() => m.writeFile('/g', blob('g', 1), { user: 'alice' }), 'QUOTA_EXCEEDED');
      m.writeFile('/f', blob('b', 80), { user: 'alice' });
      assert.equal(m.usage('alice'), 80, 'only current versions count');
      fails(() => m.writeFile('/f', blob('c', 90), { user: 'bob' }), 'QUOTA_EXCEEDED', /^alice/);
      assert.equal(m.usage('bob'), 0);
      m.rename('/f', '/moved', { user: 'bob' });
      assert.equal(m.usage('alice'), 80, 'moving changes nothing');
      const t = m.remove('/moved', 'alice');
      assert.equal(m.usage('alice'), 80, 'the trash counts');
      m.purge(t.trash_id);
      assert.equal(m.usage('alice'), 0);
      m.writeFile('/g', blob('g', 50), { user: 'alice' });
    });
  });

  describe('home folders', () => {
    it('ensureHome creates /home, /public and the home folder once', () => {
      clock.advance();
      const h = m.ensureHome('alice');
      assert.deepEqual([h.path, h.owner, h.type, h.created], ['/home/alice', 'alice', 'dir', T0 + 1000]);
      assert.deepEqual(m.list('/').map((e) => [e.path, e.owner]), [['/home', SYSTEM_OWNER], ['/public', SYSTEM_OWNER]]);
      const seq = m.lastSeq;
      assert.deepEqual(m.ensureHome('alice'), h);
      assert.equal(m.lastSeq, seq, 'nothing to create, nothing logged');
      m.ensureHome('bob');
      assert.deepEqual(m.list('/home').map((e) => [e.name, e.owner]), [['alice', 'alice'], ['bob', 'bob']]);
      assert.equal(m.lastSeq, seq + 1);
    });

    it('records the account a home was made for: a home recorded for none is taken, another account\'s refused', () => {
      m.ensureHome('alice');
      assert.equal(m.homeAccount('alice'), null);
      m.ensureHome('alice', { account: 'a1' });
      assert.equal(m.homeAccount('alice'), 'a1');
      const seq = m.lastSeq;
      m.ensureHome('alice', { account: 'a1' });
      assert.equal(m.lastSeq, seq, 'nothing to record, nothing logged');
      fails(() => m.ensureHome('alice', { account: 'a2' }), 'CONFLICT', /\/home\/alice is the home of an earlier account named alice/);
      for (const bad of ['', 'with space', 'x'.repeat(129)]) fails(() => m.ensureHome('bob', { account: bad }), 'INVALID_ARGUMENT');
      m.mkdir(RETIRED_HOMES_DIR, SYSTEM_OWNER);
      m.mkdir('/home/legacy', 'legacy');
      assert.deepEqual(m.homeUsers(), [{ user: 'alice', account: 'a1' }, { user: 'legacy', account: null }]);
    });

    it('retireHome sets aside what a volume keeps for a user whose account is gone: a new account of the name starts with nothing', () => {
      m.ensureHome('alice', { account: 'a1' });
      m.ensureHome('bob', { account: 'b1' });
      m.setQuota('bob', 5000);
      m.mkdir('/home/bob/docs', 'bob');
      m.writeFile('/home/bob/docs/medical.pdf', blob('med', 1234), { user: 'bob' });
      m.writeFile('/home/bob/docs/from-alice', blob('fa', 50), { user: 'alice' });
      m.writeFile('/public/bob.txt', blob('pub', 20), { user: 'bob' });
      m.writeFile('/home/bob/docs/old.pdf', blob('old', 100), { user: 'bob' });
      const inHome = m.remove('/home/bob/docs/old.pdf', 'bob');
      m.writeFile('/public/gone.txt', blob('gone', 10), { user: 'bob' });
      const outside = m.remove('/public/gone.txt', 'bob');
      clock.advance();
      const to = m.retireHome('bob');
      assert.equal(to, `${RETIRED_HOMES_DIR}/bob-20231114T221321Z`);
      assert.equal(m.tryStat('/home/bob'), null);
      assert.deepEqual(m.list(RETIRED_HOMES_DIR).map((e) => [e.path, e.owner]), [[to, SYSTEM_OWNER]]);
      assert.deepEqual(m.stat(RETIRED_HOMES_DIR).owner, SYSTEM_OWNER);
      assert.deepEqual(m.list(`${to}/docs`).map((e) => [e.name, e.owner]), [['from-alice', 'alice'], ['medical.pdf', SYSTEM_OWNER]]);
      assert.equal(m.stat('/public/bob.txt').owner, SYSTEM_OWNER, 'what the user owned elsewhere is no longer theirs either');
      assert.deepEqual(
        m.trashList().map((e) => [e.trash_id, e.path, e.owner]),
        [[inHome.trash_id, `${to}/docs/old.pdf`, SYSTEM_OWNER], [outside.trash_id, '/public/gone.txt', SYSTEM_OWNER]],
      );
      assert.deepEqual([m.usage('bob'), m.quota('bob'), m.usage('alice'), m.usage(SYSTEM_OWNER)], [0, null, 50, 1234 + 20 + 100 + 10]);
      assert.equal(m.homeAccount('bob'), null);
      assert.deepEqual(m.homeUsers(), [{ user: 'alice', account: 'a1' }]);

      const h = m.ensureHome('bob', { account: 'b2' });
      assert.deepEqual([h.owner, m.list('/home/bob'), m.homeAccount('bob'), m.usage('bob')], ['bob', [], 'b2', 0]);
      // What was set aside is all there: its trash restores into the set-aside home.
      assert.equal(m.restore(inHome.trash_id, { user: 'alice' }).path, `${to}/docs/old.pdf`);
      // Set aside again in the same second, under another name; nothing left to set aside, nothing moves.
      m.writeFile('/home/bob/x', blob('x', 1), { user: 'bob' });
      assert.equal(m.retireHome('bob'), `${to}-2`);
      assert.equal(m.retireHome('bob'), null);
      fails(() => m.retireHome('Bob'), 'INVALID_ARGUMENT');
      checkInvariants(file, 10);
    });

    it('retireHome refuses, changing nothing, when the longer name would put a path in the home past the limit', () => {
      m.ensureHome('bob', { account: 'b1' });
      let deep = '/home/bob';
      for (let i = 0; i < 16; i++) m.mkdir((deep += `/${'d'.repeat(250)}`), 'bob');
      m.mkdir(`${deep}/${'e'.repeat(4096 - Buffer.byteLength(deep) - 1)}`, 'bob');
      const seq = m.lastSeq;
      fails(() => m.retireHome('bob'), 'INVALID_PATH', /cannot set aside \/home\/bob to \/home\/\.deleted\/bob-.* the limit is 4096/);
      assert.equal(m.lastSeq, seq);
      assert.equal(m.homeAccount('bob'), 'b1');
      assert.equal(m.tryStat(RETIRED_HOMES_DIR), null);
    });

    it('refuses names that are not user names and a home that is a file', () => {
      for (const bad of ['Alice', '../x', 'a', 'x/y', '']) fails(() => m.ensureHome(bad), 'INVALID_ARGUMENT');
      m.mkdir('/home', SYSTEM_OWNER);
      m.writeFile('/home/carol', blob('c'), { user: 'carol' });
      fails(() => m.ensureHome('carol'), 'NOT_A_DIRECTORY');
      assert.equal(m.tryStat('/public'), null, 'nothing was created');
    });
  });

  describe('log shipping', () => {
    beforeEach(() => {
      // Small purge batches, so the scenario's purge of a folder goes in steps.
      m.close();
      m = open(file, { purgeBatch: 3 });
    });

    /** Every kind of operation, so a follower has to apply every kind of change. */
    function scenario(p: VolumeMeta): void {
      p.ensureHome('alice');
      p.ensureHome('bob');
      p.setQuota('alice', 10_000);
      p.mkdir('/home/alice/photos', 'alice');
      p.writeFile('/home/alice/photos/1.jpg', content('p1', [['x', 100], ['y', 50]]), { user: 'alice' });
      p.writeFile('/home/alice/photos/1.jpg', content('p1b', [['x', 100], ['z', 70]]), { user: 'alice' });
      p.writeFile('/home/alice/notes.txt', blob('n', 10), { user: 'alice' });
      p.patchProps('/home/alice/photos', { '{urn:x}album': 'summer' }, []);
      p.copy('/home/alice/photos', '/public/photos', { user: 'alice' });
      p.rename('/home/alice/notes.txt', '/home/bob/notes.txt', { user: 'alice' });
      const t = p.remove('/home/alice/photos/1.jpg', 'alice');
      p.restore(t.trash_id, { user: 'alice', to: '/home/alice/photos/one.jpg' });
      p.remove('/public/photos', 'bob');
      p.writeFile('/home/bob/b', blob('b', 5), { user: 'bob' });
      p.copy('/home/bob/b', '/home/bob/notes.txt', { user: 'bob', overwrite: true });
      p.emptyTrash();
      p.restoreVersion('/home/alice/photos/one.jpg', p.versions('/home/alice/photos/one.jpg')[1].version_id, { user: 'alice' });
      p.patchProps('/home/alice/photos', { '{urn:x}year': '2024' }, ['{urn:x}album']);
      p.remove('/home/bob/b', 'bob');
      p.ensureHome('carol', { account: 'c1' });
      p.writeFile('/home/carol/c', blob('c', 9), { user: 'carol' });
      p.remove('/home/carol/c', 'carol');
      p.retireHome('carol');
      p.ensureHome('carol', { account: 'c2' });
      p.mkdir('/home/alice/big', 'alice');
      p.mkdir('/home/alice/big/sub', 'alice');
      for (let i = 0; i < 6; i++) p.writeFile(`/home/alice/big/${i % 2 ? 'sub/' : ''}${i}`, blob(`big${i}`, 4), { user: 'alice' });
      p.purge(p.remove('/home/alice/big', 'alice').trash_id);
      while (p.purgeStep().remaining);
      p.setQuota('alice', null);
    }

    it('a follower applying the log in pages, with repeats, ends identical to the primary', () => {
      scenario(m);
      const fFile = join(dir, 'f.db');
      const f = open(fFile, { role: 'follower' });
      sync(m, f, 4, 2);
      assert.deepEqual(dump(f), dump(m));
      assert.deepEqual(tables(fFile), tables(file));
      checkInvariants(fFile, 10);
      // Re-applying everything again is a no-op.
      assert.deepEqual(f.apply(m.log(0, 1_000_000)), { applied: 0, skipped: m.lastSeq, lastSeq: m.lastSeq });
      assert.deepEqual(tables(fFile), tables(file));
    });

    it('a follower serves the log onward, so followers can chain', () => {
      scenario(m);
      const f1 = open(join(dir, 'f1.db'), { role: 'follower' });
      const f2 = open(join(dir, 'f2.db'), { role: 'follower' });
      sync(m, f1, 100, 0);
      sync(f1, f2, 7, 3);
      assert.deepEqual(dump(f2), dump(m));
    });

    it('log pages are in order and bounded by limit', () => {
      scenario(m);
      const seqs = m.log(3, 5).map((e) => e.seq);
      assert.deepEqual(seqs, [4, 5, 6, 7, 8]);
      assert.deepEqual(m.log(m.lastSeq), []);
      fails(() => m.log(-1), 'INVALID_ARGUMENT');
      fails(() => m.log(0, 0), 'INVALID_ARGUMENT');
    });

    it('log pages are bounded by bytes too, past the entries a reader needs to get on', () => {
      scenario(m);
      const db = new Database(file, { readonly: true });
      const sizes = db.prepare<[], { n: number }>('SELECT length(CAST(entry AS BLOB)) AS n FROM log ORDER BY seq').all().map((r) => r.n);
      db.close();
      const firstThree = sizes[0]! + sizes[1]! + sizes[2]!;
      assert.deepEqual(m.log(0, 1000, firstThree).map((e) => e.seq), [1, 2, 3]);
      assert.deepEqual(m.log(0, 1000, firstThree - 1).map((e) => e.seq), [1, 2]);
      assert.deepEqual(m.log(0, 1000, 1).map((e) => e.seq), [1], 'one entry, however large');
      assert.deepEqual(m.log(0, 1000, 1, 2).map((e) => e.seq), [1, 2]);
      assert.deepEqual(m.log(0, 2, Infinity, 5).map((e) => e.seq), [1, 2], 'never past limit');
    });

    it('a follower refuses every mutation', () => {
      m.writeFile('/f', blob('f'), { user: 'alice' });
      const f = open(join(dir, 'f.db'), { role: 'follower' });
      f.apply(m.log(0));
      const tries: Array<() => unknown> = [
        () => f.mkdir('/d', 'alice'),
        () => f.writeFile('/g', blob('g'), { user: 'alice' }),
        () => f.restoreVersion('/f', '1', { user: 'alice' }),
        () => f.rename('/f', '/g', { user: 'alice' }),
        () => f.copy('/f', '/g', { user: 'alice' }),
        () => f.remove('/f', 'alice'),
        () => f.restore('1', { user: 'alice' }),
        () => f.purge('1'),
        () => f.emptyTrash(),
        () => f.patchProps('/f', { a: 'b' }, []),
        () => f.setQuota('alice', 1),
        () => f.ensureHome('alice'),
        () => f.ensureHome('alice', { account: 'a1' }),
        () => f.retireHome('alice'),
        () => f.purgeStep(),
      ];
      for (const t of tries) fails(t, 'READ_ONLY', /volume main is a read-only follower here; write through its primary/);
      assert.equal(f.stat('/f').content_id, sha('file:f'));
      assert.equal(f.lastSeq, m.lastSeq);
    });

    it('refuses a gap, all or nothing', () => {
      scenario(m);
      const f = open(join(dir, 'f.db'), { role: 'follower' });
      const entries = m.log(0, 10);
      const e = fails(() => f.apply([...entries.slice(0, 3), ...entries.slice(4)]), 'LOG_GAP', /log entry 5 does not follow 3: entries 4\.\.4 are missing/);
      assert.deepEqual(e.detail, { expected: 4, actual: 5 });
      assert.equal(f.lastSeq, 0, 'the entries before the gap were not kept either');
      fails(() => f.apply(entries.slice(1)), 'LOG_GAP');
      assert.deepEqual(f.apply(entries.slice(0, 3)), { applied: 3, skipped: 0, lastSeq: 3 });
      assert.deepEqual(f.apply(entries.slice(1, 6)), { applied: 3, skipped: 2, lastSeq: 6 });
    });

    it('detects a diverged replica, a foreign volume and malformed entries', () => {
      scenario(m);
      const f = open(join(dir, 'f.db'), { role: 'follower' });
      const entries = m.log(0, 5);
      f.apply(entries);
      const altered: LogEntry = { ...entries[2], at: entries[2].at + 1 };
      fails(() => f.apply([altered]), 'CONFLICT', /differs from the one applied here/);
      const other = open(join(dir, 'o.db'), { volume: 'other' });
      fails(() => f.apply(other.log(0)), 'CONFLICT', /belongs to volume "other"/);
      fails(() => f.apply([{ seq: 6 } as LogEntry]), 'INVALID_ARGUMENT', /log entry 0 is malformed/);
      fails(() => f.apply([{ ...m.log(5, 1)[0], changes: [{ t: 'explode' }] } as unknown as LogEntry]), 'INVALID_ARGUMENT');
      // An entry that is well-formed but names nodes this replica does not have.
      const bogus: LogEntry = { ...m.log(5, 1)[0], changes: [{ t: 'move', id: 999, parent: 1, name: 'x' }] };
      fails(() => f.apply([bogus]), 'CONFLICT', /does not apply to this replica: move: node 999 not found/);
      const dangling: LogEntry = { ...m.log(5, 1)[0], changes: [{ t: 'node', id: 500, parent: 400, name: 'x', type: 'dir', owner: 'a', created: 1, mtime: 1 }] };
      fails(() => f.apply([dangling]), 'CONFLICT', /dangling reference/);
      // Deleting in parts what no purge took out of the trash: the root, a live folder.
      for (const id of [1, 2]) fails(() => f.apply([{ ...m.log(5, 1)[0], changes: [{ t: 'erase', ids: [id] }] }]), 'CONFLICT', new RegExp(`erase: node ${id} is not being purged`));
      assert.equal(f.lastSeq, 5);
      sync(m, f);
      assert.deepEqual(dump(f), dump(m));
    });

    it('the primary does not apply a log', () => {
      fails(() => m.apply(m.log(0)), 'CONFLICT', /only followers apply a log/);
    });
  });

  describe('log truncation and snapshots', () => {
    it('a follower too far behind a truncated log catches up from a snapshot, then from the log', async () => {
      m.ensureHome('alice');
      for (let i = 0; i < 5; i++) m.writeFile(`/home/alice/${i}`, blob(`f${i}`), { user: 'alice' });
      const cut = m.lastSeq - 2;
      assert.equal(m.truncateLog(cut), cut);
      assert.equal(m.logStart, cut);
      const e = fails(() => m.log(0), 'LOG_GAP', new RegExp(`entries up to ${cut} of volume main are no longer kept here`));
      assert.deepEqual(e.detail, { expected: 1, actual: cut + 1 });
      assert.equal(m.log(cut).length, 2);
      fails(() => m.truncateLog(m.lastSeq + 1), 'INVALID_ARGUMENT');

      const fFile = join(dir, 'f', 'meta.db');
      mkdirSync(join(dir, 'f'));
      const info = await m.snapshotTo(fFile);
      assert.deepEqual(info, { seq: m.lastSeq, logStart: cut, instance: m.instance });
      assert.deepEqual(VolumeMeta.inspectSnapshot(fFile, 'main', { integrity: true }), info);
      const f = open(fFile, { role: 'follower' });
      assert.equal(f.lastSeq, m.lastSeq);
      assert.equal(f.instance, m.instance, 'a snapshot keeps its primary\'s instance');
      m.rename('/home/alice/0', '/home/alice/zero', { user: 'alice' });
      m.remove('/home/alice/1', 'alice');
      // From the last entry the snapshot holds, as a follower asks: compared, then skipped.
      assert.equal(f.apply(m.log(f.lastSeq - 1)).applied, 2);
      assert.deepEqual(dump(f, ['alice']).tree, dump(m, ['alice']).tree);
      assert.deepEqual(tables(fFile), tables(file));
      f.close();
      const again = open(fFile, { role: 'follower' });
      assert.equal(again.stat('/home/alice/zero').content_id, sha('file:f0'));
      // Entries the snapshot already covers are skipped.
      assert.deepEqual(again.apply(m.log(cut)), { applied: 0, skipped: m.lastSeq - cut, lastSeq: m.lastSeq });
    });

    it('a snapshot taken while grouped writes commit is the state at one seq, answered once all of it is durable', async () => {
      m.mkdir('/d', 'alice');
      const syncs = heldSyncs(m);
      const writes = Array.from({ length: 20 }, (_, i) => m.grouped(() => m.writeFile(`/d/${i}`, blob(`g${i}`), { user: 'alice' })));
      await nextTurn();
      assert.equal(syncs.length, 1, 'one group, committed, its sync held');
      let answered = false;
      const snapFile = join(dir, 'snap.db');
      const snap = m.snapshotTo(snapFile).then((i) => ((answered = true), i));
      // More commits while the backup runs are carried into it.
      const more = m.grouped(() => m.mkdir('/during', 'bob'));
      for (let i = 0; i < 50; i++) await nextTurn();
      assert.equal(answered, false, 'not answered while entries in it may still be lost');
      syncs[0]!.resolve();
      for (let i = 0; i < 5 && syncs.length < 2; i++) await nextTurn();
      syncs[1]!.resolve();
      await Promise.all([...writes, more]);
      const info = await snap;
      assert.equal(info.seq, m.lastSeq);
      const f = open(snapFile, { role: 'follower' });
      assert.deepEqual(dump(f), dump(m));
      assert.deepEqual(tables(snapFile), tables(file));
    });

    it('refuses to answer a snapshot holding a group whose sync failed', async () => {
      const syncs = heldSyncs(m);
      const lost = m.grouped(() => m.mkdir('/lost', 'alice'));
      await nextTurn();
      const snap = m.snapshotTo(join(dir, 'snap.db'));
      for (let i = 0; i < 20; i++) await nextTurn();
      syncs[0]!.reject(new Error('EIO: i/o error, fdatasync'));
      await assert.rejects(lost, (e: MetaError) => e.code === 'READ_ONLY');
      await assert.rejects(snap, (e: MetaError) => e.code === 'READ_ONLY' && /could not be made durable/.test(e.message));
    });

    it('inspectSnapshot refuses another volume\'s metadata, a file that is no database, and a damaged one', async () => {
      const other = open(join(dir, 'o.db'), { volume: 'other' });
      const otherSnap = join(dir, 'o-snap.db');
      await other.snapshotTo(otherSnap);
      fails(() => VolumeMeta.inspectSnapshot(otherSnap, 'main', { integrity: true }), 'CONFLICT', /is not a schema 1 snapshot of volume "main"/);
      const garbage = join(dir, 'garbage.db');
      writeFileSync(garbage, 'not a database at all, not even close to one'.repeat(200));
      fails(() => VolumeMeta.inspectSnapshot(garbage, 'main', { integrity: true }), 'INVALID_ARGUMENT', /is damaged: file is not a database/);
      fails(() => VolumeMeta.inspectSnapshot(join(dir, 'none.db'), 'main', { integrity: true }), 'INVALID_ARGUMENT', /cannot be opened/);

      m.mkdir('/d', 'alice');
      for (let i = 0; i < 300; i++) m.writeFile(`/d/${i}`, blob(`x${i}`), { user: 'alice' });
      const snapFile = join(dir, 'snap.db');
      await m.snapshotTo(snapFile);
      // The header of the versions table's root page overwritten, as a torn or misdirected write would.
      const db = new Database(snapFile, { readonly: true });
      const page = (db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'versions'").get() as { rootpage: number }).rootpage;
      const size = db.pragma('page_size', { simple: true }) as number;
      db.close();
      const bytes = readFileSync(snapFile);
      bytes.fill(0xa5, (page - 1) * size + 8, (page - 1) * size + 64);
      writeFileSync(snapFile, bytes);
      fails(() => VolumeMeta.inspectSnapshot(snapFile, 'main', { integrity: true }), 'INVALID_ARGUMENT', /is damaged/);
    });
  });

  describe('promotion', () => {
    it('a follower\'s copy opened as primary has everything it applied durable first, also what a killed process left in its WAL', async () => {
      for (let i = 0; i < 20; i++) m.mkdir(`/d${i}`, 'alice');
      const fFile = join(dir, 'f', 'meta.db');
      // A follower in a process of its own applies the log (synchronous=NORMAL: its WAL is not synced) and is killed
      // before it closes the copy, which would have checkpointed it.
      const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', `
        import { VolumeMeta } from ${JSON.stringify(new URL('./volume-meta.ts', import.meta.url).href)};
        const [primary, follower] = process.argv.slice(1);
        const p = VolumeMeta.open(primary, { volume: 'main', role: 'follower' });
        const f = VolumeMeta.open(follower, { volume: 'main', role: 'follower' });
        f.apply(p.log(0));
        process.stdout.write(String(f.lastSeq) + '\\n');
        setInterval(() => {}, 1000);
      `, file, fFile], { stdio: ['ignore', 'pipe', 'inherit'] });
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      assert.equal(Number(line.toString().trim()), m.lastSeq);
      child.kill('SIGKILL');
      await once(child, 'exit');
      assert.ok(statSync(`${fFile}-wal`).size > 0, 'the applied entries sit in an unsynced WAL');

      const promoted = open(fFile, { role: 'primary' });
      assert.equal(promoted.lastSeq, m.lastSeq);
      // A power cut now loses nothing that was not synced: what the database file alone holds is everything. (The
      // WAL is what a power cut could take: it had never been synced.)
      const alone = join(dir, 'alone.db');
      copyFileSync(fFile, alone);
      const survivor = open(alone, { role: 'follower' });
      assert.equal(survivor.lastSeq, m.lastSeq);
      assert.equal(survivor.stat('/d19').owner, 'alice');
    });
  });

  describe('randomised: random operations on the primary, replayed on a follower', () => {
    const USERS = ['alice', 'bob', 'carol'];
    /** Users given quotas; carol's home is set aside (retireHome) now and then instead. */
    const LIMITED = ['alice', 'bob'];
    const NAMES = ['a', 'b', 'c'];
    const CHUNKS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
    const chunkSize = (c: string): number => (Number(c.slice(1)) + 1) * 10;

    function rng(seed: number): () => number {
      let s = seed >>> 0;
      return () => {
        s = (s + 0x6d2b79f5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    }

    for (const seed of [1, 2, 3, 4]) {
      it(`seed ${seed}: the follower ends identical, invariants hold, and failed operations change nothing`, () => {
        const keep = 3;
        const pFile = join(dir, `p${seed}.db`);
        const fFile = join(dir, `f${seed}.db`);
        // Small purge batches, so purges go in steps, interleaved with everything else.
        const p = open(pFile, { keepVersions: keep, purgeBatch: 3 });
        const f = open(fFile, { role: 'follower' });
        const rand = rng(seed);
        const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
        const randomPath = (): string => `/${Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(NAMES)).join('/')}`;
        const existing = (): Array<{ path: string; type: string }> => {
          const out: Array<{ path: string; type: string }> = [{ path: '/', type: 'dir' }];
          for (let i = 0; i < out.length; i++) {
            if (out[i].type === 'dir' && out[i].path.split('/').length < 5) out.push(...p.list(out[i].path));
          }
          return out;
        };
        // Mostly paths that exist or could be created, so that most operations get past NOT_FOUND.
        const path = (): string => {
          const r = rand();
          if (r < 0.25) return randomPath();
          const e = pick(existing());
          if (r < 0.6 || e.type !== 'dir') return e.path;
          return `${e.path === '/' ? '' : e.path}/${pick(NAMES)}`;
        };
        const reader = new Database(pFile, { readonly: true });
        const rows = (): unknown[] => TABLES.map((t) => reader.prepare(`SELECT * FROM ${t} ORDER BY 1, 2`).all());
        const ok = new Map<string, number>();
        const failed = new Map<string, number>();

        const mkdir: [string, () => unknown] = ['mkdir', () => p.mkdir(path(), pick(USERS))];
        const rename: [string, () => unknown] = ['rename', () => p.rename(path(), path(), { user: pick(USERS), overwrite: rand() < 0.5 })];
        const copy: [string, () => unknown] = [
          'copy',
          () => p.copy(path(), path(), { user: pick(USERS), overwrite: rand() < 0.5, depth: rand() < 0.2 ? 0 : 'infinity' }),
        ];
        const ops: Array<[string, () => unknown]> = [
          mkdir,
          mkdir,
          [
            'write',
            () => {
              const chunks = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(CHUNKS));
              return p.writeFile(path(), content(chunks.join('+'), chunks.map((c) => [c, chunkSize(c)])), { user: pick(USERS) });
            },
          ],
          ['write-small', () => p.writeFile(path(), blob(`small${Math.floor(rand() * 4)}`, 5), { user: pick(USERS) })],
          rename,
          rename,
          copy,
          copy,
          ['remove', () => p.remove(path(), pick(USERS))],
          [
            'restore',
            () => {
              const t = p.trashList();
              return p.restore(t.length > 0 ? pick(t).trash_id : '1', { user: pick(USERS), ...(rand() < 0.5 ? { to: path() } : {}) });
            },
          ],
          [
            'purge',
            () => {
              const t = p.trashList();
              if (rand() < 0.3) return p.emptyTrash(clock.t - Math.floor(rand() * 20_000));
              return p.purge(t.length > 0 ? pick(t).trash_id : '1');
            },
          ],
          ['props', () => p.patchProps(path(), rand() < 0.7 ? { [pick(NAMES)]: String(rand()) } : {}, rand() < 0.3 ? [pick(['x', 'y'])] : [])],
          ['quota', () => p.setQuota(pick(LIMITED), rand() < 0.3 ? null : Math.floor(rand() * 600))],
          ['purge-step', () => p.purgeStep()],
          ['retire-home', () => p.retireHome('carol')],
          [
            'restore-version',
            () => {
              const target = path();
              const vs = p.tryStat(target)?.type === 'file' ? p.versions(target) : [];
              return p.restoreVersion(target, vs.length > 0 ? pick(vs).version_id : '1', { user: pick(USERS) });
            },
          ],
        ];

        try {
          for (let i = 0; i < 500; i++) {
            clock.advance(Math.floor(rand() * 3000));
            const [name, op] = pick(ops);
            const before = rows();
            const seq = p.lastSeq;
            try {
              op();
              ok.set(name, (ok.get(name) ?? 0) + 1);
            } catch (err) {
              if (!(err instanceof MetaError)) throw err;
              failed.set(err.code, (failed.get(err.code) ?? 0) + 1);
              assert.equal(p.lastSeq, seq, `${name} failed with ${err.code} but logged`);
              assert.deepEqual(rows(), before, `${name} failed with ${err.code} but changed state`);
            }
            if (rand() < 0.1) sync(p, f, 1 + Math.floor(rand() * 10), Math.floor(rand() * 4));
          }
          while (p.purgeStep().remaining);
          sync(p, f, 5, 2);
          assert.deepEqual(dump(f), dump(p));
          assert.deepEqual(tables(fFile), tables(pFile));
          checkInvariants(pFile, keep);
          checkInvariants(fFile, keep);
          for (const [name] of ops) assert.ok((ok.get(name) ?? 0) > 0, `no ${name} succeeded: the test exercises too little`);
          assert.ok((failed.get('QUOTA_EXCEEDED') ?? 0) > 0, 'no quota was ever exceeded');
        } finally {
          reader.close();
        }
      });
    }
  });
});

