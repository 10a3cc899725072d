// The records that move the zone's configuration store between backends (docs/etcd-control.md). They live in the
// store itself, under system/control/, so every device follows them the way it follows everything else: node_daemons
// start and stop etcd members by them, system-config instances refuse writes while the store is frozen, and watchers
// of the old store are told to list again.
import { z } from 'zod';
import { deviceName } from '../identity/documents.ts';
import { readRecord } from './record.ts';

export const FREEZE_KEY = 'system/control/freeze';
export const CONFIG_STORE_KEY = 'system/control/config-store';
export const MIGRATION_KEY = 'system/control/migration';

/** Present while the store is being copied: every system-config instance refuses writes (except to this key). */
export const freezeSchema = z.object({ reason: z.string(), by: z.string(), at: z.number().int() });

export const etcdMemberRecord = z.object({
  name: deviceName,
  peer_url: z.string().url(),
  client_url: z.string().url(),
});
export type EtcdMemberRecord = z.infer<typeof etcdMemberRecord>;

/** Which backend holds the zone's configuration now. Absent in a zone that never moved: SQLite on its first device. */
export const configStoreSchema = z.discriminatedUnion('backend', [
  z.object({
    backend: z.literal('sqlite'),
    /** The device whose SQLite file is the store; every other device reaches it through the tunnels. */
    primary: deviceName,
    /** The store's first revision after the copy that filled it: older revisions belong to the previous store. */
    first_revision: z.number().int().nonnegative(),
  }),
  z.object({
    backend: z.literal('etcd'),
    members: z.array(etcdMemberRecord).min(1).max(7),
    /** etcd's initial-cluster-token: tells this cluster from an older one on the same addresses. */
    token: z.string(),
    /** The zone CA certificate (PEM) the members' and clients' certificates chain to. */
    ca_cert: z.string(),
    first_revision: z.number().int().nonnegative(),
  }),
]);
export type ConfigStoreRecord = z.infer<typeof configStoreSchema>;

export const MIGRATION_STATES = ['requested', 'forming', 'copying', 'done', 'failed'] as const;

/** A move of the store, requested by an admin (or by node_daemon when the third core device joins) and carried out by
 * the orchestrator: the device that holds the store now. */
export const migrationSchema = z.object({
  to: z.enum(['etcd', 'sqlite']),
  requested_by: z.string(),
  requested_at: z.number().int(),
  state: z.enum(MIGRATION_STATES),
  /** Set by the orchestrator when it takes the request. */
  orchestrator: deviceName.optional(),
  /** For a move to etcd: the members being formed, the cluster token and the zone CA certificate. */
  members: z.array(etcdMemberRecord).optional(),
  token: z.string().optional(),
  ca_cert: z.string().optional(),
  /** For a move to SQLite: the device that will hold the store. */
  primary: deviceName.optional(),
  error: z.string().nullable().default(null),
  updated_at: z.number().int(),
});
export type MigrationRecord = z.infer<typeof migrationSchema>;

/** A record's value, parsed, or null when absent or unreadable (a broken record must not stop a device); with
 * `report`, why it was unreadable is appended to `problems`, for a reader that shows them in its status. */
export function parseRecord<T>(
  schema: z.ZodType<T, z.ZodTypeDef, unknown>,
  value: string | null | undefined,
  report?: { key: string; problems: string[] },
): T | null {
  const r = readRecord(schema, value, null);
  if (r.problem !== null) report?.problems.push(`${report.key}: ${r.problem}`);
  return r.value;
}
