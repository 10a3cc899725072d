// The system-config process: opens the configured backend, keeps its RBAC enforcer in step with the users' roles
// and the scheduler-generated policy tail stored in the same store, and serves kRPC on its port.
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { createHttpApp, listen } from '../../lib/krpc/index.ts';
import type { KernelRuntime } from '../runtime.ts';
import type { ConfigStore } from './store.ts';
import { openSqliteStore } from './backends/sqlite.ts';
import { type ConfigChange, createSystemConfigEndpoint } from './service.ts';
import type { AuditKind } from '../../lib/api/klog.ts';
import { RBAC_TAIL_KEY } from '../../lib/rbac/config-sync.ts';
import { createRbacConfigAccess } from './access.ts';
import type { NodeConfig, NodePaths } from '../../lib/config/node-config.ts';

export async function openConfiguredStore(config: NodeConfig, paths: NodePaths): Promise<ConfigStore> {
  if (config.config_backend.type === 'etcd') {
    // Loaded only when used: the gRPC stack behind etcd3 costs a SQLite-only node ~25 MB of memory.
    const { openEtcdStore } = await import('./backends/etcd.ts');
    return openEtcdStore({ hosts: config.config_backend.endpoints });
  }
  const dir = join(paths.data, 'system-config');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return openSqliteStore(join(dir, 'config.db'));
}

/** Which config changes are security events: deletions, the RBAC tail, device documents. Routine writes
 * (heartbeats, device reports) are not, or the audit stream would drown in them. */
export function auditKindOf(c: ConfigChange): AuditKind | null {
  if (c.key === RBAC_TAIL_KEY) return 'permission_change';
  if (/^devices\/[^/]+\/doc$/.test(c.key)) return 'device_change';
  if (c.op === 'delete') return 'deletion';
  return null;
}

export async function runSystemConfigService(rt: KernelRuntime, port: number): Promise<{ close(): Promise<void> }> {
  const store = await openConfiguredStore(rt.config, rt.paths);
  const stop = new AbortController();
  const access = await createRbacConfigAccess(store, stop.signal, (err) => rt.log.error({ err: (err as Error).message }, 'RBAC policy sync failed'));
  const endpoint = createSystemConfigEndpoint(store, {
    authenticate: rt.authenticate,
    access,
    logger: rt.log,
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
    health: async () => ({ backend: rt.config.config_backend.type, revision: await store.currentRevision() }),
  });
  const running = await listen(server, port, rt.config.service_host);
  rt.log.info({ port: running.port, backend: rt.config.config_backend.type }, 'system-config listening');
  return {
    close: async () => {
      stop.abort();
      await running.close();
      await store.close();
    },
  };
}
