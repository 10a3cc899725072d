// Who may operate a kernel service's admin API (the scheduler, cyfs-ns): kernel services, and admins through an
// operator app. An installed app holding an admin's token is refused: every call must be allowed for the app as well
// as the user (DESIGN §5), and operating the kernel is no app's business. A call that changes the zone's configuration
// is a core device's kernel's at most: the service writes it with its own token, so a storage, portable or gateway
// device's kernel, which RBAC's device side keeps from that configuration, must not have it written for it.
import { type CallContext, KrpcError, isCoreKernel } from './index.ts';
import { requesterText } from '../rbac/model.ts';

/** A user's role from `users/<u>/settings` (undefined for an unknown or disabled user); throws when it cannot tell. */
export type RoleOf = (user: string) => Promise<string | undefined>;

/** The apps through which an admin operates the zone. */
export const OPERATOR_APPS: readonly string[] = ['control-panel', 'buckyos-cli'];

/** Without a role lookup no user counts as an admin, so only kernel services may call: failing closed. */
export const NO_ROLES: RoleOf = async () => undefined;

/** A failing role lookup refuses with UNAVAILABLE rather than guessing. `what` names the service in messages; a call
 * that `changes` the zone's configuration passes for a kernel service only on a core device. */
export function createOperatorAuthorize(roleOf: RoleOf, what: string): (ctx: CallContext, changes?: boolean) => Promise<void> {
  return async (ctx, changes = false) => {
    const p = ctx.principal;
    if (p === null) throw new KrpcError('UNAUTHENTICATED', `${what} needs a token`);
    if (p.kind === 'service') {
      if (!changes || isCoreKernel(p)) return;
      throw new KrpcError('PERMISSION_DENIED', `${requesterText(p)} may not change the zone's configuration through ${what}: of kernel services, only a core device's may`);
    }
    if (!OPERATOR_APPS.includes(p.appId)) throw new KrpcError('PERMISSION_DENIED', `app ${p.appId} may not operate ${what}`);
    let role: string | undefined;
    try {
      role = await roleOf(p.userId);
    } catch {
      throw new KrpcError('UNAVAILABLE', 'cannot read the caller\'s role; try again');
    }
    if (role !== 'admin') throw new KrpcError('PERMISSION_DENIED', `operating ${what} needs the admin role`);
  };
}
