// The embedded system-config backend for a one-core-node zone: one SQLite file, etcd-like revisions and a bounded
// change log for watches.
import { EventEmitter } from 'node:events';
import Database from 'better-sqlite3';
import {
  StoreError,
  type ConfigEntry,
  type ConfigStore,
  type ListResult,
  type TxCompare,
  type TxOp,
  type TxResult,
  type WatchEvent,
} from '../store.ts';
import { assertDistinctOpKeys } from './tx-rules.ts';

const SCHEMA_VERSION = 1;
const DEFAULT_HISTORY_LIMIT = 100_000;

// `changes` is the watch log: one row per key changed, several rows sharing a revision for a transaction.
const SCHEMA = `
  CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    revision INTEGER NOT NULL,
    create_revision INTEGER NOT NULL
  );
  CREATE TABLE changes (
    id INTEGER PRIMARY KEY,
    revision INTEGER NOT NULL,
    key TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
    value TEXT
  );
  CREATE INDEX changes_revision ON changes (revision);
  CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
  INSERT INTO meta (name, value) VALUES ('revision', 0), ('compact_revision', 0);
  PRAGMA user_version = ${SCHEMA_VERSION};
`;

interface KvRow {
  key: string;
  value: string;
  revision: number;
  create_revision: number;
}

interface ChangeRow {
  revision: number;
  key: string;
  type: 'put' | 'delete';
  value: string | null;
}

function toEntry(row: KvRow): ConfigEntry {
  return { key: row.key, value: row.value, revision: row.revision, createRevision: row.create_revision };
}

/** Waits on `emitter` until `isDone()` holds after a 'commit' event, the timeout passes, or `signal` aborts. */
function waitForCommit(
  emitter: EventEmitter,
  isDone: () => boolean,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const finish = (err?: unknown): void => {
      clearTimeout(timer);
      emitter.off('commit', onCommit);
      emitter.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onCommit = (): void => {
      if (isDone()) finish();
    };
    const onClose = (): void => finish();
    const onAbort = (): void => finish(signal?.reason);
    const timer = setTimeout(finish, Math.max(0, timeoutMs));
    emitter.on('commit', onCommit);
    emitter.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function openSqliteStore(path: string, opts: { historyLimit?: number } = {}): ConfigStore {
  const historyLimit = opts.historyLimit ?? DEFAULT_HISTORY_LIMIT;
  if (!Number.isInteger(historyLimit) || historyLimit < 1) {
    throw new RangeError(`historyLimit must be a positive integer, got ${historyLimit}`);
  }

  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // FULL makes every commit durable across power loss; NORMAL in WAL mode may lose the last commits.
  db.pragma('synchronous = FULL');
  // Backup tools may read the file from another process; wait for them instead of failing with SQLITE_BUSY.
  db.pragma('busy_timeout = 5000');

  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new Error(`${path} has schema version ${version}; this build understands up to ${SCHEMA_VERSION}`);
  }
  if (version === 0) db.transaction(() => db.exec(SCHEMA)).immediate();

  const stmt = {
    getMeta: db.prepare<[string], number>('SELECT value FROM meta WHERE name = ?').pluck(),
    setMeta: db.prepare<[number, string]>('UPDATE meta SET value = ? WHERE name = ?'),
    getKv: db.prepare<[string], KvRow>('SELECT key, value, revision, create_revision FROM kv WHERE key = ?'),
    upsertKv: db.prepare<[string, string, number, number]>(
      `INSERT INTO kv (key, value, revision, create_revision) VALUES (?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision`,
    ),
    deleteKv: db.prepare<[string]>('DELETE FROM kv WHERE key = ?'),
    // Keys with a common prefix are contiguous in SQLite's byte order, so a scan from the prefix can stop at the
    // first key that does not start with it.
    scanFrom: db.prepare<[string], KvRow>(
      'SELECT key, value, revision, create_revision FROM kv WHERE key >= ? ORDER BY key',
    ),
    insertChange: db.prepare<[number, string, string, string | null]>(
      'INSERT INTO changes (revision, key, type, value) VALUES (?, ?, ?, ?)',
    ),
    changesAfter: db.prepare<[number, string, string], ChangeRow>(
      `SELECT revision, key, type, value FROM changes
       WHERE revision > ? AND substr(key, 1, length(?)) = ? ORDER BY revision, id`,
    ),
    compact: db.prepare<[number]>('DELETE FROM changes WHERE revision <= ?'),
  };

  const emitter = new EventEmitter();
  // Every long-poll watch adds a listener; there is no meaningful upper bound to warn about.
  emitter.setMaxListeners(0);

  const currentRevision = (): number => stmt.getMeta.get('revision') as number;
  const revisionOf = (key: string): number => stmt.getKv.get(key)?.revision ?? 0;

  type Write = { type: 'put'; key: string; value: string } | { type: 'delete'; key: string };

  /** Applies `writes` under one new revision; the caller runs it inside a transaction. No-op writes do not bump. */
  const applyWrites = (writes: Write[]): number => {
    const effective = writes.filter((w) => w.type === 'put' || stmt.getKv.get(w.key) !== undefined);
    if (effective.length === 0) return currentRevision();
    const rev = currentRevision() + 1;
    for (const w of effective) {
      if (w.type === 'put') {
        stmt.upsertKv.run(w.key, w.value, rev, rev);
        stmt.insertChange.run(rev, w.key, 'put', w.value);
      } else {
        stmt.deleteKv.run(w.key);
        stmt.insertChange.run(rev, w.key, 'delete', null);
      }
    }
    stmt.setMeta.run(rev, 'revision');
    const compactTo = rev - historyLimit;
    if (compactTo > (stmt.getMeta.get('compact_revision') as number)) {
      stmt.compact.run(compactTo);
      stmt.setMeta.run(compactTo, 'compact_revision');
    }
    return rev;
  };

  /** Runs `fn` as one IMMEDIATE transaction and wakes watchers when it committed a new revision. */
  const write = <T>(fn: () => T): T => {
    const before = currentRevision();
    const result = db.transaction(fn).immediate();
    const after = currentRevision();
    if (after !== before) emitter.emit('commit', after);
    return result;
  };

  const listPrefix = (prefix: string, limit?: number): ListResult => {
    const entries: ConfigEntry[] = [];
    if (limit === undefined || limit > 0) {
      for (const row of stmt.scanFrom.iterate(prefix)) {
        if (!row.key.startsWith(prefix)) break;
        entries.push(toEntry(row));
        if (entries.length === limit) break;
      }
    }
    return { entries, revision: currentRevision() };
  };

  return {
    async get(key) {
      const row = stmt.getKv.get(key);
      return row ? toEntry(row) : null;
    },

    async set(key, value, expectRevision) {
      return write(() => {
        if (expectRevision !== undefined && revisionOf(key) !== expectRevision) {
          throw new StoreError('CONFLICT', `${key}: expected revision ${expectRevision}, found ${revisionOf(key)}`);
        }
        return applyWrites([{ type: 'put', key, value }]);
      });
    },

    async create(key, value) {
      return write(() => {
        if (revisionOf(key) !== 0) throw new StoreError('ALREADY_EXISTS', `${key} already exists`);
        return applyWrites([{ type: 'put', key, value }]);
      });
    },

    async delete(key, expectRevision) {
      return write(() => {
        const rev = revisionOf(key);
        if (rev === 0) throw new StoreError('NOT_FOUND', `${key} does not exist`);
        if (expectRevision !== undefined && rev !== expectRevision) {
          throw new StoreError('CONFLICT', `${key}: expected revision ${expectRevision}, found ${rev}`);
        }
        return applyWrites([{ type: 'delete', key }]);
      });
    },

    async list(prefix, limit) {
      return listPrefix(prefix, limit);
    },

    async execTx(compares: TxCompare[], ops: TxOp[]): Promise<TxResult> {
      assertDistinctOpKeys(ops);
      return write(() => {
        const conflicts = new Set<string>();
        for (const c of compares) if (revisionOf(c.key) !== c.revision) conflicts.add(c.key);
        for (const op of ops) if (op.op === 'create' && revisionOf(op.key) !== 0) conflicts.add(op.key);
        if (conflicts.size > 0) return { succeeded: false, revision: currentRevision(), conflicts: [...conflicts] };
        const revision = applyWrites(
          ops.map((op): Write => (op.op === 'delete' ? { type: 'delete', key: op.key } : { type: 'put', key: op.key, value: op.value })),
        );
        return { succeeded: true, revision, conflicts: [] };
      });
    },

    async changesSince(prefix, afterRevision, limit): Promise<WatchEvent[]> {
      const after = Math.max(0, afterRevision);
      const compacted = stmt.getMeta.get('compact_revision') as number;
      if (after < compacted) {
        throw new StoreError('COMPACTED', `history before revision ${compacted + 1} has been compacted`);
      }
      const events: WatchEvent[] = [];
      for (const row of stmt.changesAfter.iterate(after, prefix, prefix)) {
        // A reader resumes after the last revision it saw, so a revision is returned whole or not at all.
        if (events.length >= limit && row.revision !== events.at(-1)?.revision) break;
        events.push({ type: row.type, key: row.key, value: row.value, revision: row.revision });
      }
      return events;
    },

    waitForChange(afterRevision, timeoutMs, signal) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (!db.open || currentRevision() > afterRevision) return Promise.resolve();
      // Only writes through this object are seen: the service process is the file's only writer.
      return waitForCommit(emitter, () => !db.open || currentRevision() > afterRevision, timeoutMs, signal);
    },

    async currentRevision() {
      return currentRevision();
    },

    async dump() {
      return listPrefix('');
    },

    async close() {
      if (!db.open) return;
      db.close();
      emitter.emit('close');
    },
  };
}
