// The part of system-config verify-hub needs. The typed system-config client satisfies it as is, so the store can be
// SQLite or etcd behind the service, or memory in unit tests, without verify-hub knowing.
import { KrpcError } from '../../lib/krpc/index.ts';
import { type ListAllOptions, LIST_PAGE_MAX, listAll as listAllKeys } from '../../lib/config/list-all.ts';

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
  /** At most `limit` entries, sorted by key (values empty with keys_only), and whether the store held more; there is
   * no way to start after a key, hence `listAll`. */
  list(params: { prefix: string; limit?: number; keys_only?: boolean }): Promise<{ entries: KvEntry[]; more: boolean }>;
  exec_tx(params: {
    compares?: { key: string; revision: number }[];
    ops: KvTxOp[];
  }): Promise<{ succeeded: boolean; conflicts: string[] }>;
}

/** system-config's limits: a listing answers at most this many keys, a transaction holds at most this many ops. */
export const KV_LIST_LIMIT = LIST_PAGE_MAX;
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
    const under = [...this.data].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const entries = under.slice(0, limit).map(([key, e]) => ({ key, value: keys_only ? '' : e.value, revision: e.revision }));
    return { entries, more: under.length > limit };
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

/** Every entry under `prefix`, sorted, however many there are (lib/config/list-all.ts). */
export function listAll(kv: KvStore, prefix: string, opts: ListAllOptions = {}): Promise<KvEntry[]> {
  return listAllKeys((p) => kv.list(p), prefix, opts);
}

export function isKrpcCode(err: unknown, code: string): boolean {
  return err instanceof KrpcError && err.code === code;
}
