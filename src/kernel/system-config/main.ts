// The system-config process: opens the configured backend, keeps its RBAC enforcer in step with the users' roles
// and the scheduler-generated policy tail stored in the same store, and serves kRPC on its port.
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { Rbac } from '../../lib/rbac/enforcer.ts';
import { createHttpApp, listen } from '../../lib/krpc/index.ts';
import type { KernelRuntime } from '../runtime.ts';
import type { ConfigStore } from './store.ts';
import { openSqliteStore } from './backends/sqlite.ts';
import { createSystemConfigEndpoint } from './service.ts';
import { affectsPolicy, followAccessPolicy, rbacConfigAccess } from './access.ts';
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

export async function runSystemConfigService(rt: KernelRuntime, port: number): Promise<{ close(): Promise<void> }> {
  const store = await openConfiguredStore(rt.config, rt.paths);
  const rbac = await Rbac.create();
  const stop = new AbortController();
  const policy = await followAccessPolicy(store, rbac, stop.signal, (err) => rt.log.error({ err: (err as Error).message }, 'RBAC policy sync failed'));
  const endpoint = createSystemConfigEndpoint(store, {
    authenticate: rt.authenticate,
    access: rbacConfigAccess(rbac),
    logger: rt.log,
    onWrite: async (p, keys, revision) => {
      if (keys.some(affectsPolicy)) await policy.catchUp();
      rt.log.debug({ user: p.userId, app: p.appId, keys, revision }, 'config write');
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
