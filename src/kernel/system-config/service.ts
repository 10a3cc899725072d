// system-config's kRPC face: validates, authorises every key against RBAC on `obj://config/<key>`, and delegates to
// whichever ConfigStore backend the node runs. Nothing here knows whether that is SQLite or etcd.
import type { Logger } from 'pino';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { FREEZE_KEY } from '../../lib/config/store-control.ts';
import { type CallContext, KrpcError, type KrpcEndpoint, type Principal, createKrpcEndpoint } from '../../lib/krpc/index.ts';
import { requesterText } from '../../lib/rbac/model.ts';
import { type ConfigEntry, type ConfigStore, StoreError, type TxOp } from './store.ts';

export type ConfigAction = 'read' | 'write' | 'create' | 'delete';

export interface ConfigChange {
  key: string;
  op: 'put' | 'create' | 'delete';
}

export interface ConfigAccess {
  /** True when the principal's user and app (and, for a kernel service, its device) may perform `action` on
   * `obj://config/<key>`. */
  allowed(principal: Principal, key: string, action: ConfigAction): boolean;
  /** Awaited after every successful write and before it is acknowledged, so a write that changes access (a role,
   * the policy tail) is in force by the time its caller hears back. */
  afterWrite?(changes: ConfigChange[]): Promise<void>;
}

/** What the store's control records say (docs/etcd-control.md): kept current by the process, read on every call. */
export interface StoreGuard {
  /** Why writes are refused for now (the store is being copied to another backend), or null. */
  frozen(): string | null;
  /** The first revision of this store's history: the store was filled by a copy, so a revision below it came from
   * the previous store and its watcher must list again. */
  firstRevision(): number;
}

export interface StoreStatus {
  backend: 'sqlite' | 'etcd';
  cluster: () => Promise<{
    members: { name: string; id: string; healthy: boolean; leader: boolean; client_urls: string[]; problem: string | null }[];
    healthy: number;
    quorum: number;
    has_quorum: boolean;
    fault_tolerance: number;
    leader: string | null;
  } | null>;
}

export interface SystemConfigEndpointOptions {
  guard?: StoreGuard;
  status?: StoreStatus;
  authenticate: (token: string) => Promise<Principal>;
  access: ConfigAccess;
  logger?: Logger;
  /** Called after every successful write with what it changed (logging, audit). */
  onWrite?: (principal: Principal, changes: ConfigChange[], revision: number) => Promise<void> | void;
  /** Why `value` may not be stored under `key` (a typed record that breaks its schema), or null. Checked before any
   * write, so a refused transaction writes nothing. */
  checkValue?: (key: string, value: string) => string | null;
}

export function mapStoreError(err: unknown): KrpcError | undefined {
  if (err instanceof StoreError) return new KrpcError(err.code, err.message);
  return undefined;
}

function wire(e: ConfigEntry) {
  return { key: e.key, value: e.value, revision: e.revision, create_revision: e.createRevision };
}

export function createSystemConfigEndpoint(store: ConfigStore, opts: SystemConfigEndpointOptions): KrpcEndpoint {
  const { access } = opts;

  function require(ctx: CallContext, key: string, action: ConfigAction): Principal {
    const p = ctx.principal!;
    if (!access.allowed(p, key, action)) {
      throw new KrpcError('PERMISSION_DENIED', `${requesterText(p)} may not ${action} config key "${key}"`);
    }
    return p;
  }

  async function written(p: Principal, changes: ConfigChange[], revision: number): Promise<void> {
    await access.afterWrite?.(changes);
    await opts.onWrite?.(p, changes, revision);
  }

  const canRead = (ctx: CallContext) => (key: string) => access.allowed(ctx.principal!, key, 'read');

  function valid(key: string, value: string): void {
    const why = opts.checkValue?.(key, value);
    if (why) throw new KrpcError('INVALID_PARAMS', `value of "${key}": ${why}`);
  }

  /** While the store is frozen only a write that touches the freeze itself passes: node_daemon setting or lifting it,
   * together with the move's own record when a move is abandoned (the etcd backend's own guard has the same rule). */
  function writable(keys: string[]): void {
    const why = opts.guard?.frozen();
    if (why && !keys.includes(FREEZE_KEY)) throw new KrpcError('UNAVAILABLE', `the zone's configuration is read-only for a moment: ${why}; retry shortly`);
  }

  return createKrpcEndpoint(
    systemConfigApi,
    {
      async get({ key }, ctx) {
        require(ctx, key, 'read');
        const e = await store.get(key);
        return e ? wire(e) : { key, value: null, revision: 0, create_revision: 0 };
      },
      async set({ key, value, expect_revision }, ctx) {
        const p = require(ctx, key, 'write');
        valid(key, value);
        writable([key]);
        const revision = await store.set(key, value, expect_revision);
        await written(p, [{ key, op: 'put' }], revision);
        return { revision };
      },
      async create({ key, value }, ctx) {
        const p = require(ctx, key, 'create');
        valid(key, value);
        writable([key]);
        const revision = await store.create(key, value);
        await written(p, [{ key, op: 'create' }], revision);
        return { revision };
      },
      async delete({ key, expect_revision }, ctx) {
        const p = require(ctx, key, 'delete');
        writable([key]);
        const revision = await store.delete(key, expect_revision);
        await written(p, [{ key, op: 'delete' }], revision);
        return { revision };
      },
      async list({ prefix, limit, keys_only }, ctx) {
        const readable = canRead(ctx);
        // One key past the limit says whether the listing stopped short, which the readable part alone cannot: a
        // caller that may read only some keys would otherwise take a cut listing for the whole.
        const r = await store.list(prefix, limit + 1);
        const entries = r.entries.slice(0, limit).filter((e) => readable(e.key)).map(wire);
        return { entries: keys_only ? entries.map((e) => ({ ...e, value: '' })) : entries, revision: r.revision, more: r.entries.length > limit };
      },
      async exec_tx({ compares, ops }, ctx) {
        let p: Principal | undefined;
        for (const c of compares) p = require(ctx, c.key, 'read');
        for (const op of ops) p = require(ctx, op.key, op.op === 'put' ? 'write' : op.op);
        for (const op of ops) if (op.op !== 'delete') valid(op.key, op.value);
        if (ops.length) writable(ops.map((o) => o.key));
        const r = await store.execTx(compares, ops as TxOp[]);
        if (r.succeeded) await written(p!, ops.map((o) => ({ key: o.key, op: o.op })), r.revision);
        return r;
      },
      async watch({ prefix, after_revision, timeout_ms, limit }, ctx) {
        const readable = canRead(ctx);
        const deadline = Date.now() + timeout_ms;
        // A revision this store never had (ahead of it, or before the copy that filled it) is from the store the zone
        // moved away from: waiting on it would miss changes, so the watcher lists again.
        const first = opts.guard?.firstRevision() ?? 0;
        if (after_revision > (await store.currentRevision()) || (after_revision > 0 && after_revision < first - 1)) {
          throw new KrpcError('COMPACTED', `revision ${after_revision} is not in this store's history (the zone's store moved); list again and watch from the listing's revision`);
        }
        for (;;) {
          const current = await store.currentRevision();
          const events = await store.changesSince(prefix, after_revision, limit);
          if (events.length > 0) {
            const last = events[events.length - 1].revision;
            // Fewer than `limit` events means everything up to `current` was seen, so the caller may skip ahead.
            const next = events.length < limit ? Math.max(current, last) : last;
            const visible = events.filter((e) => readable(e.key));
            if (visible.length > 0 || Date.now() >= deadline) return { events: visible, revision: next };
            after_revision = next;
            continue;
          }
          const remaining = deadline - Date.now();
          if (remaining <= 0) return { events: [], revision: Math.max(current, after_revision) };
          await store.waitForChange(Math.max(current, after_revision), remaining);
        }
      },
      async status() {
        return {
          backend: opts.status?.backend ?? 'sqlite',
          revision: await store.currentRevision(),
          frozen: opts.guard?.frozen() ?? null,
          cluster: (await opts.status?.cluster()) ?? null,
        };
      },
      async dump(_p, ctx) {
        const readable = canRead(ctx);
        const r = await store.dump();
        return { entries: r.entries.filter((e) => readable(e.key)).map(wire), revision: r.revision };
      },
    },
    { authenticate: opts.authenticate, logger: opts.logger, mapError: mapStoreError },
  );
}
