// The part of system-config verify-hub needs. The typed system-config client satisfies it as is, so the store can be
// SQLite or etcd behind the service, or memory in unit tests, without verify-hub knowing.
import { KrpcError } from '../../lib/krpc/index.ts';

export type KvTxOp =
  | { op: 'put'; key: string; value: string }
  | { op: 'create'; key: string; value: string }
  | { op: 'delete'; key: string };

export interface KvStore {
  /** A missing key answers value null and revision 0. */
  get(params: { key: string }): Promise<{ value: string | null; revision: number }>;
  /** With expect_revision the write happens only at that revision (0: absent), else KrpcError CONFLICT. */
  set(params: { key: string; value: string; expect_revision?: number }): Promise<{ revision: number }>;
  /** KrpcError NOT_FOUND when absent, CONFLICT when expect_revision does not hold. */
  delete(params: { key: string; expect_revision?: number }): Promise<{ revision: number }>;
  list(params: { prefix: string; limit?: number }): Promise<{ entries: { key: string; value: string; revision: number }[] }>;
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
  private readonly data = new Map<string, { value: string; revision: number }>();
  private revision = 0;

  async get({ key }: { key: string }) {
    const e = this.data.get(key);
    return { value: e?.value ?? null, revision: e?.revision ?? 0 };
  }

  async set({ key, value, expect_revision }: { key: string; value: string; expect_revision?: number }) {
    if (expect_revision !== undefined && (this.data.get(key)?.revision ?? 0) !== expect_revision) {
      throw new KrpcError('CONFLICT', `key "${key}" is not at revision ${expect_revision}`);
    }
    this.data.set(key, { value, revision: ++this.revision });
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

  async list({ prefix, limit = 1000 }: { prefix: string; limit?: number }) {
    const entries = [...this.data]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, limit)
      .map(([key, e]) => ({ key, value: e.value, revision: e.revision }));
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
      else this.data.set(op.key, { value: op.value, revision });
    }
    return { succeeded: true, conflicts: [] };
  }
}

export function isKrpcCode(err: unknown, code: string): boolean {
  return err instanceof KrpcError && err.code === code;
}
