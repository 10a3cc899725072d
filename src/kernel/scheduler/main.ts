// `buckyos service scheduler`: the zone scheduler process (port 3400, loopback). It reaches system-config on this
// node directly, so it works before the gateway is up, and serves `status` and `tick` to kernel services and admins.
import { schedulerApi } from '../../lib/api/scheduler.ts';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { type CallContext, createHttpApp, createKrpcEndpoint, listen } from '../../lib/krpc/index.ts';
import { NO_ROLES, type RoleOf, createOperatorAuthorize } from '../../lib/krpc/operators.ts';
import type { KernelRuntime } from '../runtime.ts';
import { Scheduler } from './scheduler.ts';

export type { RoleOf };

/** Kernel services and admins through an operator app (src/lib/krpc/operators.ts). */
export function createAuthorize(roleOf: RoleOf): (ctx: CallContext) => Promise<void> {
  return createOperatorAuthorize(roleOf, 'the scheduler');
}

export async function runSchedulerService(rt: KernelRuntime, port: number, roleOf: RoleOf = NO_ROLES): Promise<{ close(): Promise<void> }> {
  const config = rt.configClient();
  const scheduler = new Scheduler({ config, boot: rt.identity.boot, log: rt.log });
  const authorize = createAuthorize(roleOf);
  const endpoint = createKrpcEndpoint(
    schedulerApi,
    {
      status: async (_p, ctx) => {
        await authorize(ctx);
        return scheduler.status();
      },
      tick: async (_p, ctx) => {
        await authorize(ctx);
        return scheduler.tick();
      },
    },
    { authenticate: rt.authenticate, logger: rt.log },
  );
  const server = await listen(
    createHttpApp({
      name: 'scheduler',
      endpoints: [endpoint],
      health: () => {
        const s = scheduler.status();
        return { ticks: s.ticks, last_tick_at: s.last_tick_at };
      },
    }),
    port,
    rt.config.service_host,
  );
  const stop = new AbortController();
  scheduler.run(stop.signal);
  rt.log.info({ port: server.port, host: rt.config.service_host }, 'scheduler listening');
  return {
    async close() {
      stop.abort();
      await server.close();
    },
  };
}
