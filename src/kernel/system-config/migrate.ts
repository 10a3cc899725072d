// Moves system-config from one backend to another (SQLite → etcd when the zone gets three core nodes, and back):
// every key and value, copied in transactions and then compared in full, so a migration either loses nothing or
// fails loudly. The caller keeps the source read-only for the duration (the service refuses writes meanwhile).
//
// Revisions are not carried over: each store numbers its own history, and etcd cannot be told which revision to use.
// The copy's batches appear in the target's history as creates, at target revisions up to `targetRevision`. A watcher
// holding a revision from the source therefore cannot resume on the target: the number means nothing there. If it lies
// beyond the target's revision the watcher waits and misses every change until the target reaches it; if it lies
// within, the watcher sees copied creates but not the deletes it missed. The cutover must make every watcher re-list,
// as after a compaction (COMPACTED → list → resume from the listing's revision). Since a number alone cannot say which
// store it came from, the service needs to know of the cutover: watches below `targetRevision` are certainly stale,
// and the others must be recognised by something other than their number (see docs/etcd-control.md).
import type { ConfigEntry, ConfigStore, TxOp } from './store.ts';

export interface CopyOptions {
  /** Keys per transaction; default 128, the most system-config and etcd accept in one transaction. */
  batchOps?: number;
  /** Key and value bytes per transaction; default 1 MiB, under etcd's 1.5 MiB request limit. A larger entry goes
   * alone. */
  batchBytes?: number;
  /** Called after each batch, for progress output. */
  onProgress?: (copied: number, total: number) => void;
}

export interface CopyResult {
  keys: number;
  /** UTF-8 bytes of all values. */
  bytes: number;
  /** The source's revision, unchanged from start to end of the copy. */
  sourceRevision: number;
  /** The target's revision once the copy was verified: the first revision a watcher may resume from on the target. */
  targetRevision: number;
}

const DEFAULT_BATCH_OPS = 128;
const DEFAULT_BATCH_BYTES = 1024 * 1024;
const MAX_REPORTED_DIFFERENCES = 5;

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

function entryBytes(e: ConfigEntry): number {
  return Buffer.byteLength(e.key, 'utf8') + Buffer.byteLength(e.value, 'utf8');
}

/** Splits entries into transactions of at most `maxOps` keys and, unless one entry alone is larger, `maxBytes`. */
function batches(entries: ConfigEntry[], maxOps: number, maxBytes: number): ConfigEntry[][] {
  const out: ConfigEntry[][] = [];
  let current: ConfigEntry[] = [];
  let size = 0;
  for (const e of entries) {
    const bytes = entryBytes(e);
    if (current.length > 0 && (current.length >= maxOps || size + bytes > maxBytes)) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(e);
    size += bytes;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function describeValue(value: string): string {
  return `${Buffer.byteLength(value, 'utf8')} bytes`;
}

/**
 * Compares the full contents of two stores, keys and values (revisions differ by design), and throws an error naming
 * the first differences when they are not the same. Pass `expected` when the source's contents were already read.
 */
export async function verifyCopy(from: ConfigStore, to: ConfigStore, expected?: ConfigEntry[]): Promise<void> {
  const source = expected ?? (await from.dump()).entries;
  const target = new Map((await to.dump()).entries.map((e) => [e.key, e.value]));
  const differences: string[] = [];
  let count = 0;
  const note = (text: string): void => {
    count++;
    if (differences.length < MAX_REPORTED_DIFFERENCES) differences.push(text);
  };
  for (const e of source) {
    const value = target.get(e.key);
    if (value === undefined) note(`${e.key} is missing from the target`);
    else if (value !== e.value) note(`${e.key} differs (source ${describeValue(e.value)}, target ${describeValue(value)})`);
    target.delete(e.key);
  }
  for (const key of target.keys()) note(`${key} is in the target but not in the source`);
  if (count > 0) {
    const more = count > differences.length ? `; and ${count - differences.length} more` : '';
    throw new Error(`system-config copy differs from its source in ${count} key(s): ${differences.join('; ')}${more}`);
  }
}

/** Copies every key of `from` into the empty store `to`, verifies the result, and reports what was copied. */
export async function copyStore(from: ConfigStore, to: ConfigStore, opts: CopyOptions = {}): Promise<CopyResult> {
  const maxOps = positiveInteger('batchOps', opts.batchOps ?? DEFAULT_BATCH_OPS);
  const maxBytes = positiveInteger('batchBytes', opts.batchBytes ?? DEFAULT_BATCH_BYTES);

  const occupied = await to.list('', 1);
  if (occupied.entries.length > 0) {
    throw new Error(`the target store is not empty (it holds ${JSON.stringify(occupied.entries[0].key)}); a copy needs an empty one`);
  }

  const snapshot = await from.dump();
  const entries = snapshot.entries;
  let copied = 0;
  for (const batch of batches(entries, maxOps, maxBytes)) {
    // `create`, not `put`: a key that appeared in the target meanwhile fails the batch instead of being overwritten.
    const ops: TxOp[] = batch.map((e) => ({ op: 'create', key: e.key, value: e.value }));
    const first = batch[0].key;
    const last = batch[batch.length - 1].key;
    let res;
    try {
      res = await to.execTx([], ops);
    } catch (err) {
      throw new Error(`copying keys ${first} .. ${last} failed after ${copied} of ${entries.length} keys: ${(err as Error).message}`);
    }
    if (!res.succeeded) {
      throw new Error(`the target store changed during the copy: ${res.conflicts.join(', ')} appeared there before being copied`);
    }
    copied += batch.length;
    opts.onProgress?.(copied, entries.length);
  }

  const sourceRevision = await from.currentRevision();
  if (sourceRevision !== snapshot.revision) {
    // Which keys, so that whoever wrote past the read-only mode can be found.
    const changed = await from.changesSince('', snapshot.revision, 10).then(
      (evs) => (evs.length > 0 ? `: ${[...new Set(evs.map((e) => e.key))].join(', ')}` : ' (outside its keys)'),
      () => '',
    );
    throw new Error(
      `the source store changed during the copy (revision ${snapshot.revision} → ${sourceRevision})${changed}; ` +
        'stop writes to system-config (read-only mode) and copy into an empty store again',
    );
  }
  await verifyCopy(from, to, entries);
  return {
    keys: entries.length,
    bytes: entries.reduce((sum, e) => sum + Buffer.byteLength(e.value, 'utf8'), 0),
    sourceRevision,
    targetRevision: await to.currentRevision(),
  };
}
