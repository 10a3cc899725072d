// The part of system-config verify-hub needs. The typed system-config client satisfies it as is, so the store can be
// SQLite or etcd behind the service, or memory in unit tests, without verify-hub knowing.
import { KrpcError } from '../../lib/krpc/index.ts';

export type KvTxOp =
  | { op: 'put'; key: string; value: string }
  | { op: 'create'; key: string; value: string }
  | { op: 'delete'; key: string };

export interface KvEntry {
  key: string;
  value: string;
  revision: number;
}

export interface KvStore {
  /** A missing key answers value null and revisions 0. `create_revision` is the revision at which the key was last
   * created, so it tells a key deleted and created again from one that was only updated. */
  get(params: { key: string }): Promise<{ value: string | null; revision: number; create_revision: number }>;
  /** With expect_revision the write happens only at that revision (0: absent), else KrpcError CONFLICT. */
  set(params: { key: string; value: string; expect_revision?: number }): Promise<{ revision: number }>;
  /** KrpcError NOT_FOUND when absent, CONFLICT when expect_revision does not hold. */
  delete(params: { key: string; expect_revision?: number }): Promise<{ revision: number }>;
  /** At most `limit` entries, sorted by key (values empty with keys_only); there is no way to start after a key,
   * hence `listAll`. */
  list(params: { prefix: string; limit?: number; keys_only?: boolean }): Promise<{ entries: KvEntry[] }>;
  exec_tx(params: {
    compares?: { key: string; revision: number }[];
    ops: KvTxOp[];
  }): Promise<{ succeeded: boolean; conflicts: string[] }>;
}

/** system-config's limits: a listing answers at most this many keys, a transaction holds at most this many ops. */
export const KV_LIST_LIMIT = 10_000;
export const KV_TX_MAX_OPS = 128;

/** The KvStore semantics of system-config, in memory. */
export class MemoryKv implements KvStore {
  private readonly data = new Map<string, { value: string; revision: number; created: number }>();
  private revision = 0;

  async get({ key }: { key: string }) {
    const e = this.data.get(key);
    return { value: e?.value ?? null, revision: e?.revision ?? 0, create_revision: e?.created ?? 0 };
  }

  private put(key: string, value: string, revision: number): void {
    this.data.set(key, { value, revision, created: this.data.get(key)?.created ?? revision });
  }

  async set({ key, value, expect_revision }: { key: string; value: string; expect_revision?: number }) {
    if (expect_revision !== undefined && (this.data.get(key)?.revision ?? 0) !== expect_revision) {
      throw new KrpcError('CONFLICT', `key "${key}" is not at revision ${expect_revision}`);
    }
    this.put(key, value, ++this.revision);
    return { revision: this.revision };
  }

  async delete({ key, expect_revision }: { key: string; expect_revision?: number }) {
    const e = this.data.get(key);
    if (!e) throw new KrpcError('NOT_FOUND', `key "${key}" does not exist`);
    if (expect_revision !== undefined && e.revision !== expect_revision) {
      throw new KrpcError('CONFLICT', `key "${key}" is not at revision ${expect_revision}`);
    }
    this.data.delete(key);
    return { revision: ++this.revision };
  }

  async list({ prefix, limit = 1000, keys_only = false }: { prefix: string; limit?: number; keys_only?: boolean }) {
    const entries = [...this.data]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, limit)
      .map(([key, e]) => ({ key, value: keys_only ? '' : e.value, revision: e.revision }));
    return { entries };
  }

  async exec_tx({ compares = [], ops }: { compares?: { key: string; revision: number }[]; ops: KvTxOp[] }) {
    if (new Set(ops.map((o) => o.key)).size !== ops.length) throw new Error('transaction writes a key more than once');
    const conflicts = compares.filter((c) => (this.data.get(c.key)?.revision ?? 0) !== c.revision).map((c) => c.key);
    for (const op of ops) if (op.op === 'create' && this.data.has(op.key)) conflicts.push(op.key);
    if (conflicts.length > 0) return { succeeded: false, conflicts };
    const revision = ++this.revision;
    for (const op of ops) {
      if (op.op === 'delete') this.data.delete(op.key);
      else this.put(op.key, op.value, revision);
    }
    return { succeeded: true, conflicts: [] };
  }
}

/** Every character a system-config key may hold, in the order listings sort them (code units). */
const KEY_CHARS = '-./0123456789:@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';

interface ListAllOptions {
  keysOnly?: boolean;
  /** The most a listing answers; system-config's limit unless a test makes pages small. */
  pageSize?: number;
}

/**
 * Every entry under `prefix`, sorted, however many there are. A listing answers one page and cannot start after a
 * key, so a full page is listed again one character narrower, under each character a key can continue with: the
 * usual case costs one call, and only the crowded parts of the key space are split further. A short page is taken
 * as complete, which holds for a caller that may read every key (system-config leaves out unreadable ones), as
 * verify-hub, a kernel service, may.
 */
export async function listAll(kv: KvStore, prefix: string, opts: ListAllOptions = {}): Promise<KvEntry[]> {
  const out: KvEntry[] = [];
  await collect(kv, prefix, { keysOnly: opts.keysOnly ?? false, pageSize: opts.pageSize ?? KV_LIST_LIMIT }, out);
  return out;
}

async function collect(kv: KvStore, prefix: string, opts: Required<ListAllOptions>, out: KvEntry[]): Promise<void> {
  const { keysOnly, pageSize } = opts;
  const segment = prefix.slice(prefix.lastIndexOf('/') + 1);
  // system-config refuses a prefix ending in a "." or ".." segment, yet keys may go on from it ("a/.b"): such a
  // prefix is split without being listed. No key equals it, since keys have no dot segments.
  const listable = segment !== '.' && segment !== '..';
  if (listable) {
    const { entries } = await kv.list({ prefix, limit: pageSize, keys_only: keysOnly });
    if (entries.length < pageSize) {
      out.push(...entries);
      return;
    }
    // The prefix itself, when it is a key, sorts first and belongs to no narrower prefix.
    if (entries[0]!.key === prefix) out.push(entries[0]!);
  }
  for (const c of KEY_CHARS) {
    // Keys have no empty and no dot segments.
    if (c === '/' && (segment === '' || !listable)) continue;
    await collect(kv, prefix + c, opts, out);
  }
}

export function isKrpcCode(err: unknown, code: string): boolean {
  return err instanceof KrpcError && err.code === code;
}
