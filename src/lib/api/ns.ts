// The cyfs-ns kRPC declaration (DESIGN §8): the admin API of the zone's DNS server when it runs as a kernel service
// (docs/ns.md, "In a zone"). Its configuration lives in system-config (`services/ns/config`, `services/ns/records`); these
// methods show how it is doing and reach what only the running server knows. Server, client and docs derive from it.
import { z } from 'zod';
import { defineService, method } from '../krpc/service.ts';

/** Where a zone's cyfs-ns reads its YAML configuration (the same format as `buckyos ns --config FILE`). */
export const NS_CONFIG_KEY = 'services/ns/config';
/** Records an admin added through the API or CLI, beside those in the configuration: a JSON list of `nsRecord`. */
export const NS_RECORDS_KEY = 'services/ns/records';
export const NS_MAX_API_RECORDS = 10_000;

const count = z.number().int().nonnegative();
export const NS_RECORD_TYPES = ['A', 'AAAA', 'CNAME', 'TXT', 'SRV', 'MX', 'PTR', 'CAA'] as const;

export const nsRecord = z
  .object({
    name: z.string().min(1).max(253),
    type: z.enum(NS_RECORD_TYPES),
    /** As in the configuration's `local.records`: "192.168.1.10", "10 mail.lan", "0 5 5060 sip.lan"... */
    value: z.string().min(1).max(4000),
    ttl: z.number().int().min(0).max(604800).optional(),
  })
  .strict();
export type NsRecord = z.infer<typeof nsRecord>;

const stats = z
  .object({
    uptime_s: count,
    processes: count,
    queries: count,
    by_source: z.record(z.string(), count),
    rcodes: z.record(z.string(), count),
    cache: z.object({ entries: count, hits: count, misses: count, hit_ratio: z.number() }).passthrough(),
    latency: z.object({ p50_ms: z.number(), p90_ms: z.number(), p99_ms: z.number(), p999_ms: z.number() }),
    top_names: z.array(z.object({ name: z.string(), count })),
    top_blocked: z.array(z.object({ name: z.string(), count })),
    upstreams: z.array(z.object({ label: z.string(), group: z.string(), queries: count, failures: count, down: z.boolean(), rtt_ms: z.number() })),
    trusted: z.array(z.object({ label: z.string(), queries: count, cache_hits: count, failures: count, last_error: z.string().nullable() })),
  })
  .passthrough();

export const nsApi = defineService('ns', 'cyfs-ns, the zone DNS server: statistics, cache, records added by admins, lookups, fake-ip map-back and DHCP leases.', {
  status: method({
    params: z.object({}).strict(),
    result: z.object({
      /** The configuration in use: from system-config (`revision`), or the built-in default when none is set. */
      config: z.object({ source: z.enum(['system-config', 'default']), revision: z.number().int().nonnegative(), error: z.string().nullable() }),
      /** "address:port" of every DNS listener (UDP and TCP). */
      listening: z.array(z.string()),
      zone_names: count,
      api_records: count,
      /** Null while the server is not running (see `config.error`). */
      stats: stats.nullable(),
    }),
    doc: 'How the DNS server is doing: the configuration in use (and why a newer one was refused, with its lines), listeners, and statistics: queries by source and result, cache, latency percentiles, top and top blocked names, upstream health, trusted name spaces. Kernel services, and admins through the control panel or the CLI.',
  }),
  flush: method({
    params: z.object({}).strict(),
    result: z.object({ flushed: z.literal(true) }),
    doc: 'Empties every cache and re-reads hosts files and block lists (SIGHUP of the standalone server). A file that cannot be read leaves everything as it was and fails with FAILED_PRECONDITION naming it. Admins.',
  }),
  lookup: method({
    params: z.object({ name: z.string().min(1).max(253), type: z.string().regex(/^[A-Za-z0-9]{1,10}$/).default('A') }).strict(),
    result: z.object({ rcode: z.string(), answers: z.array(z.string()) }),
    doc: 'Asks this server a question as a client would (cache, local names, blocking, trusted names and upstreams all apply) and answers the records in presentation form. Admins.',
  }),
  records_list: method({
    params: z.object({}).strict(),
    result: z.object({ records: z.array(nsRecord), revision: z.number().int().nonnegative() }),
    doc: 'The records admins added through the API (those in the configuration file are not listed). Admins.',
  }),
  records_put: method({
    params: z.object({ record: nsRecord }).strict(),
    result: z.object({ records: count, revision: z.number().int().nonnegative() }),
    doc: 'Adds a record (an identical one is not added twice). Validated as the configuration validates local records: INVALID_PARAMS says what is wrong with the name or value, and a CNAME beside other data is refused. Admins.',
  }),
  records_delete: method({
    params: z.object({ name: z.string().min(1).max(253), type: z.enum(NS_RECORD_TYPES), value: z.string().max(4000).optional() }).strict(),
    result: z.object({ deleted: count, revision: z.number().int().nonnegative() }),
    doc: 'Removes the API records of a name and type (only the one with `value`, when given). NOT_FOUND when none matched. Admins.',
  }),
  fakeip_lookup: method({
    params: z.object({ ip: z.string().min(7).max(15) }).strict(),
    result: z.object({ name: z.string(), assigned_at: z.number(), last_used: z.number() }),
    doc: 'Which name a fake-ip address stands for: what the gateway proxy asks when a client connects to an address from the pool. NOT_FOUND when the address is in no mapping, FAILED_PRECONDITION when fake-ip is off. Kernel services and admins.',
  }),
  leases: method({
    params: z.object({}).strict(),
    result: z.object({
      leases: z.array(z.object({ mac: z.string(), address: z.string(), hostname: z.string().nullable(), expires_at: z.number().nullable(), static: z.boolean() })),
    }),
    doc: 'The DHCP server\'s leases, static ones included. FAILED_PRECONDITION when DHCP is off. Admins.',
  }),
});
