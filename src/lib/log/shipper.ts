// node_daemon's log shipper: tails every `<logsDir>/<service>/*.log` pino file, rotated ones included, and sends the
// lines to klog in batches. Delivery is exactly once across restarts and failed sends:
// - a file is known by its inode (rotation creates new files and deletes old ones, it never renames), with a
//   fingerprint of its first bytes so an inode reused by a later file is not mistaken for the old one;
// - before a batch is sent, its id and end offsets are written (atomically) to the state file as "in flight"; offsets
//   advance only once the send succeeds; after a restart the in-flight batch is rebuilt from exactly those byte
//   ranges and resent under the same id, and klog drops a batch id it has already stored (`append.batch_id`).
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  KLOG_MAX_FIELDS_BYTES, KLOG_MAX_JSON_DEPTH, KLOG_MAX_MSG_CHARS, KLOG_MAX_RECORDS_PER_APPEND, LOG_LEVELS, type LogLevel,
  type LogRecordIn,
} from '../api/klog.ts';
import { jsonDepthWithin } from '../krpc/index.ts';
import { writeFileAtomic } from '../identity/keys.ts';

export interface LogShipperOptions {
  logsDir: string;
  node: string;
  /** Delivers one batch; the batch id is the same on every retry of that batch, so pass it to `klog.append`. */
  send: (records: LogRecordIn[], batchId: string) => Promise<void>;
  stateFile: string;
  /** How often to look for new lines when idle; also the first retry delay. */
  intervalMs?: number;
  maxBackoffMs?: number;
  log?: Logger;
}

export interface LogShipper {
  /** Ships everything written so far; rejects if a send fails (the batch stays queued for the next attempt). */
  flush(): Promise<void>;
  /** Stops after the batch in progress; nothing is lost, the next start resumes from the state file. */
  stop(): Promise<void>;
}

/** Raw line bytes per batch: far below klog's body limit, and small enough that one send is quick. */
const BATCH_BYTES = 1024 * 1024;
const FINGERPRINT_BYTES = 256;
/** A rotated file idle this long gets no more writes, so a final line without a newline (a crash mid-write) ships. */
const ROTATED_QUIET_MS = 5000;
const TRACE = /^[A-Za-z0-9_-]{1,64}$/;
const EMPTY_FINGERPRINT = createHash('sha256').digest('hex');

const filePos = z.object({ path: z.string(), offset: z.number().int().nonnegative(), fpLen: z.number().int().nonnegative(), fp: z.string() });
type FilePos = z.infer<typeof filePos>;

const stateSchema = z.object({
  version: z.literal(1),
  /** Random per state file, so batch ids from different nodes or a recreated state never collide. */
  stream: z.string(),
  next_batch: z.number().int().nonnegative(),
  /** Committed read positions, by `<dev>:<inode>`. */
  files: z.record(z.string(), filePos),
  inflight: z.object({ id: z.string(), ends: z.record(z.string(), filePos) }).optional(),
});
type ShipperState = z.infer<typeof stateSchema>;

interface SeenFile {
  key: string;
  path: string;
  service: string;
  size: number;
  mtimeMs: number;
  /** Not the newest file of its service: the logger has moved on to another file. */
  rotated: boolean;
}

interface Batch {
  id: string;
  records: LogRecordIn[];
  ends: Record<string, FilePos>;
}

function levelOf(v: unknown): LogLevel {
  if (typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  if (typeof v !== 'number') return 'info';
  // pino's numbers: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal; custom levels fall to the one below.
  return LOG_LEVELS[Math.max(0, Math.min(LOG_LEVELS.length - 1, Math.floor(v / 10) - 1))];
}

function timeOf(v: unknown): number {
  const t = typeof v === 'number' ? v : typeof v === 'string' ? Date.parse(v) : NaN;
  return Number.isFinite(t) && t >= 0 ? Math.trunc(t) : Date.now();
}

/** Fits a record inside klog's bounds, so no line can make a batch fail validation and block shipping forever. */
function bounded(r: LogRecordIn): LogRecordIn {
  if (r.msg.length > KLOG_MAX_MSG_CHARS) r.msg = `${r.msg.slice(0, KLOG_MAX_MSG_CHARS - 1)}…`;
  if (r.fields && !jsonDepthWithin(r.fields, KLOG_MAX_JSON_DEPTH)) {
    r.fields = { fields_truncated: true, nested_deeper_than: KLOG_MAX_JSON_DEPTH };
  }
  if (r.fields) {
    const bytes = Buffer.byteLength(JSON.stringify(r.fields));
    if (bytes > KLOG_MAX_FIELDS_BYTES) r.fields = { fields_truncated: true, original_bytes: bytes };
  }
  return r;
}

/** One pino JSON line to a klog record; anything else is shipped whole as an info message. */
export function lineToRecord(line: string, service: string, node: string): LogRecordIn {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return bounded({ ts: Date.now(), level: 'info', service, node, msg: line });
  }
  const rest: Record<string, unknown> = { ...(parsed as Record<string, unknown>) };
  const rec: LogRecordIn = {
    ts: timeOf(rest.time),
    level: levelOf(rest.level),
    service,
    node,
    msg: typeof rest.msg === 'string' ? rest.msg : rest.msg === undefined ? '' : JSON.stringify(rest.msg),
  };
  // The directory names the service; the line's own `service` is the same base binding and would only repeat it.
  for (const k of ['time', 'level', 'msg', 'service']) delete rest[k];
  if (typeof rest.trace === 'string' && TRACE.test(rest.trace)) {
    rec.trace = rest.trace;
    delete rest.trace;
  }
  if (Object.keys(rest).length > 0) rec.fields = rest;
  return bounded(rec);
}

/**
 * Splits complete lines off the front of `buf`, at most `room` non-blank ones. A trailing piece without a newline is
 * taken only when `takePartial` says no newline is coming: a line longer than a whole batch, or the end of a rotated
 * file. `consumed` counts blank lines too, so the offset moves past them.
 */
function takeLines(buf: Buffer, room: number, takePartial: boolean): { lines: string[]; consumed: number } {
  const lines: string[] = [];
  let consumed = 0;
  while (lines.length < room && consumed < buf.length) {
    const nl = buf.indexOf(0x0a, consumed);
    if (nl === -1) {
      if (takePartial) {
        lines.push(buf.subarray(consumed).toString('utf8'));
        consumed = buf.length;
      }
      break;
    }
    const line = buf.subarray(consumed, nl).toString('utf8');
    consumed = nl + 1;
    if (line.trim() !== '') lines.push(line);
  }
  return { lines, consumed };
}

async function readRange(path: string, start: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, start);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function fingerprint(path: string, length: number): Promise<string> {
  if (length === 0) return EMPTY_FINGERPRINT;
  return createHash('sha256').update(await readRange(path, 0, length)).digest('hex');
}

function loadState(path: string, log?: Logger): ShipperState {
  const fresh = (): ShipperState => ({ version: 1, stream: randomUUID(), next_batch: 0, files: {} });
  if (!existsSync(path)) return fresh();
  try {
    return stateSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
  } catch (err) {
    // Starting over re-ships the files still on disk (duplicates) but loses nothing; refusing to ship would lose all.
    log?.warn({ err, path }, 'log shipper state file unreadable; starting from the beginning of every log file');
    return fresh();
  }
}

export function createLogShipper(opts: LogShipperOptions): LogShipper {
  const intervalMs = opts.intervalMs ?? 1000;
  const maxBackoffMs = opts.maxBackoffMs ?? 30_000;
  const state = loadState(opts.stateFile, opts.log);
  /** Key → path at which the committed position was last checked against the file's fingerprint in this process. */
  const checked = new Map<string, string>();
  const unreadable = new Set<string>();
  let pending: Batch | null = null;
  let failures = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<unknown> = Promise.resolve();

  const save = () => writeFileAtomic(opts.stateFile, JSON.stringify(state), 0o600);

  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = chain.then(fn);
    chain = run.catch(() => undefined);
    return run;
  }

  async function scan(): Promise<SeenFile[]> {
    let dirs;
    try {
      dirs = await readdir(opts.logsDir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: SeenFile[] = [];
    for (const d of dirs) {
      if (!d.isDirectory()) continue;
      const dir = join(opts.logsDir, d.name);
      const files: SeenFile[] = [];
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (!name.endsWith('.log')) continue;
        const path = join(dir, name);
        const st = await stat(path).catch(() => null);
        if (!st?.isFile()) continue;
        files.push({ key: `${st.dev}:${st.ino}`, path, service: d.name.slice(0, 64), size: st.size, mtimeMs: st.mtimeMs, rotated: false });
      }
      files.sort((a, b) => a.mtimeMs - b.mtimeMs || a.path.localeCompare(b.path, undefined, { numeric: true }));
      files.forEach((f, i) => (f.rotated = i < files.length - 1));
      out.push(...files);
    }
    const present = new Set(out.map((f) => f.key));
    for (const key of Object.keys(state.files)) {
      if (!present.has(key)) {
        delete state.files[key];
        checked.delete(key);
      }
    }
    return out;
  }

  /** The committed position in a file, after making sure the inode still holds the file the position was taken in. */
  async function positionOf(f: SeenFile): Promise<FilePos> {
    const known = state.files[f.key];
    if (known && checked.get(f.key) === f.path && f.size >= known.offset) return known;
    const same = known !== undefined && f.size >= known.offset && (await fingerprint(f.path, known.fpLen)) === known.fp;
    const pos = same ? { ...known, path: f.path } : { path: f.path, offset: 0, fpLen: 0, fp: EMPTY_FINGERPRINT };
    state.files[f.key] = pos;
    checked.set(f.key, f.path);
    return pos;
  }

  async function advance(pos: FilePos, consumed: number): Promise<FilePos> {
    const offset = pos.offset + consumed;
    if (pos.fpLen >= FINGERPRINT_BYTES || pos.fpLen >= offset) return { ...pos, offset };
    const fpLen = Math.min(offset, FINGERPRINT_BYTES);
    return { path: pos.path, offset, fpLen, fp: await fingerprint(pos.path, fpLen) };
  }

  async function buildBatch(files: SeenFile[]): Promise<Batch | null> {
    const records: LogRecordIn[] = [];
    const ends: Record<string, FilePos> = {};
    let bytes = 0;
    for (const f of files) {
      if (records.length >= KLOG_MAX_RECORDS_PER_APPEND || bytes >= BATCH_BYTES) break;
      const pos = await positionOf(f);
      const available = f.size - pos.offset;
      if (available <= 0) continue;
      const want = Math.min(available, BATCH_BYTES - bytes);
      let buf: Buffer;
      try {
        buf = await readRange(f.path, pos.offset, want);
      } catch (err) {
        if (!unreadable.has(f.key)) opts.log?.warn({ err, path: f.path }, 'log shipper cannot read a log file; skipping it');
        unreadable.add(f.key);
        continue;
      }
      unreadable.delete(f.key);
      const noMoreComing = want === BATCH_BYTES || (f.rotated && want === available && Date.now() - f.mtimeMs > ROTATED_QUIET_MS);
      const { lines, consumed } = takeLines(buf, KLOG_MAX_RECORDS_PER_APPEND - records.length, noMoreComing);
      // A line that does not fit what is left of this batch starts the next one.
      if (consumed === 0) {
        if (want < available) break;
        continue;
      }
      for (const line of lines) records.push(lineToRecord(line, f.service, opts.node));
      bytes += consumed;
      ends[f.key] = await advance(pos, consumed);
    }
    if (Object.keys(ends).length === 0) return null;
    return { id: `${state.stream}:${state.next_batch}`, records, ends };
  }

  /** The batch that was in flight when the previous run stopped: the same byte ranges, so the same lines. */
  async function rebuildInflight(inflight: NonNullable<ShipperState['inflight']>, files: SeenFile[]): Promise<Batch> {
    const byKey = new Map(files.map((f) => [f.key, f]));
    const records: LogRecordIn[] = [];
    const ends: Record<string, FilePos> = {};
    for (const [key, end] of Object.entries(inflight.ends)) {
      const f = byKey.get(key);
      // Deleted by rotation while the shipper was down: those lines are gone with the file.
      if (!f) continue;
      const pos = await positionOf(f);
      if (end.offset <= pos.offset || f.size < end.offset) continue;
      const buf = await readRange(f.path, pos.offset, end.offset - pos.offset);
      for (const line of takeLines(buf, Infinity, true).lines) records.push(lineToRecord(line, f.service, opts.node));
      ends[key] = { ...end, path: f.path };
    }
    return { id: inflight.id, records, ends };
  }

  function commit(batch: Batch): void {
    Object.assign(state.files, batch.ends);
    delete state.inflight;
    save();
  }

  /** One step: build (or rebuild) a batch if none is queued, send it, commit. 'idle' when there was nothing new. */
  async function shipOnce(): Promise<'idle' | 'shipped'> {
    if (!pending) {
      const files = await scan();
      const batch = state.inflight ? await rebuildInflight(state.inflight, files) : await buildBatch(files);
      if (!batch) return 'idle';
      if (batch.records.length === 0) {
        commit(batch);
        return 'shipped';
      }
      if (!state.inflight) {
        state.inflight = { id: batch.id, ends: batch.ends };
        state.next_batch++;
        save();
      }
      pending = batch;
    }
    await opts.send(pending.records, pending.id);
    commit(pending);
    pending = null;
    return 'shipped';
  }

  async function loop(): Promise<void> {
    if (stopped) return;
    let delay = intervalMs;
    try {
      delay = (await exclusive(shipOnce)) === 'shipped' ? 0 : intervalMs;
      if (failures > 0) opts.log?.info({ failures }, 'log shipping recovered');
      failures = 0;
    } catch (err) {
      if (failures === 0) opts.log?.warn({ err }, 'log shipping failed; retrying with back-off');
      failures++;
      const backoff = Math.min(maxBackoffMs, intervalMs * 2 ** Math.min(failures, 20));
      // Jitter, so the shippers of a whole zone do not retry in step after a klog restart.
      delay = backoff / 2 + Math.random() * (backoff / 2);
    }
    if (!stopped) timer = setTimeout(() => void loop(), delay);
  }

  timer = setTimeout(() => void loop(), 0);

  return {
    async flush() {
      while ((await exclusive(shipOnce)) === 'shipped');
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await chain;
    },
  };
}
