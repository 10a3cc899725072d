// `buckyos service ns`: cyfs-ns as a zone kernel service (docs/ns.md, "In a zone"). It runs where an admin's
// `services/ns/spec` places it, reads its YAML configuration from system-config (`services/ns/config`, the format of
// `buckyos ns --config`), answers the zone's own names from system-config, serves the records admins add through the
// API (`services/ns/records`), and offers the admin API of src/lib/api/ns.ts on its kRPC port.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NS_CONFIG_KEY, NS_MAX_API_RECORDS, NS_RECORDS_KEY, type NsRecord, nsApi, nsRecord } from '../../lib/api/ns.ts';
import { type CallContext, KrpcError, createHttpApp, createKrpcEndpoint, listen } from '../../lib/krpc/index.ts';
import { NO_ROLES, type RoleOf, createOperatorAuthorize } from '../../lib/krpc/operators.ts';
import type { KernelRuntime } from '../../kernel/runtime.ts';
import { ConfigError, type NsConfig, parseNsConfig } from './config.ts';
import { ConfigRecords } from './local.ts';
import { type StartedNs, startNs } from './start.ts';
import type { NsStats } from './server.ts';
import { CLASS_IN, FLAG, RCODE, decodeMessage, encodeMessage, formatRData, isProblem, parseQuery, rcodeName, typeName, typeNumber } from './wire.ts';
import { checkApiRecord, cnameConflict, zoneRecords } from './zone-records.ts';

/** How often system-config is read for changes to the configuration, the records and the zone's devices and apps. */
const REFRESH_MS = 5000;
/** TTL of the zone's own names: short, because devices change addresses (DHCP) and the zone re-reads them often. */
const ZONE_NAMES_TTL = 60;
const API_RECORDS_TTL = 300;

/** The configuration a zone's DNS server starts on before an admin sets one: every address, port 53, and the
 * nameservers this device itself uses as upstreams. */
export function defaultZoneConfig(resolvConf: string): string {
  const servers = [...resolvConf.matchAll(/^\s*nameserver\s+(\S+)/gm)]
    .map((m) => m[1]!)
    // Never itself: a device whose resolver is its own cyfs-ns would forward in a loop.
    .filter((a) => !a.startsWith('127.') && a !== '::1' && !a.includes('%'));
  const upstreams = servers.length > 0 ? `upstreams:\n  groups:\n    default:\n      servers: [${servers.map((s) => JSON.stringify(s)).join(', ')}]\n` : '';
  return `listen:\n  addresses: [0.0.0.0]\n  port: 53\n${upstreams}`;
}

function readResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

export function parseApiRecords(value: string | null): NsRecord[] {
  if (value === null) return [];
  const parsed = nsRecord.array().max(NS_MAX_API_RECORDS).safeParse(JSON.parse(value));
  if (!parsed.success) throw new Error(`${NS_RECORDS_KEY} is malformed: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

export async function runNsService(rt: KernelRuntime, port: number, roleOf: RoleOf = NO_ROLES): Promise<{ close(): Promise<void> }> {
  const config = rt.configClient();
  const zone = rt.identity.boot.zone;
  const baseDir = join(rt.paths.etc, 'ns');
  const zoneNames = new ConfigRecords([], [zone], ZONE_NAMES_TTL, 'zone');
  const apiRecords = new ConfigRecords([], [], API_RECORDS_TTL, 'api');
  const authorize = createOperatorAuthorize(roleOf, 'the DNS server');
  let ns: StartedNs | null = null;
  let configRevision = -1;
  let configSource: 'system-config' | 'default' = 'default';
  let configError: string | null = null;
  let recordsRevision = -1;
  let apiCount = 0;
  let zoneCount = 0;
  let zoneKey = '';

  /** Starts on a new configuration; on failure the running server (if any) keeps serving and the error is shown. */
  async function applyConfig(text: string | null, revision: number): Promise<void> {
    const source = text === null ? 'default' : 'system-config';
    let cfg: NsConfig;
    try {
      cfg = parseNsConfig(text ?? defaultZoneConfig(readResolvConf()), source === 'default' ? 'default configuration' : NS_CONFIG_KEY, baseDir);
      if (cfg.workers > 1) throw new ConfigError(NS_CONFIG_KEY, [`${NS_CONFIG_KEY}: workers: a zone's DNS server answers its own names in one process; use workers: 1`]);
    } catch (err) {
      configRevision = revision;
      configError = (err as Error).message;
      rt.log.error({ err: configError }, 'DNS configuration refused; still serving the previous one');
      return;
    }
    const old = ns;
    // The new listeners may want the same ports: the old server lets go first, and comes back if the new one fails.
    if (old) await old.close();
    try {
      ns = await startNs(cfg, { log: rt.log, sources: [zoneNames, apiRecords] });
      configError = null;
      configSource = source;
      rt.log.info({ revision, source, port: ns.server.port }, 'DNS server started');
    } catch (err) {
      ns = null;
      configError = `starting on it failed: ${(err as Error).message}`;
      rt.log.error({ err: configError }, 'DNS configuration could not be started');
      if (old) ns = await startNs(old.config, { log: rt.log, sources: [zoneNames, apiRecords] }).catch(() => null);
    }
    configRevision = revision;
  }

  async function refresh(): Promise<void> {
    const cfg = await config.get({ key: NS_CONFIG_KEY });
    if (cfg.revision !== configRevision || (ns === null && configError === null)) await applyConfig(cfg.value, cfg.revision);
    const recs = await config.get({ key: NS_RECORDS_KEY });
    if (recs.revision !== recordsRevision) {
      try {
        const list = parseApiRecords(recs.value).map((r) => {
          const c = checkApiRecord(r);
          if (typeof c === 'string') throw new Error(`${r.name} ${r.type}: ${c}`);
          return c;
        });
        apiRecords.replace(list, [], API_RECORDS_TTL);
        apiCount = list.length;
      } catch (err) {
        rt.log.error({ err: (err as Error).message }, 'DNS records in system-config refused; keeping the previous ones');
      }
      recordsRevision = recs.revision;
    }
    const apps = await config.list({ prefix: 'users/', keys_only: true, limit: 10_000 });
    const appNames = apps.entries.map((e) => /^users\/[^/]+\/apps\/([^/]+)\/spec$/.exec(e.key)?.[1]).filter((a): a is string => a !== undefined);
    const devices = rt.devices().list().map((d) => ({ name: d.doc.name, role: d.doc.role, addresses: d.addresses }));
    const records = zoneRecords({ zone, devices, apps: appNames });
    const key = JSON.stringify(records);
    if (key !== zoneKey) {
      zoneNames.replace(records, [zone], ZONE_NAMES_TTL);
      zoneKey = key;
      zoneCount = records.length;
    }
  }

  /** `changes`: the call writes the zone's configuration (the API records), with this service's own token. */
  const admin = async (ctx: CallContext, changes = false) => authorize(ctx, changes);
  const running = (): StartedNs => {
    if (!ns) throw new KrpcError('UNAVAILABLE', `the DNS server is not running: ${configError ?? 'starting'}`);
    return ns;
  };

  /** Read-modify-write of the API records with a compare on the revision read, so two admins never lose a change. */
  async function changeRecords(change: (list: NsRecord[]) => NsRecord[]): Promise<{ list: NsRecord[]; revision: number }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await config.get({ key: NS_RECORDS_KEY });
      const list = change(parseApiRecords(cur.value));
      const checked = list.map((r) => checkApiRecord(r));
      const bad = checked.find((c): c is string => typeof c === 'string');
      if (bad) throw new KrpcError('INVALID_PARAMS', bad);
      const conflict = cnameConflict(checked as Exclude<(typeof checked)[number], string>[]);
      if (conflict) throw new KrpcError('INVALID_PARAMS', conflict);
      if (list.length > NS_MAX_API_RECORDS) throw new KrpcError('FAILED_PRECONDITION', `at most ${NS_MAX_API_RECORDS} records`);
      try {
        const { revision } = await config.set({ key: NS_RECORDS_KEY, value: JSON.stringify(list), expect_revision: cur.revision });
        await refresh().catch(() => undefined);
        return { list, revision };
      } catch (err) {
        if (!(err instanceof KrpcError) || err.code !== 'FAILED_PRECONDITION') throw err;
      }
    }
    throw new KrpcError('CONFLICT', 'the records kept changing under this change; try again');
  }

  const endpoint = createKrpcEndpoint(
    nsApi,
    {
      status: async (_p, ctx) => {
        await admin(ctx);
        const s = ns ? await ns.server.stats() : null;
        return {
          config: { source: configSource, revision: Math.max(configRevision, 0), error: configError },
          listening: ns ? ns.config.listen.addresses.map((a) => (a.includes(':') ? `[${a}]:${ns!.server.port}` : `${a}:${ns!.server.port}`)) : [],
          zone_names: zoneCount,
          api_records: apiCount,
          stats: s as (NsStats & Record<string, unknown>) | null,
        };
      },
      flush: async (_p, ctx) => {
        await admin(ctx);
        try {
          running().server.reload();
        } catch (err) {
          if (err instanceof KrpcError) throw err;
          throw new KrpcError('FAILED_PRECONDITION', `reload failed, nothing changed: ${(err as Error).message}`);
        }
        return { flushed: true as const };
      },
      lookup: async (p, ctx) => {
        await admin(ctx);
        const type = typeNumber(p.type);
        if (type === undefined) throw new KrpcError('INVALID_PARAMS', `type: unknown record type "${p.type}"`);
        let wire: Buffer;
        try {
          wire = encodeMessage({ id: 1, flags: FLAG.RD, question: { name: p.name, type, cls: CLASS_IN } });
        } catch (err) {
          throw new KrpcError('INVALID_PARAMS', `name: ${(err as Error).message}`);
        }
        const q = parseQuery(wire);
        if (!q || isProblem(q)) throw new KrpcError('INVALID_PARAMS', `name: "${p.name}" cannot be asked for`);
        const out = await running().server.resolver.handle(q, '127.0.0.1', 'udp', performance.now());
        const m = decodeMessage(out);
        return { rcode: rcodeName(m.rcode), answers: m.answers.map((rr) => `${rr.name} ${rr.ttl} IN ${typeName(rr.type)} ${formatRData(rr.type, rr.data)}`) };
      },
      records_list: async (_p, ctx) => {
        await admin(ctx);
        const cur = await config.get({ key: NS_RECORDS_KEY });
        return { records: parseApiRecords(cur.value), revision: cur.revision };
      },
      records_put: async (p, ctx) => {
        await admin(ctx, true);
        const same = (r: NsRecord) => r.name.toLowerCase() === p.record.name.toLowerCase() && r.type === p.record.type && r.value === p.record.value;
        const r = await changeRecords((list) => [...list.filter((x) => !same(x)), p.record]);
        rt.audit.emit({ kind: 'config_change', actor: ctx.principal?.userId ?? 'kernel', target: NS_RECORDS_KEY, detail: { put: p.record } });
        return { records: r.list.length, revision: r.revision };
      },
      records_delete: async (p, ctx) => {
        await admin(ctx, true);
        const hit = (r: NsRecord) => r.name.toLowerCase() === p.name.toLowerCase() && r.type === p.type && (p.value === undefined || r.value === p.value);
        let deleted = 0;
        const r = await changeRecords((list) => {
          const kept = list.filter((x) => !hit(x));
          deleted = list.length - kept.length;
          if (deleted === 0) throw new KrpcError('NOT_FOUND', `no API record ${p.name} ${p.type}${p.value === undefined ? '' : ` ${p.value}`}`);
          return kept;
        });
        rt.audit.emit({ kind: 'config_change', actor: ctx.principal?.userId ?? 'kernel', target: NS_RECORDS_KEY, detail: { deleted: { name: p.name, type: p.type, value: p.value } } });
        return { deleted, revision: r.revision };
      },
      fakeip_lookup: async (p, ctx) => {
        await admin(ctx);
        const pool = running().server.resolver.fakeIp;
        if (!pool) throw new KrpcError('FAILED_PRECONDITION', 'fake-ip is off (fake_ip in the DNS configuration)');
        if (!pool.contains(p.ip)) throw new KrpcError('INVALID_PARAMS', `ip: ${p.ip} is not in the fake-ip pool`);
        const m = pool.lookup(p.ip);
        if (!m) throw new KrpcError('NOT_FOUND', `${p.ip} stands for no name`);
        return m;
      },
      leases: async (_p, ctx) => {
        await admin(ctx);
        const dhcp = running().dhcp;
        if (!dhcp) throw new KrpcError('FAILED_PRECONDITION', 'DHCP is off (dhcp in the DNS configuration)');
        return { leases: dhcp.leases() };
      },
    },
    { authenticate: rt.authenticate, logger: rt.log },
  );

  const server = await listen(
    createHttpApp({ name: 'ns', endpoints: [endpoint], health: () => ({ dns: ns !== null, config_error: configError }) }),
    port,
    rt.config.service_host,
  );
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const loop = async () => {
    try {
      await refresh();
    } catch (err) {
      rt.log.warn({ err: (err as Error).message }, 'reading the DNS configuration from system-config failed; retrying');
    }
    if (!stopped) timer = setTimeout(() => void loop(), REFRESH_MS);
  };
  await loop();
  rt.log.info({ port: server.port, host: rt.config.service_host }, 'ns admin API listening');
  return {
    async close() {
      stopped = true;
      clearTimeout(timer);
      await server.close();
      await ns?.close();
      zoneNames.replace([], [zone], ZONE_NAMES_TTL);
    },
  };
}
