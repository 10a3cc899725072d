// `buckyos service scheduler`: the zone scheduler process (port 3400, loopback). It reaches system-config on this
// node directly, so it works before the gateway is up, and serves `status` and `tick` to kernel services and admins.
import { schedulerApi } from '../../lib/api/scheduler.ts';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { type CallContext, KrpcError, createHttpApp, createKrpcEndpoint, listen } from '../../lib/krpc/index.ts';
import type { KernelRuntime } from '../runtime.ts';
import { Scheduler } from './scheduler.ts';

/** A user's role from `users/<u>/settings` (undefined for an unknown or disabled user); throws when it cannot tell. */
export type RoleOf = (user: string) => Promise<string | undefined>;

/** The apps through which an admin operates the zone. An installed app holding an admin's token is refused: every
 * call must be allowed for the app as well as the user (DESIGN §5), and the scheduler is no app's business. */
const OPERATOR_APPS: readonly string[] = ['control-panel', 'buckyos-cli'];

/** Without `roleOf` no user counts as an admin, so only kernel services may call: failing closed. */
const NO_ROLES: RoleOf = async () => undefined;

/** Kernel services (service tokens, which only kernel services and root on a zone device hold), and admins through
 * an operator app. A failing role lookup refuses with UNAVAILABLE rather than guessing. */
export function createAuthorize(roleOf: RoleOf): (ctx: CallContext) => Promise<void> {
  return async (ctx) => {
    const p = ctx.principal;
    if (p === null) throw new KrpcError('UNAUTHENTICATED', 'the scheduler needs a token');
    if (p.kind === 'service') return;
    if (!OPERATOR_APPS.includes(p.appId)) throw new KrpcError('PERMISSION_DENIED', `app ${p.appId} may not operate the scheduler`);
    let role: string | undefined;
    try {
      role = await roleOf(p.userId);
    } catch {
      throw new KrpcError('UNAVAILABLE', 'cannot read the caller\'s role; try again');
    }
    if (role !== 'admin') throw new KrpcError('PERMISSION_DENIED', 'operating the scheduler needs the admin role');
  };
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
