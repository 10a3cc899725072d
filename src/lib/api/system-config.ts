// The system-config kRPC declaration (DESIGN §4). Server, client and docs all derive from this one object.
import { z } from 'zod';
import { defineService, method } from '../krpc/service.ts';
import { utf8Length } from '../krpc/validate.ts';

export const MAX_KEY_LENGTH = 512;
export const MAX_VALUE_BYTES = 256 * 1024;
export const MAX_WATCH_TIMEOUT_MS = 60_000;
/** Compares and ops each, per `exec_tx`. */
export const MAX_TX_OPS = 128;

const SEGMENT = '[A-Za-z0-9_.@:-]+';
const KEY_RE = new RegExp(`^${SEGMENT}(/${SEGMENT})*$`);

function noDotSegments(k: string): boolean {
  return !k.split('/').some((s) => s === '.' || s === '..');
}

export const configKey = z
  .string()
  .min(1, 'key is empty')
  .max(MAX_KEY_LENGTH, `key is longer than ${MAX_KEY_LENGTH} characters`)
  .regex(KEY_RE, 'key: segments of letters, digits and _ . @ : - separated by single slashes')
  .refine(noDotSegments, 'key: "." and ".." segments are not allowed');

/** A prefix is a key, a key followed by "/", or empty (everything). */
export const configPrefix = z
  .string()
  .max(MAX_KEY_LENGTH)
  .refine((p) => p === '' || KEY_RE.test(p.endsWith('/') ? p.slice(0, -1) : p), 'prefix: a key, optionally ending in "/", or empty')
  .refine(noDotSegments, 'prefix: "." and ".." segments are not allowed');

export const configValue = z
  .string()
  .refine((v) => utf8Length(v) <= MAX_VALUE_BYTES, `value is larger than ${MAX_VALUE_BYTES} bytes`);

const revision = z.number().int().nonnegative();

const entry = z.object({ key: z.string(), value: z.string(), revision, create_revision: revision });
const event = z.object({ type: z.enum(['put', 'delete']), key: z.string(), value: z.string().nullable(), revision });

export const txOp = z.discriminatedUnion('op', [
  z.object({ op: z.literal('put'), key: configKey, value: configValue }).strict(),
  z.object({ op: z.literal('create'), key: configKey, value: configValue }).strict(),
  z.object({ op: z.literal('delete'), key: configKey }).strict(),
]);

export const systemConfigApi = defineService('system-config', 'The zone\'s key-value store of JSON documents, with revisions, transactions and watches.', {
  get: method({
    params: z.object({ key: configKey }).strict(),
    result: z.object({ key: z.string(), value: z.string().nullable(), revision, create_revision: revision }),
    doc: 'Reads one key. A missing key answers value null and revision 0. Needs read on obj://config/<key>.',
  }),
  set: method({
    params: z.object({ key: configKey, value: configValue, expect_revision: revision.optional() }).strict(),
    result: z.object({ revision }),
    doc: 'Creates or replaces a key. With expect_revision, writes only if the key is at that revision (0: absent), else CONFLICT. Needs write.',
  }),
  create: method({
    params: z.object({ key: configKey, value: configValue }).strict(),
    result: z.object({ revision }),
    doc: 'Creates a key that must not exist (ALREADY_EXISTS otherwise). Needs create.',
  }),
  delete: method({
    params: z.object({ key: configKey, expect_revision: revision.optional() }).strict(),
    result: z.object({ revision }),
    doc: 'Deletes a key (NOT_FOUND if absent). Needs delete.',
  }),
  list: method({
    params: z.object({ prefix: configPrefix, limit: z.number().int().min(1).max(10_000).default(1000), keys_only: z.boolean().default(false) }).strict(),
    result: z.object({ entries: z.array(entry), revision, more: z.boolean() }),
    doc: 'Lists keys under a prefix, sorted; only keys the caller may read are returned. `revision` is the store revision of the read: pass it to watch. `more`: the store holds keys under the prefix past the first `limit` (readable or not), which this answer leaves out.',
  }),
  exec_tx: method({
    params: z
      .object({
        compares: z.array(z.object({ key: configKey, revision }).strict()).max(MAX_TX_OPS).default([]),
        ops: z
          .array(txOp)
          .min(1)
          .max(MAX_TX_OPS)
          .refine((ops) => new Set(ops.map((o) => o.key)).size === ops.length, 'ops: a key may appear in only one op of a transaction'),
      })
      .strict(),
    result: z.object({ succeeded: z.boolean(), revision, conflicts: z.array(z.string()) }),
    doc: 'Atomic multi-key transaction: if every compare holds (revision 0: key absent) and no create collides, every op applies under one revision; otherwise nothing is written and `conflicts` names the keys. Needs the op\'s right on every key.',
  }),
  watch: method({
    params: z
      .object({
        prefix: configPrefix,
        after_revision: revision,
        timeout_ms: z.number().int().min(0).max(MAX_WATCH_TIMEOUT_MS).default(30_000),
        limit: z.number().int().min(1).max(10_000).default(1000),
      })
      .strict(),
    result: z.object({ events: z.array(event), revision }),
    doc: 'Long-poll watch: returns every change under the prefix after `after_revision` (waiting up to timeout_ms for one). Call again with the returned `revision` and nothing is missed. COMPACTED when that history is gone: list again and resume from its revision.',
  }),
  status: method({
    params: z.object({}).strict(),
    result: z.object({
      backend: z.enum(['sqlite', 'etcd']),
      revision,
      /** Why writes are refused for now (the store is moving to another backend), or null. */
      frozen: z.string().nullable(),
      /** etcd only: each member's health and the quorum arithmetic; null on SQLite. */
      cluster: z
        .object({
          members: z.array(z.object({ name: z.string(), id: z.string(), healthy: z.boolean(), leader: z.boolean(), client_urls: z.array(z.string()), problem: z.string().nullable() })),
          healthy: z.number().int(),
          quorum: z.number().int(),
          has_quorum: z.boolean(),
          fault_tolerance: z.number().int(),
          leader: z.string().nullable(),
        })
        .nullable(),
    }),
    doc: 'The store behind this instance: backend, revision, whether writes are frozen, and on etcd the health of every member with the quorum arithmetic (how many may fail before writes stop). Any authenticated caller.',
  }),
  dump: method({
    params: z.object({}).strict(),
    result: z.object({ entries: z.array(entry), revision }),
    doc: 'Every key the caller may read, with values and the store revision (for backup and migration).',
  }),
});
