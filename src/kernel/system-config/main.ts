// The system-config process: opens the configured backend, keeps its RBAC enforcer in step with the users' roles
// and the scheduler-generated policy tail stored in the same store, and serves kRPC on its port.
import { dirname, join } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import { createHttpApp, listen } from '../../lib/krpc/index.ts';
import type { KernelRuntime } from '../runtime.ts';
import type { ConfigStore } from './store.ts';
import { openSqliteStore } from './backends/sqlite.ts';
import { type ConfigChange, type StoreGuard, createSystemConfigEndpoint } from './service.ts';
import { CONFIG_STORE_KEY, FREEZE_KEY, configStoreSchema, freezeSchema, parseRecord } from '../../lib/config/store-control.ts';
import type { AuditKind } from '../../lib/api/klog.ts';
import { RBAC_TAIL_KEY } from '../../lib/rbac/config-sync.ts';
import { createRbacConfigAccess } from './access.ts';
import { ZONE_SETTINGS_KEY, settingsSchemaFor } from '../../lib/config/zone-settings.ts';
import type { NodeConfig, NodePaths } from '../../lib/config/node-config.ts';
import { readRecord } from '../../lib/config/record.ts';

export type StoreBackend = { type: 'sqlite' } | { type: 'etcd'; endpoints: string[]; tls?: { ca: string; cert: string; key: string } };

/** Where a device keeps the zone's SQLite store. */
export function sqliteStorePath(paths: NodePaths): string {
  return join(paths.data, 'system-config', 'config.db');
}

/**
 * Opens a backend: the configured one for the service, or either one for node_daemon moving the store. `guardFreeze`
 * has etcd itself refuse writes while the store is frozen (the service's instances); node_daemon's own handles, which
 * write the freeze and copy under it, open without.
 */
export async function openStore(backend: StoreBackend, paths: NodePaths, opts: { guardFreeze?: boolean } = {}): Promise<ConfigStore> {
  if (backend.type === 'etcd') {
    // Loaded only when used: the gRPC stack behind etcd3 costs a SQLite-only node ~25 MB of memory.
    const { openEtcdStore } = await import('./backends/etcd.ts');
    const tls = backend.tls;
    return openEtcdStore({
      hosts: backend.endpoints,
      ...(opts.guardFreeze ? { frozenWhile: FREEZE_KEY } : {}),
      ...(tls ? { credentials: { rootCertificate: readFileSync(tls.ca), certChain: readFileSync(tls.cert), privateKey: readFileSync(tls.key) } } : {}),
    });
  }
  mkdirSync(dirname(sqliteStorePath(paths)), { recursive: true, mode: 0o700 });
  return openSqliteStore(sqliteStorePath(paths));
}

export async function openConfiguredStore(config: NodeConfig, paths: NodePaths): Promise<ConfigStore> {
  const b = config.config_backend;
  if (b?.type === 'remote') throw new Error('this device reaches system-config on a core device (config_backend remote); it runs no instance of its own');
  return openStore(b?.type === 'etcd' ? b : { type: 'sqlite' }, paths, { guardFreeze: true });
}

export { copyStore, verifyCopy } from './migrate.ts';

/** Which config changes are security events: deletions, the RBAC tail, device documents. Routine writes
 * (heartbeats, device reports) are not, or the audit stream would drown in them. */
export function auditKindOf(c: ConfigChange): AuditKind | null {
  if (c.key === RBAC_TAIL_KEY) return 'permission_change';
  if (/^devices\/[^/]+\/doc$/.test(c.key)) return 'device_change';
  if (c.key === ZONE_SETTINGS_KEY) return 'config_change';
  if (c.op === 'delete') return 'deletion';
  return null;
}

/** Control record changes read at a time. */
const CONTROL_PAGE = 100;

/** Keeps a StoreGuard current from the store's own control records, read straight from the backend so that a freeze
 * written by node_daemon on another device reaches this instance within moments. */
export function followControl(store: ConfigStore, signal: AbortSignal, onError: (err: unknown) => void): StoreGuard {
  // Until the control records are read, a freeze written by another device cannot be ruled out: writes wait.
  let frozen: string | null = 'this instance has not read the store control records yet';
  let first = 0;
  const apply = (key: string, value: string | null) => {
    if (key === FREEZE_KEY) frozen = parseRecord(freezeSchema, value)?.reason ?? (value === null ? null : 'the store is being moved');
    if (key === CONFIG_STORE_KEY) first = parseRecord(configStoreSchema, value)?.first_revision ?? 0;
  };
  void (async () => {
    let rev = 0;
    while (!signal.aborted) {
      try {
        if (rev === 0) {
          const listed = await store.list('system/control/', 100);
          for (const k of [FREEZE_KEY, CONFIG_STORE_KEY]) apply(k, listed.entries.find((e) => e.key === k)?.value ?? null);
          rev = listed.revision;
        }
        // The store's revision is read before its history, never after: a freeze written between the two would
        // otherwise be stepped over, and this instance would take writes all through the move.
        const upTo = await store.currentRevision();
        const events = await store.changesSince('system/control/', rev, CONTROL_PAGE);
        for (const ev of events) {
          apply(ev.key, ev.value);
          rev = ev.revision;
        }
        if (events.length < CONTROL_PAGE) rev = Math.max(rev, upTo);
        await store.waitForChange(rev, 10_000, signal);
      } catch (err) {
        if (signal.aborted) return;
        onError(err);
        // A freeze may be written while this instance cannot read: until it has read the records again, it refuses
        // writes, as it did before it first read them.
        frozen = `this instance lost track of the store control records (${(err as Error).message})`;
        rev = 0;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  })();
  return { frozen: () => frozen, firstRevision: () => first };
}

export async function runSystemConfigService(rt: KernelRuntime, port: number): Promise<{ close(): Promise<void> }> {
  const store = await openConfiguredStore(rt.config, rt.paths);
  const stop = new AbortController();
  const backend = rt.config.config_backend?.type === 'etcd' ? rt.config.config_backend : null;
  const guard = followControl(store, stop.signal, (err) => rt.log.warn({ err: (err as Error).message }, 'cannot follow the store control records'));
  const access = await createRbacConfigAccess(store, stop.signal, (err) => rt.log.error({ err: (err as Error).message }, 'RBAC policy sync failed'));
  const endpoint = createSystemConfigEndpoint(store, {
    guard,
    status: {
      backend: backend ? 'etcd' : 'sqlite',
      cluster: async () => {
        if (!backend) return null;
        const { clusterHealth } = await import('../../lib/etcd/cluster.ts');
        const tls = backend.tls && { ca: readFileSync(backend.tls.ca), cert: readFileSync(backend.tls.cert), key: readFileSync(backend.tls.key) };
        const h = await clusterHealth(backend.endpoints, tls);
        return {
          members: h.members.map((m) => ({ name: m.name, id: m.id, healthy: m.healthy, leader: m.leader, client_urls: m.clientUrls, problem: m.problem })),
          healthy: h.healthy,
          quorum: h.quorum,
          has_quorum: h.hasQuorum,
          fault_tolerance: h.faultTolerance,
          leader: h.leader,
        };
      },
    },
    authenticate: rt.authenticate,
    access,
    logger: rt.log,
    checkValue: (key, value) => {
      const schema = settingsSchemaFor(key);
      return schema ? readRecord(schema, value, null).problem : null;
    },
    onWrite: (p, changes, revision) => {
      rt.log.debug({ user: p.userId, app: p.appId, keys: changes.map((c) => c.key), revision }, 'config write');
      for (const c of changes) {
        const kind = auditKindOf(c);
        if (kind) rt.audit.emit({ kind, actor: p.userId, target: `obj://config/${c.key}`, detail: { op: c.op, app: p.appId, revision } });
      }
    },
  });
  const server = createHttpApp({
    name: 'system-config',
    endpoints: [endpoint],
    health: async () => ({ backend: (rt.config.config_backend?.type ?? 'sqlite'), revision: await store.currentRevision() }),
  });
  const running = await listen(server, port, rt.config.service_host);
  rt.log.info({ port: running.port, backend: (rt.config.config_backend?.type ?? 'sqlite') }, 'system-config listening');
  return {
    close: async () => {
      stop.abort();
      await running.close();
      await store.close();
    },
  };
}
