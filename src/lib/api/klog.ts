// The klog kRPC declaration (DESIGN §4, kLog): structured log records shipped by every node's node_daemon, searched
// and tailed by admins, and the append-only audit stream of security events. Server, client and docs derive from it.
import { z } from 'zod';
import { defineService, method } from '../krpc/service.ts';
import { jsonDepthWithin, utf8Length } from '../krpc/validate.ts';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Security events. A closed list, so `audit_query {kind}` means the same thing on every zone. */
export const AUDIT_KINDS = [
  'login', 'login_failed', 'logout', 'sudo', 'password_change', 'token_reuse', 'session_revoked', 'permission_change',
  'user_change', 'device_change', 'app_change', 'storage_change', 'deletion', 'config_change', 'activation',
  'backup_restore',
] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

// Bounds keep one call, one row and one response a predictable size. A shipper truncates to these before sending,
// so a single oversized line can never make a whole batch fail validation forever.
export const KLOG_MAX_RECORDS_PER_APPEND = 1000;
export const KLOG_MAX_MSG_CHARS = 8192;
export const KLOG_MAX_FIELDS_BYTES = 16 * 1024;
export const KLOG_MAX_AUDIT_DETAIL_BYTES = 16 * 1024;
export const KLOG_MAX_QUERY_LIMIT = 5000;
export const KLOG_DEFAULT_QUERY_LIMIT = 200;
export const KLOG_MAX_TAIL_TIMEOUT_MS = 30_000;
/** 1000 records at the per-record bounds can exceed this; shippers also cap a batch's bytes well below it. */
export const KLOG_MAX_BODY_BYTES = 8 * 1024 * 1024;

/** Fields and audit details nest at most this deep, so a shipper knows what to cut a record to (the kRPC server's
 * own bound is on the whole request). */
export const KLOG_MAX_JSON_DEPTH = 64;

const jsonBytes = (v: unknown): number => utf8Length(JSON.stringify(v));

const tooDeep = (what: string) => ({ message: `${what}: nested deeper than ${KLOG_MAX_JSON_DEPTH} levels`, abort: true });

const id = z.number().int().nonnegative();
/** Milliseconds since the Unix epoch. */
const timestamp = z.number().int().nonnegative();
const level = z.enum(LOG_LEVELS);
const serviceName = z.string().min(1).max(64);
const nodeName = z.string().min(1).max(128);
const traceId = z.string().min(1).max(64);
const fields = z
  .record(z.string(), z.unknown())
  .refine((f) => jsonDepthWithin(f, KLOG_MAX_JSON_DEPTH), tooDeep('fields'))
  .refine((f) => jsonBytes(f) <= KLOG_MAX_FIELDS_BYTES, `fields: larger than ${KLOG_MAX_FIELDS_BYTES} bytes as JSON`);

export const logRecordIn = z
  .object({
    ts: timestamp,
    level,
    service: serviceName,
    node: nodeName,
    msg: z.string().max(KLOG_MAX_MSG_CHARS),
    trace: traceId.optional(),
    fields: fields.optional(),
  })
  .strict();
export type LogRecordIn = z.input<typeof logRecordIn>;

const logRecordOut = z.object({
  id,
  ts: timestamp,
  level,
  service: z.string(),
  node: z.string(),
  msg: z.string(),
  trace: z.string().optional(),
  fields: z.record(z.string(), z.unknown()).optional(),
});
/** A stored log record as query and tail answer it. */
export type LogRecordOut = z.output<typeof logRecordOut>;

export const auditEventIn = z
  .object({
    kind: z.enum(AUDIT_KINDS),
    /** Who did it: a user id, a service name, or `anonymous` for a failed login. */
    actor: z.string().min(1).max(256),
    /** What it was done to: a user, device, key or resource URI; empty when there is none. */
    target: z.string().max(512).default(''),
    detail: z
      .record(z.string(), z.unknown())
      .refine((d) => jsonDepthWithin(d, KLOG_MAX_JSON_DEPTH), tooDeep('detail'))
      .refine((d) => jsonBytes(d) <= KLOG_MAX_AUDIT_DETAIL_BYTES, `detail: larger than ${KLOG_MAX_AUDIT_DETAIL_BYTES} bytes as JSON`)
      .default({}),
  })
  .strict();

const auditEventOut = z.object({
  seq: id,
  ts: timestamp,
  kind: z.string(),
  actor: z.string(),
  target: z.string(),
  detail: z.record(z.string(), z.unknown()),
  /** The kernel service that appended the event (from its service token, not from the caller's params). */
  source: z.string(),
  hash: z.string(),
});

const limit = z.number().int().min(1).max(KLOG_MAX_QUERY_LIMIT).default(KLOG_DEFAULT_QUERY_LIMIT);

export const klogApi = defineService('klog', 'The zone log service: stores, searches and tails every node\'s structured logs, and keeps the tamper-evident audit stream.', {
  append: method({
    params: z
      .object({
        records: z.array(logRecordIn).min(1).max(KLOG_MAX_RECORDS_PER_APPEND),
        /** Idempotency key: a batch whose id was accepted in the last 24 hours is acknowledged and not stored again. */
        batch_id: z.string().min(1).max(128).optional(),
      })
      .strict(),
    result: z.object({ accepted: z.number().int().nonnegative(), duplicate: z.boolean() }),
    doc: 'Stores log records (node_daemon shippers). Service tokens only. Fields named like secrets are replaced by "[redacted]" before storing.',
  }),
  query: method({
    params: z
      .object({
        service: serviceName.optional(),
        node: nodeName.optional(),
        level_min: level.optional(),
        /** Full-text search over msg and fields: every word must occur (as a word prefix). */
        text: z.string().min(1).max(256).optional(),
        trace: traceId.optional(),
        since: timestamp.optional(),
        until: timestamp.optional(),
        limit,
        before_id: id.optional(),
      })
      .strict(),
    result: z.object({ records: z.array(logRecordOut) }),
    doc: 'Searches stored records, newest (highest id) first; page with before_id = the last id returned. since/until bound ts (ms, inclusive). Admin users and kernel services.',
  }),
  tail: method({
    params: z
      .object({
        /** Omit to start at the current end of the log (no history). */
        after_id: id.optional(),
        service: serviceName.optional(),
        node: nodeName.optional(),
        level_min: level.optional(),
        /** The same full-text match as query's, so a search can be followed as it grows. */
        text: z.string().min(1).max(256).optional(),
        timeout_ms: z.number().int().min(0).max(KLOG_MAX_TAIL_TIMEOUT_MS).default(25_000),
        limit,
      })
      .strict(),
    result: z.object({ records: z.array(logRecordOut), last_id: id }),
    doc: 'Long-poll: records with id > after_id that match the filters (service, node, level_min, text as in query), oldest first, waiting up to timeout_ms for one to arrive. Call again with after_id = last_id and nothing is missed. Use a client timeout above timeout_ms. Admin users and kernel services.',
  }),
  audit_append: method({
    params: z.object({ event: auditEventIn }).strict(),
    result: z.object({ seq: id, ts: timestamp, hash: z.string() }),
    doc: 'Appends a security event to the hash-chained audit stream. Kernel services only; the time and source are set by klog.',
  }),
  audit_query: method({
    params: z
      .object({
        kind: z.enum(AUDIT_KINDS).optional(),
        actor: z.string().min(1).max(256).optional(),
        since: timestamp.optional(),
        limit,
        before_seq: id.optional(),
      })
      .strict(),
    result: z.object({ events: z.array(auditEventOut) }),
    doc: 'Audit events, newest first; page with before_seq. Admin users and kernel services.',
  }),
  audit_verify: method({
    params: z.object({}).strict(),
    result: z.object({
      ok: z.boolean(),
      count: z.number().int().nonnegative(),
      first_bad_seq: id.optional(),
      reason: z.string().optional(),
      /** Hash of the last event; record it elsewhere to detect a later truncation of the stream. */
      head_hash: z.string(),
    }),
    doc: 'Recomputes the audit hash chain and reports the first event that does not match. Admin users and kernel services.',
  }),
});
