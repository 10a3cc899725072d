// The storage interface every system-config backend implements. The service layer (RBAC, kRPC) sits above it and
// never sees which backend is in use; the shared conformance suite (store.suite.ts) runs against each backend.

/** One stored key. `revision` is the store-wide revision of the last write to this key (etcd's mod_revision);
 * `createRevision` is the revision at which the key was created (etcd's create_revision). */
export interface ConfigEntry {
  key: string;
  value: string;
  revision: number;
  createRevision: number;
}

export type WatchEventType = 'put' | 'delete';

/** One change, in store order. For a delete, `value` is null and `revision` is the revision of the delete. */
export interface WatchEvent {
  type: WatchEventType;
  key: string;
  value: string | null;
  revision: number;
}

/** A compare clause of a transaction. `revision: 0` means "the key must not exist". */
export interface TxCompare {
  key: string;
  revision: number;
}

export type TxOp =
  | { op: 'put'; key: string; value: string }
  | { op: 'create'; key: string; value: string }
  | { op: 'delete'; key: string };

export interface TxResult {
  succeeded: boolean;
  /** The store revision after the transaction (unchanged when it failed). */
  revision: number;
  /** For a failed transaction: the keys whose compare failed or whose create collided. */
  conflicts: string[];
}

export interface ListResult {
  entries: ConfigEntry[];
  /** Store revision at which the listing was read; pass it to `watch` to see every later change. */
  revision: number;
}

export class StoreError extends Error {
  constructor(
    readonly code: 'NOT_FOUND' | 'ALREADY_EXISTS' | 'CONFLICT' | 'COMPACTED' | 'UNAVAILABLE',
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export interface ConfigStore {
  /** Returns null when the key does not exist. */
  get(key: string): Promise<ConfigEntry | null>;
  /** Creates or replaces. When `expectRevision` is given, the write happens only if the key's current revision equals
   * it (0: the key must not exist), else StoreError('CONFLICT'). Returns the new revision. */
  set(key: string, value: string, expectRevision?: number): Promise<number>;
  /** Fails with StoreError('ALREADY_EXISTS') if the key exists. Returns the new revision. */
  create(key: string, value: string): Promise<number>;
  /** Fails with StoreError('NOT_FOUND') if the key does not exist. Returns the revision of the delete. */
  delete(key: string, expectRevision?: number): Promise<number>;
  /** Every key starting with `prefix`, sorted by key. */
  list(prefix: string, limit?: number): Promise<ListResult>;
  /** Atomic: all compares hold and no create collides, then every op applies under one revision; else nothing. */
  execTx(compares: TxCompare[], ops: TxOp[]): Promise<TxResult>;
  /** Every change to keys under `prefix` with revision > `afterRevision`, in order, at most `limit`.
   * Throws StoreError('COMPACTED') when history older than that has been discarded. */
  changesSince(prefix: string, afterRevision: number, limit: number): Promise<WatchEvent[]>;
  /** Resolves when a change with revision > `afterRevision` may exist, or after `timeoutMs`. Used for long-poll watch. */
  waitForChange(afterRevision: number, timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /** Current store revision. */
  currentRevision(): Promise<number>;
  /** Every key and value (for backup and migration). */
  dump(): Promise<ListResult>;
  close(): Promise<void>;
}
