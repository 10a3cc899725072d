// The klog kRPC endpoint: authorization per action, secret redaction before anything is stored, and the long-poll
// tail. Storage is KlogStore's; who may do what is decided by the `authorize` function the caller passes.
import type { Logger } from 'pino';
import { klogApi, KLOG_MAX_BODY_BYTES } from '../../lib/api/klog.ts';
import { KrpcError, type CallContext, type KrpcEndpoint, type Principal, createKrpcEndpoint, isCoreKernel } from '../../lib/krpc/index.ts';
import { requesterText } from '../../lib/rbac/model.ts';
import { type KlogStore, KlogStoreClosedError } from './store.ts';

export type KlogAction = 'append' | 'query' | 'audit_append' | 'audit_query';

/** Throws KrpcError('PERMISSION_DENIED') when the principal may not perform the action. */
export type KlogAuthorize = (principal: Principal, action: KlogAction) => void | Promise<void>;

/** The caller's zone role (`owner`, `admin`, `user`, `limited`, `guest`), or undefined for an unknown user. */
export type RoleOf = (userId: string) => Promise<string | undefined>;

export interface KlogEndpointOptions {
  authorize: KlogAuthorize;
  authenticate: (token: string) => Promise<Principal> | Principal;
  logger?: Logger;
}

export const ADMIN_ROLES: readonly string[] = ['owner', 'admin'];
/** The apps through which an admin reads logs. A third-party app holding an admin's token is refused, because every
 * call must be allowed for the app as well as the user (DESIGN §5), and the zone's logs are not an app's business. */
export const DEFAULT_LOG_READER_APPS: readonly string[] = ['control-panel', 'buckyos-cli'];

/**
 * The zone's klog policy:
 * - append, audit_append: service tokens only (principal.kind 'service'). Only a zone device's key signs those, for
 *   the kernel services it runs, so no user or app can write a log line or forge an audit event.
 * - query (query, tail), audit_query (audit_query, audit_verify): kernel services on a core device, and users whose
 *   role is owner or admin calling through one of `readerApps`. Logs reveal every user's activity, so ordinary users
 *   see none of them, and neither does a storage, portable or gateway device, whose kernel only ships its own logs.
 * A failing roleOf (system-config unreachable) refuses with UNAVAILABLE rather than guessing.
 */
export function createDefaultAuthorize(opts: { roleOf: RoleOf; readerApps?: readonly string[] }): KlogAuthorize {
  const readerApps = opts.readerApps ?? DEFAULT_LOG_READER_APPS;
  return async (principal, action) => {
    const appending = action === 'append' || action === 'audit_append';
    if (principal.kind === 'service') {
      if (appending || isCoreKernel(principal)) return;
      throw new KrpcError('PERMISSION_DENIED', `${requesterText(principal)} may not read the zone's logs: of kernel services, only a core device's may`);
    }
    if (appending) {
      throw new KrpcError('PERMISSION_DENIED', `klog.${action} is for kernel services only`);
    }
    if (!readerApps.includes(principal.appId)) {
      throw new KrpcError('PERMISSION_DENIED', `app ${principal.appId} may not read zone logs`);
    }
    let role: string | undefined;
    try {
      role = await opts.roleOf(principal.userId);
    } catch {
      throw new KrpcError('UNAVAILABLE', 'cannot read the caller\'s role; try again');
    }
    if (role === undefined || !ADMIN_ROLES.includes(role)) {
      throw new KrpcError('PERMISSION_DENIED', 'reading zone logs needs the owner or admin role');
    }
  };
}

const SECRET_NAMES = ['password', 'token', 'secret', 'mnemonic', 'private_key', 'authorization'];

/** `refreshToken`, `refresh-token`, `REFRESH_TOKEN` and `refresh_token` all name a token. */
function isSecretName(key: string): boolean {
  const k = key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/-/g, '_').toLowerCase();
  return SECRET_NAMES.some((s) => k === s || k.endsWith(`_${s}`));
}

/** Replaces the value of every secret-named key, at any depth and inside arrays, with "[redacted]". A second line of
 * defence behind the logger's own redaction: records from other writers and audit details pass through here too. */
export function redactSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = isSecretName(k) ? '[redacted]' : redactSecrets(v);
    return out as T;
  }
  return value;
}

function caller(ctx: CallContext): Principal {
  if (!ctx.principal) throw new KrpcError('UNAUTHENTICATED', 'klog needs a token');
  return ctx.principal;
}

export function createKlogEndpoint(store: KlogStore, opts: KlogEndpointOptions): KrpcEndpoint {
  const allow = async (ctx: CallContext, action: KlogAction): Promise<Principal> => {
    const p = caller(ctx);
    await opts.authorize(p, action);
    return p;
  };

  return createKrpcEndpoint(
    klogApi,
    {
      append: async (p, ctx) => {
        await allow(ctx, 'append');
        const records = p.records.map((r) => (r.fields === undefined ? r : { ...r, fields: redactSecrets(r.fields) }));
        return store.append(records, p.batch_id);
      },
      query: async (p, ctx) => {
        await allow(ctx, 'query');
        const records = store.query({
          service: p.service, node: p.node, levelMin: p.level_min, text: p.text, trace: p.trace, since: p.since,
          until: p.until, limit: p.limit, beforeId: p.before_id,
        });
        return { records };
      },
      tail: async (p, ctx) => {
        await allow(ctx, 'query');
        const deadline = Date.now() + p.timeout_ms;
        let afterId = p.after_id;
        for (;;) {
          const r = store.tail({ afterId, service: p.service, node: p.node, levelMin: p.level_min, text: p.text, limit: p.limit });
          const left = deadline - Date.now();
          if (r.records.length > 0 || left <= 0) return { records: r.records, last_id: r.lastId };
          afterId = r.lastId;
          // Wakes on any append; records the filter rejects just send the loop round again.
          await store.waitForAppend(afterId, left);
        }
      },
      audit_append: async (p, ctx) => {
        const who = await allow(ctx, 'audit_append');
        const ev = store.auditAppend({ ...p.event, detail: redactSecrets(p.event.detail), source: who.userId });
        return { seq: ev.seq, ts: ev.ts, hash: ev.hash };
      },
      audit_query: async (p, ctx) => {
        await allow(ctx, 'audit_query');
        return { events: store.auditQuery({ kind: p.kind, actor: p.actor, since: p.since, limit: p.limit, beforeSeq: p.before_seq }) };
      },
      audit_verify: async (_p, ctx) => {
        await allow(ctx, 'audit_query');
        const v = await store.verify();
        return { ok: v.ok, count: v.count, first_bad_seq: v.firstBadSeq, reason: v.reason, head_hash: v.headHash };
      },
    },
    {
      authenticate: opts.authenticate,
      logger: opts.logger,
      maxBodyBytes: KLOG_MAX_BODY_BYTES,
      mapError: (err) => (err instanceof KlogStoreClosedError ? new KrpcError('UNAVAILABLE', 'klog is shutting down') : undefined),
    },
  );
}
