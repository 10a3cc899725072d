// `buckyos service klog`: the zone log service process. Its database lives at <data>/klog/klog.db; it listens on the
// node's service host (loopback) and is reached through the node gateway at /kapi/klog.
import { join } from 'node:path';
import { createHttpApp, listen } from '../../lib/krpc/index.ts';
import type { KernelRuntime } from '../runtime.ts';
import { type RoleOf, createDefaultAuthorize, createKlogEndpoint } from './service.ts';
import { KlogStore } from './store.ts';

// node_daemon runs the shipper; this entry is the one klog module other services may import (.dependency-cruiser.cjs).

/** Without `roleOf` no user counts as an admin, so only kernel services can read logs: failing closed. */
const NO_ROLES: RoleOf = async () => undefined;

export async function runKlogService(rt: KernelRuntime, port: number, roleOf: RoleOf = NO_ROLES): Promise<{ close(): Promise<void> }> {
  const store = new KlogStore({
    path: join(rt.paths.data, 'klog', 'klog.db'),
    autoPrune: { onError: (err) => rt.log.warn({ err }, 'klog retention prune failed') },
  });
  try {
    const endpoint = createKlogEndpoint(store, {
      authorize: createDefaultAuthorize({ roleOf }),
      authenticate: rt.authenticate,
      logger: rt.log,
    });
    const server = await listen(createHttpApp({ name: 'klog', endpoints: [endpoint], health: () => store.stats() }), port, rt.config.service_host);
    rt.log.info({ port: server.port, host: rt.config.service_host }, 'klog listening');
    return {
      async close() {
        await server.close();
        // Closing the store also releases every tail still waiting, so shutdown never waits out a long poll.
        store.close();
      },
    };
  } catch (err) {
    store.close();
    throw err;
  }
}
