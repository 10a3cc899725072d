// The klog store: one SQLite database (WAL) holding the zone's log records, searchable through an FTS5 index, pruned by
// age and row count; and the audit stream, an append-only, SHA-256 hash-chained table that SQLite itself refuses to
// rewrite. better-sqlite3 bundles its own SQLite, built with FTS5, so full-text search needs no fallback.
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { type AuditKind, LOG_LEVELS, type LogLevel } from '../../lib/api/klog.ts';

export const DEFAULT_RETENTION = {
  maxAgeMs: 14 * 24 * 3600 * 1000,
  maxRows: 2_000_000,
  pruneIntervalMs: 10 * 60 * 1000,
};

/** A retried batch can only come back while its shipper is still retrying; a day is far beyond any back-off. */
const BATCH_ID_TTL_MS = 24 * 3600 * 1000;
/** Rows deleted per transaction while pruning, so a large prune never holds the event loop for long. */
const PRUNE_BATCH = 5000;
const VERIFY_BATCH = 5000;
export const AUDIT_GENESIS_HASH = '0'.repeat(64);

const LEVEL_NUM: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

export interface LogRecord {
  ts: number;
  level: LogLevel;
  service: string;
  node: string;
  msg: string;
  trace?: string;
  fields?: Record<string, unknown>;
}

export interface StoredLogRecord extends LogRecord {
  id: number;
}

export interface LogQuery {
  service?: string;
  node?: string;
  levelMin?: LogLevel;
  text?: string;
  trace?: string;
  since?: number;
  until?: number;
  limit: number;
  beforeId?: number;
}

export interface TailQuery {
  /** Omitted: start at the current end. */
  afterId?: number;
  service?: string;
  node?: string;
  levelMin?: LogLevel;
  text?: string;
  limit: number;
}

export interface TailResult {
  records: StoredLogRecord[];
  /** Every record up to this id has been looked at; pass it as the next afterId. */
  lastId: number;
}

export interface AuditEventInput {
  kind: AuditKind;
  actor: string;
  target: string;
  detail: Record<string, unknown>;
  source: string;
}

export interface AuditEvent extends AuditEventInput {
  seq: number;
  ts: number;
  hash: string;
}

export interface AuditQuery {
  kind?: AuditKind;
  actor?: string;
  since?: number;
  limit: number;
  beforeSeq?: number;
}

export interface AuditVerifyResult {
  ok: boolean;
  count: number;
  firstBadSeq?: number;
  reason?: string;
  headHash: string;
}

export interface KlogStoreOptions {
  path: string;
  retention?: Partial<typeof DEFAULT_RETENTION>;
  /** Prune at open and then every retention.pruneIntervalMs (the service does; tests call prune() themselves). */
  autoPrune?: { onError: (err: unknown) => void };
}

export class KlogStoreClosedError extends Error {
  constructor() {
    super('klog store is closed');
    this.name = 'KlogStoreClosedError';
  }
}

/** RFC 8785 (JCS) form: keys sorted by UTF-16 code units at every depth, no whitespace, ECMAScript number and string
 * serialisation. The audit hash covers this form, so it does not depend on how a record happened to be serialised. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const parts = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function auditHash(prevHash: string, canonicalRecord: string): string {
  return createHash('sha256').update(prevHash, 'utf8').update(canonicalRecord, 'utf8').digest('hex');
}

/** Each word becomes a quoted FTS5 prefix term, so user input can never be FTS5 syntax (or a syntax error). NUL
 * separates words too: inside a quoted term it would end the query string early, leaving the quote unterminated. */
function ftsQuery(text: string): string {
  return text
    .split(/[\s\0]+/)
    .filter(Boolean)
    .map((w) => `"${w.replace(/"/g, '""')}"*`)
    .join(' ');
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL,
  level INTEGER NOT NULL,
  service TEXT NOT NULL,
  node TEXT NOT NULL,
  msg TEXT NOT NULL,
  trace TEXT,
  fields TEXT
);
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts);
CREATE INDEX IF NOT EXISTS logs_service ON logs(service, id);
CREATE INDEX IF NOT EXISTS logs_node ON logs(node, id);
CREATE INDEX IF NOT EXISTS logs_trace ON logs(trace) WHERE trace IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(msg, fields, content='logs', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS logs_fts_insert AFTER INSERT ON logs BEGIN
  INSERT INTO logs_fts(rowid, msg, fields) VALUES (new.id, new.msg, new.fields);
END;
CREATE TRIGGER IF NOT EXISTS logs_fts_delete AFTER DELETE ON logs BEGIN
  INSERT INTO logs_fts(logs_fts, rowid, msg, fields) VALUES ('delete', old.id, old.msg, old.fields);
END;
CREATE TABLE IF NOT EXISTS ingest_batches (batch_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ingest_batches_at ON ingest_batches(at);

CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  record TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_kind ON audit(json_extract(record, '$.kind'), seq);
CREATE INDEX IF NOT EXISTS audit_actor ON audit(json_extract(record, '$.actor'), seq);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN
  SELECT RAISE(ABORT, 'audit stream is append-only: UPDATE refused');
END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN
  SELECT RAISE(ABORT, 'audit stream is append-only: DELETE refused');
END;
-- INSERT OR REPLACE deletes the old row without firing delete triggers unless recursive_triggers is on; refusing any
-- insert that is not exactly the next seq closes that path on every connection.
CREATE TRIGGER IF NOT EXISTS audit_next_seq_only BEFORE INSERT ON audit
WHEN NEW.seq IS NULL OR NEW.seq <> (SELECT IFNULL(MAX(seq), 0) + 1 FROM audit) BEGIN
  SELECT RAISE(ABORT, 'audit stream is append-only: insert must take the next seq');
END;
`;

interface LogRow {
  id: number;
  ts: number;
  level: number;
  service: string;
  node: string;
  msg: string;
  trace: string | null;
  fields: string | null;
}

interface AuditRow {
  seq: number;
  ts: number;
  record: string;
  hash: string;
}

/** Builds a WHERE clause from the conditions whose value is given. */
function where(conds: [string, unknown][]): { sql: string; args: unknown[] } {
  const used = conds.filter(([, v]) => v !== undefined);
  return { sql: used.length ? `WHERE ${used.map(([c]) => c).join(' AND ')}` : '', args: used.map(([, v]) => v) };
}

function levelName(n: number): LogLevel {
  let name: LogLevel = 'trace';
  for (const l of LOG_LEVELS) if (LEVEL_NUM[l] <= n) name = l;
  return name;
}

function fromLogRow(r: LogRow): StoredLogRecord {
  const rec: StoredLogRecord = { id: r.id, ts: r.ts, level: levelName(r.level), service: r.service, node: r.node, msg: r.msg };
  if (r.trace !== null) rec.trace = r.trace;
  if (r.fields !== null) rec.fields = JSON.parse(r.fields) as Record<string, unknown>;
  return rec;
}

function fromAuditRow(r: AuditRow): AuditEvent {
  const rec = JSON.parse(r.record) as Omit<AuditEvent, 'hash'>;
  return { seq: r.seq, ts: r.ts, kind: rec.kind, actor: rec.actor, target: rec.target, detail: rec.detail, source: rec.source, hash: r.hash };
}

interface Waiter {
  afterId: number;
  wake: () => void;
}

export class KlogStore {
  private readonly db: Database.Database;
  private readonly retention: typeof DEFAULT_RETENTION;
  private readonly waiters = new Set<Waiter>();
  private readonly pruneTimer: NodeJS.Timeout | undefined;
  private lastId: number;
  private closed = false;
  private pruning: Promise<number> | null = null;

  constructor(opts: KlogStoreOptions) {
    mkdirSync(dirname(opts.path), { recursive: true, mode: 0o750 });
    this.db = new Database(opts.path);
    this.db.pragma('journal_mode = WAL');
    // FULL: an append is acknowledged only once on disk, because a shipper advances its offsets on that answer and an
    // audit event must survive a power cut. Shipped batches are large, so the fsync per call costs little.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('recursive_triggers = ON');
    // IF NOT EXISTS also restores audit triggers someone dropped while the service was down.
    this.db.exec(SCHEMA);
    this.retention = { ...DEFAULT_RETENTION, ...opts.retention };
    const seq = this.db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'logs'`).get() as { seq: number } | undefined;
    this.lastId = seq?.seq ?? 0;
    const auto = opts.autoPrune;
    if (auto) {
      const run = () => void this.prune().catch((err) => (this.closed ? undefined : auto.onError(err)));
      // At open too: a service that was down longer than the interval catches up at once.
      setImmediate(run);
      this.pruneTimer = setInterval(run, this.retention.pruneIntervalMs);
      this.pruneTimer.unref();
    }
  }

  private open(): Database.Database {
    if (this.closed) throw new KlogStoreClosedError();
    return this.db;
  }

  /** Stores records in one transaction. With a batchId seen in the last day, stores nothing and says so. */
  append(records: LogRecord[], batchId?: string): { accepted: number; duplicate: boolean } {
    const db = this.open();
    const insert = db.prepare('INSERT INTO logs (ts, level, service, node, msg, trace, fields) VALUES (?, ?, ?, ?, ?, ?, ?)');
    const claim = db.prepare('INSERT OR IGNORE INTO ingest_batches (batch_id, at) VALUES (?, ?)');
    const newest = db.transaction((): number | null => {
      if (batchId !== undefined && claim.run(batchId, Date.now()).changes === 0) return null;
      let id = this.lastId;
      for (const r of records) {
        const info = insert.run(r.ts, LEVEL_NUM[r.level], r.service, r.node, r.msg, r.trace ?? null, r.fields === undefined ? null : JSON.stringify(r.fields));
        id = Number(info.lastInsertRowid);
      }
      return id;
    })();
    if (newest === null) return { accepted: 0, duplicate: true };
    this.lastId = newest;
    if (records.length > 0) this.wakeWaiters();
    return { accepted: records.length, duplicate: false };
  }

  query(q: LogQuery): StoredLogRecord[] {
    const { sql, args } = where([
      ['service = ?', q.service],
      ['node = ?', q.node],
      ['level >= ?', q.levelMin && LEVEL_NUM[q.levelMin]],
      ['trace = ?', q.trace],
      ['ts >= ?', q.since],
      ['ts <= ?', q.until],
      ['id < ?', q.beforeId],
      ['id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)', (q.text && ftsQuery(q.text)) || undefined],
    ]);
    const rows = this.open().prepare(`SELECT * FROM logs ${sql} ORDER BY id DESC LIMIT ?`).all(...args, q.limit) as LogRow[];
    return rows.map(fromLogRow);
  }

  tail(q: TailQuery): TailResult {
    const after = q.afterId ?? this.lastId;
    const { sql, args } = where([
      ['id > ?', after],
      ['service = ?', q.service],
      ['node = ?', q.node],
      ['level >= ?', q.levelMin && LEVEL_NUM[q.levelMin]],
      ['id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)', (q.text && ftsQuery(q.text)) || undefined],
    ]);
    const rows = this.open().prepare(`SELECT * FROM logs ${sql} ORDER BY id ASC LIMIT ?`).all(...args, q.limit) as LogRow[];
    const records = rows.map(fromLogRow);
    // A short page scanned everything up to the newest row, so filtered-out rows need not be scanned again.
    const lastId = records.length === q.limit ? records[records.length - 1].id : Math.max(after, this.lastId);
    return { records, lastId };
  }

  /** Resolves once a record with id > afterId exists, after timeoutMs, or when the store closes. */
  waitForAppend(afterId: number, timeoutMs: number): Promise<void> {
    if (this.closed || this.lastId > afterId || timeoutMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: Waiter = {
        afterId,
        wake: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  private wakeWaiters(): void {
    for (const w of [...this.waiters]) if (this.closed || this.lastId > w.afterId) w.wake();
  }

  /** Deletes records older than the age limit and the oldest beyond the row limit; returns how many went. */
  prune(): Promise<number> {
    this.pruning ??= this.pruneInBatches().finally(() => {
      this.pruning = null;
    });
    return this.pruning;
  }

  private async pruneInBatches(): Promise<number> {
    const db = this.open();
    const cutoff = Date.now() - this.retention.maxAgeMs;
    const byAge = db.prepare('DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE ts < ? ORDER BY id LIMIT ?)');
    const newestBeyondLimit = db.prepare('SELECT id FROM logs ORDER BY id DESC LIMIT 1 OFFSET ?');
    const byCount = db.prepare('DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE id <= ? ORDER BY id LIMIT ?)');
    let deleted = 0;
    const drain = async (run: () => number) => {
      for (;;) {
        if (this.closed) return;
        const n = run();
        deleted += n;
        if (n < PRUNE_BATCH) return;
        await new Promise<void>((r) => setImmediate(r));
      }
    };
    await drain(() => byAge.run(cutoff, PRUNE_BATCH).changes);
    const edge = newestBeyondLimit.get(this.retention.maxRows) as { id: number } | undefined;
    if (edge) await drain(() => byCount.run(edge.id, PRUNE_BATCH).changes);
    if (!this.closed) db.prepare('DELETE FROM ingest_batches WHERE at < ?').run(Date.now() - BATCH_ID_TTL_MS);
    return deleted;
  }

  /** Appends one event to the chain: hash = sha256(prev_hash || canonical record), with the record's seq and ts in it. */
  auditAppend(ev: AuditEventInput): AuditEvent {
    const db = this.open();
    const head = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
    const insert = db.prepare('INSERT INTO audit (seq, ts, record, hash) VALUES (?, ?, ?, ?)');
    // IMMEDIATE: take the write lock before reading the head, so two writers can never chain onto the same head.
    return db.transaction(() => {
      const prev = head.get() as { seq: number; hash: string } | undefined;
      const seq = (prev?.seq ?? 0) + 1;
      const ts = Date.now();
      // A JSON round trip first, so what is hashed is exactly what a later reader parses back.
      const record = JSON.parse(JSON.stringify({ seq, ts, kind: ev.kind, actor: ev.actor, target: ev.target, detail: ev.detail, source: ev.source })) as Omit<AuditEvent, 'hash'>;
      const canonical = canonicalJson(record);
      const hash = auditHash(prev?.hash ?? AUDIT_GENESIS_HASH, canonical);
      insert.run(seq, ts, canonical, hash);
      return { ...record, hash };
    }).immediate();
  }

  auditQuery(q: AuditQuery): AuditEvent[] {
    const { sql, args } = where([
      [`json_extract(record, '$.kind') = ?`, q.kind],
      [`json_extract(record, '$.actor') = ?`, q.actor],
      ['ts >= ?', q.since],
      ['seq < ?', q.beforeSeq],
    ]);
    const rows = this.open().prepare(`SELECT * FROM audit ${sql} ORDER BY seq DESC LIMIT ?`).all(...args, q.limit) as AuditRow[];
    return rows.map(fromAuditRow);
  }

  /** Recomputes the whole chain from the genesis hash; reports the first seq whose row is missing, altered or
   * misplaced. Works in batches, yielding between them, so a long stream does not stall the service. */
  async verify(): Promise<AuditVerifyResult> {
    const page = (after: number) => this.open().prepare('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?').all(after, VERIFY_BATCH) as AuditRow[];
    let prevHash = AUDIT_GENESIS_HASH;
    let expected = 1;
    const count = () => (this.open().prepare('SELECT COUNT(*) AS n FROM audit').get() as { n: number }).n;
    const bad = (seq: number, reason: string): AuditVerifyResult => ({ ok: false, count: count(), firstBadSeq: seq, reason, headHash: prevHash });
    for (;;) {
      const rows = page(expected - 1);
      for (const row of rows) {
        if (row.seq !== expected) return bad(expected, `event ${expected} is missing`);
        let record: { seq?: unknown; ts?: unknown };
        try {
          record = JSON.parse(row.record) as typeof record;
        } catch {
          return bad(row.seq, `event ${row.seq} is not valid JSON`);
        }
        if (record.seq !== row.seq || record.ts !== row.ts) return bad(row.seq, `event ${row.seq}: seq or ts column differs from the hashed record`);
        const hash = auditHash(prevHash, canonicalJson(record));
        if (hash !== row.hash) return bad(row.seq, `event ${row.seq}: hash does not match its content and the previous hash`);
        prevHash = hash;
        expected++;
      }
      if (rows.length < VERIFY_BATCH) return { ok: true, count: expected - 1, headHash: prevHash };
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  stats(): { last_id: number; audit_seq: number } {
    const head = this.open().prepare('SELECT MAX(seq) AS seq FROM audit').get() as { seq: number | null };
    return { last_id: this.lastId, audit_seq: head.seq ?? 0 };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.wakeWaiters();
    this.db.close();
  }
}
