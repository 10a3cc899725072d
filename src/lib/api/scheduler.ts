// The scheduler kRPC declaration (DESIGN §1.2, §3 port 3400). The scheduler works on its own, on every change and
// every 10 s; these methods let an operator see how it is doing and make it look again now. Server, client and docs
// derive from this one object.
import { z } from 'zod';
import { defineService, method } from '../krpc/service.ts';

const count = z.number().int().nonnegative();
const revision = z.number().int().nonnegative();

export const schedulerApi = defineService('scheduler', 'The zone scheduler: derives from system-config which node runs which service, where each service is reached, and the RBAC tail for installed apps, and writes that intent back in one transaction per change.', {
  status: method({
    params: z.object({}).strict(),
    result: z.object({
      /** When the last tick completed (ms since the epoch), null before the first. */
      last_tick_at: z.number().nullable(),
      /** The store revision of the scheduler's last write, null before its first. */
      last_write_revision: revision.nullable(),
      ticks: count,
      writes: count,
      /** Transactions refused because another writer changed an owned key after the tick read it. */
      conflicts: count,
      /** Why the last tick failed (system-config unreachable, say); null when it succeeded. */
      last_error: z.string().nullable(),
      /** Input the scheduler could not honour: an invalid spec, a refused app permission, an unverifiable device. */
      problems: z.array(z.string()),
    }),
    doc: 'How the scheduler is doing: tick and write counters, lost races, the last error, and the input it had to ignore. Kernel services, and admins through the control panel or the CLI.',
  }),
  tick: method({
    params: z.object({}).strict(),
    result: z.object({
      changes: z.array(z.object({ op: z.enum(['put', 'delete']), key: z.string() })),
      /** False when nothing had to change, or when another writer got in first (see `conflicts`). */
      written: z.boolean(),
      revision: revision.nullable(),
      conflicts: z.array(z.string()),
    }),
    doc: 'Runs a tick now (after any tick already running) and answers which keys it changed. Nothing is written when the zone already matches the intent. Kernel services, and admins through the control panel or the CLI.',
  }),
});
