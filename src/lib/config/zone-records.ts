// The records kernel services exchange through system-config (docs/system-config.md, key layout): what a node should
// run, what a running instance reports, where a service runs, and the desired placement of a service or app. Here in
// lib because each has a writer and readers in different services (node_daemon, the scheduler, the gateway), and the
// shape is their contract, owned by none of them.
import { z } from 'zod';
import { DEVICE_ROLES } from '../identity/documents.ts';
import { KERNEL_SERVICE_PORTS, type KernelServiceName } from './node-config.ts';

/** A service name, as in `services/<s>/…` and `/kapi/<s>` (the same rule kRPC declarations follow). */
export const SERVICE_NAME = /^[a-z][a-z0-9-]{0,62}$/;

const port = z.number().int().min(1).max(65535);

/** `nodes/<n>/config`: what node_daemon on that node runs. Written by the scheduler; node_daemon seeds it on first
 * boot. */
export const nodeRunConfigSchema = z.object({
  kernel: z.array(z.enum(Object.keys(KERNEL_SERVICE_PORTS) as [KernelServiceName, ...KernelServiceName[]])),
  apps: z.array(z.string()).default([]),
});
export type NodeRunConfig = z.infer<typeof nodeRunConfigSchema>;

/** `services/<s>/instances/<node>`: node_daemon's heartbeat for one instance. `state` is the supervisor's. */
export const instanceReportSchema = z.object({
  node: z.string(),
  pid: z.number().int().nullable(),
  port,
  state: z.enum(['starting', 'running', 'backoff', 'stopping', 'stopped']),
  healthy: z.boolean(),
  restarts: z.number().int().nonnegative(),
  rss_bytes: z.number().nullable(),
  /** Milliseconds since the epoch, by the reporting node's clock. */
  heartbeat_at: z.number(),
});
export type InstanceReport = z.infer<typeof instanceReportSchema>;

export const INSTANCE_STATES = ['running', 'starting', 'dead'] as const;

/** `services/<s>/info`: where a service runs. Written by the scheduler; the node gateway routes by it. */
export const serviceInfoSchema = z.object({
  instances: z.array(
    z.object({
      node: z.string(),
      host: z.string(),
      port,
      state: z.enum(INSTANCE_STATES),
    }),
  ),
  updated_at: z.number(),
});
export type ServiceInfo = z.infer<typeof serviceInfoSchema>;

/** `services/<s>/spec`: an admin's desired placement of a service. Strict, so a misspelt field is reported rather
 * than silently ignored. */
export const serviceSpecSchema = z
  .object({
    /** How many instances, or `all`: one on every eligible node. */
    replicas: z.union([z.number().int().min(0).max(64), z.literal('all')]),
    /** Device roles whose nodes may run it. */
    roles: z.array(z.enum(DEVICE_ROLES)).min(1),
    /** Only nodes with at least this much memory in total may run it. */
    min_memory_bytes: z.number().int().nonnegative().optional(),
  })
  .strict();
export type ServiceSpec = z.infer<typeof serviceSpecSchema>;

/** `users/<u>/apps/<app>/spec`: an app a user installed. Only the permissions are read today; the rest of the
 * manifest passes through untouched. */
export const appSpecSchema = z
  .object({
    /** What the user let the app reach beyond its own data, as RBAC grants for the app side. */
    permissions: z
      .array(z.object({ resource: z.string().min(1).max(512), actions: z.string().min(1).max(64) }).strict())
      .max(64)
      .default([]),
  })
  .passthrough();
export type AppSpec = z.infer<typeof appSpecSchema>;
