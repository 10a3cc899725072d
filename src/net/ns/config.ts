// cyfs-ns configuration: one YAML file, validated completely at load. Every problem is reported with its line and
// the key it concerns, all of them at once, and an unknown key is an error: a misspelt option must never be silently
// ignored on a machine that answers every name its network asks for.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml';
import { Reader } from './config-reader.ts';
import { type FakeIpConfig, parseFakeIpConfig } from './fakeip-config.ts';
import { type DhcpConfig, parseDhcpConfig } from './dhcp-config.ts';
import { type TrustedNamesConfig, defaultTrustedNames, parseTrustedNamesConfig } from './trusted-config.ts';
import { CidrMap, parseIP } from './ip.ts';
import { normalizeName, typeNumber } from './wire.ts';
import { domainProblem, parseRecordValue } from './records.ts';

export type Strategy = 'fallback' | 'parallel';
export type Protocol = 'udp' | 'tcp' | 'tls' | 'https';
export type BlockAnswer = 'nxdomain' | 'zero_ip';

export interface UpstreamConfig {
  /** As written, for logs and statistics. */
  url: string;
  protocol: Protocol;
  /** Host as written in the URL (a name is used for TLS verification). */
  host: string;
  /** IP address connected to. */
  address: string;
  port: number;
  /** HTTP path (https only). */
  path: string;
  /** Name the TLS certificate must carry (tls, https). */
  server_name: string;
  /** Extra CA certificates (PEM) trusted for this upstream, besides the system's. */
  ca_file: string | null;
}

export interface GroupConfig {
  strategy: Strategy;
  timeout_ms: number;
  servers: UpstreamConfig[];
}

/** A local record as validated text; local.ts turns it into wire data. */
export interface RecordConfig {
  name: string;
  type: string;
  value: string | string[];
  ttl: number | null;
  line: number;
}

export interface BlockListConfig {
  name: string;
  file: string;
}

export interface PolicyConfig {
  name: string;
  lists: string[];
  allow: string[];
  deny: string[];
  answer: BlockAnswer;
}

export interface NsConfig {
  /** The file this came from ("" for configuration built in code); relative paths were resolved against it. */
  file: string;
  listen: { addresses: string[]; port: number; tcp: boolean };
  doh: { address: string; port: number; path: string; tls: { cert_file: string; key_file: string } | null } | null;
  workers: number;
  edns_udp_size: number;
  limits: { max_pending: number; tcp_idle_ms: number; tcp_max_connections: number };
  cache: {
    max_entries: number;
    min_ttl: number;
    max_ttl: number;
    negative_max_ttl: number;
    serve_stale: { enabled: boolean; max_stale: number; answer_ttl: number; client_timeout_ms: number; retry_after: number };
    prefetch: { enabled: boolean; min_hits: number; threshold: number };
  };
  upstreams: { groups: Record<string, GroupConfig>; health: { fail_threshold: number; down_ms: number } };
  routes: { suffix: string; group: string }[];
  local: { domains: string[]; ttl: number; negative_ttl: number; hosts_files: string[]; records: RecordConfig[] };
  blocking: {
    answer: BlockAnswer;
    ttl: number;
    lists: BlockListConfig[];
    allow: string[];
    deny: string[];
    policies: PolicyConfig[];
    clients: { cidr: string; policy: string }[];
  };
  stats: { top: number };
  query_log: { enabled: boolean };
  log: { level: string; dir: string | null };
  /** The DHCPv4 server (dhcp-config.ts, docs/ns-dhcp.md); null: off. */
  dhcp: DhcpConfig | null;
  trusted_names: TrustedNamesConfig;
  /** Null when absent or `enabled: false`. */
  fake_ip: FakeIpConfig | null;
}

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file || 'configuration'} has ${problems.length} error${problems.length === 1 ? '' : 's'}:\n  ${problems.join('\n  ')}`);
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function hostPort(text: string, defaultPort: number): { host: string; port: number } | string {
  const m = /^\[([^\]]+)\](?::([0-9]+))?$/.exec(text) ?? /^([^:]+)(?::([0-9]+))?$/.exec(text);
  if (!m) return parseIP(text) ? { host: text, port: defaultPort } : `"${text}" is not host[:port]`;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `port "${m[2]}" must be 1-65535`;
  return { host: m[1], port };
}

const DEFAULT_PORT: Record<Protocol, number> = { udp: 53, tcp: 53, tls: 853, https: 443 };

function parseUpstream(r: Reader, node: YamlNode | null, path: string, baseDir: string): UpstreamConfig | undefined {
  let url: string | undefined;
  let address: string | undefined;
  let serverName: string | undefined;
  let caFile: string | null = null;
  if (isMap(node)) {
    const m = r.map(node, path, ['url', 'address', 'server_name', 'ca_file']);
    if (!m) return undefined;
    if (!m.has('url')) {
      r.err(node, path, 'needs a url (udp://, tcp://, tls://, https:// or a bare IP address)');
      return undefined;
    }
    url = r.str(m.get('url'), `${path}.url`);
    if (m.has('address')) {
      address = r.str(m.get('address'), `${path}.address`);
      if (address !== undefined && !parseIP(address)) {
        r.err(m.get('address'), `${path}.address`, `"${address}" is not an IP address`);
        address = undefined;
      }
    }
    if (m.has('server_name')) serverName = r.str(m.get('server_name'), `${path}.server_name`);
    if (m.has('ca_file')) {
      const f = r.str(m.get('ca_file'), `${path}.ca_file`);
      if (f !== undefined) caFile = resolve(baseDir, f);
    }
  } else {
    url = r.str(node, path);
  }
  if (url === undefined) return undefined;
  const scheme = /^([a-z]+):\/\//.exec(url);
  const protocol = (scheme ? scheme[1] : 'udp') as Protocol;
  if (!(protocol in DEFAULT_PORT)) {
    r.err(node, path, `"${url}": unknown scheme "${protocol}://" (udp, tcp, tls, https)`);
    return undefined;
  }
  let rest = scheme ? url.slice(scheme[0].length) : url;
  let urlPath = '';
  if (protocol === 'https') {
    const slash = rest.indexOf('/');
    urlPath = slash < 0 ? '/dns-query' : rest.slice(slash);
    rest = slash < 0 ? rest : rest.slice(0, slash);
  } else if (rest.includes('/')) {
    r.err(node, path, `"${url}": only https:// upstreams take a path`);
    return undefined;
  }
  const hp = hostPort(rest, DEFAULT_PORT[protocol]);
  if (typeof hp === 'string') {
    r.err(node, path, `"${url}": ${hp}`);
    return undefined;
  }
  const hostIsIp = parseIP(hp.host) !== undefined;
  if (!hostIsIp && address === undefined) {
    r.err(node, path, `"${url}": the host "${hp.host}" is a name; give its IP with "address:" (cyfs-ns cannot ask itself where its own upstream is)`);
    return undefined;
  }
  if (!hostIsIp && (protocol === 'udp' || protocol === 'tcp')) {
    r.err(node, path, `"${url}": plain ${protocol} upstreams take an IP address, not a name`);
    return undefined;
  }
  if (serverName !== undefined && protocol !== 'tls' && protocol !== 'https') r.err(node, path, 'server_name applies to tls:// and https:// upstreams only');
  if (caFile !== null && protocol !== 'tls' && protocol !== 'https') r.err(node, path, 'ca_file applies to tls:// and https:// upstreams only');
  return {
    url, protocol, host: hp.host, address: address ?? hp.host, port: hp.port, path: urlPath, server_name: serverName ?? hp.host, ca_file: caFile,
  };
}

export function defaultConfig(): NsConfig {
  return {
    file: '',
    listen: { addresses: ['0.0.0.0'], port: 53, tcp: true },
    doh: null,
    workers: 1,
    edns_udp_size: 1232,
    limits: { max_pending: 10000, tcp_idle_ms: 10000, tcp_max_connections: 1000 },
    cache: {
      max_entries: 100000,
      min_ttl: 0,
      max_ttl: 86400,
      negative_max_ttl: 3600,
      serve_stale: { enabled: true, max_stale: 86400, answer_ttl: 30, client_timeout_ms: 1800, retry_after: 30 },
      prefetch: { enabled: true, min_hits: 3, threshold: 0.1 },
    },
    upstreams: { groups: {}, health: { fail_threshold: 3, down_ms: 30000 } },
    routes: [],
    local: { domains: [], ttl: 300, negative_ttl: 60, hosts_files: [], records: [] },
    blocking: { answer: 'nxdomain', ttl: 60, lists: [], allow: [], deny: [], policies: [], clients: [] },
    stats: { top: 20 },
    query_log: { enabled: false },
    log: { level: 'info', dir: null },
    dhcp: null,
    trusted_names: defaultTrustedNames(),
    fake_ip: null,
  };
}

/** Parses and validates configuration text; throws ConfigError listing every problem. `file` names the text in
 * messages; relative paths resolve against `baseDir`, by default the file's directory. */
export function parseNsConfig(text: string, file: string, baseDir?: string): NsConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const label = file || 'configuration';
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => `${label}:${e.linePos?.[0].line ?? lines.linePos(e.pos[0]).line}: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`));
  }
  const r = new Reader(label, lines);
  const base = baseDir ?? (file ? dirname(resolve(file)) : process.cwd());
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const c = defaultConfig();
  c.file = file;
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return c;
  const top = r.map(doc.contents as YamlNode, '', [
    'listen', 'doh', 'workers', 'edns_udp_size', 'limits', 'cache', 'upstreams', 'routes', 'local', 'blocking', 'stats', 'query_log', 'log', 'trusted_names', 'fake_ip', 'dhcp',
  ]);
  if (!top) throw new ConfigError(file, r.problems);
  const set = <T>(v: T | undefined, apply: (v: T) => void) => {
    if (v !== undefined) apply(v);
  };

  const listen = top.get('listen');
  if (top.has('listen')) {
    const m = r.map(listen, 'listen', ['addresses', 'port', 'tcp']);
    if (m?.has('addresses')) {
      const addrs = r.strList(m.get('addresses'), 'listen.addresses');
      addrs.forEach((a, i) => {
        if (!parseIP(a)) r.err(m.get('addresses'), `listen.addresses[${i}]`, `"${a}" is not an IP address`);
      });
      if (addrs.length === 0) r.err(m.get('addresses'), 'listen.addresses', 'must list at least one address');
      c.listen.addresses = addrs;
    }
    if (m?.has('port')) set(r.int(m.get('port'), 'listen.port', 0, 65535), (v) => (c.listen.port = v));
    if (m?.has('tcp')) set(r.bool(m.get('tcp'), 'listen.tcp'), (v) => (c.listen.tcp = v));
  }

  if (top.has('doh')) {
    const node = top.get('doh');
    const m = r.map(node, 'doh', ['address', 'port', 'path', 'tls']);
    if (m) {
      const doh: NonNullable<NsConfig['doh']> = { address: '127.0.0.1', port: 0, path: '/dns-query', tls: null };
      if (m.has('address')) {
        set(r.str(m.get('address'), 'doh.address'), (v) => {
          if (!parseIP(v)) r.err(m.get('address'), 'doh.address', `"${v}" is not an IP address`);
          doh.address = v;
        });
      }
      if (m.has('port')) set(r.int(m.get('port'), 'doh.port', 0, 65535), (v) => (doh.port = v));
      else r.err(node, 'doh', 'needs a port');
      if (m.has('path')) {
        set(r.str(m.get('path'), 'doh.path'), (v) => {
          if (!v.startsWith('/') || v.includes('?')) r.err(m.get('path'), 'doh.path', 'must start with "/" and have no query string');
          doh.path = v;
        });
      }
      if (m.has('tls')) {
        const t = r.map(m.get('tls'), 'doh.tls', ['cert_file', 'key_file']);
        if (t) {
          const cert = t.has('cert_file') ? r.str(t.get('cert_file'), 'doh.tls.cert_file') : undefined;
          const key = t.has('key_file') ? r.str(t.get('key_file'), 'doh.tls.key_file') : undefined;
          if (!t.has('cert_file') || !t.has('key_file')) r.err(m.get('tls'), 'doh.tls', 'needs both cert_file and key_file');
          if (cert !== undefined && key !== undefined) doh.tls = { cert_file: abs(cert), key_file: abs(key) };
        }
      }
      c.doh = doh;
    }
  }

  if (top.has('workers')) set(r.int(top.get('workers'), 'workers', 1, 64), (v) => (c.workers = v));
  if (top.has('edns_udp_size')) set(r.int(top.get('edns_udp_size'), 'edns_udp_size', 512, 4096), (v) => (c.edns_udp_size = v));

  if (top.has('limits')) {
    const m = r.map(top.get('limits'), 'limits', ['max_pending', 'tcp_idle_ms', 'tcp_max_connections']);
    if (m?.has('max_pending')) set(r.int(m.get('max_pending'), 'limits.max_pending', 1, 1_000_000), (v) => (c.limits.max_pending = v));
    if (m?.has('tcp_idle_ms')) set(r.int(m.get('tcp_idle_ms'), 'limits.tcp_idle_ms', 100, 600_000), (v) => (c.limits.tcp_idle_ms = v));
    if (m?.has('tcp_max_connections')) {
      set(r.int(m.get('tcp_max_connections'), 'limits.tcp_max_connections', 1, 100_000), (v) => (c.limits.tcp_max_connections = v));
    }
  }

  if (top.has('cache')) {
    const m = r.map(top.get('cache'), 'cache', ['max_entries', 'min_ttl', 'max_ttl', 'negative_max_ttl', 'serve_stale', 'prefetch']);
    const cc = c.cache;
    if (m?.has('max_entries')) set(r.int(m.get('max_entries'), 'cache.max_entries', 0, 10_000_000), (v) => (cc.max_entries = v));
    if (m?.has('min_ttl')) set(r.int(m.get('min_ttl'), 'cache.min_ttl', 0, 86400), (v) => (cc.min_ttl = v));
    if (m?.has('max_ttl')) set(r.int(m.get('max_ttl'), 'cache.max_ttl', 1, 604800), (v) => (cc.max_ttl = v));
    if (m?.has('negative_max_ttl')) set(r.int(m.get('negative_max_ttl'), 'cache.negative_max_ttl', 0, 86400), (v) => (cc.negative_max_ttl = v));
    if (cc.min_ttl > cc.max_ttl) r.err(m?.get('min_ttl'), 'cache.min_ttl', `is above cache.max_ttl (${cc.max_ttl})`);
    if (m?.has('serve_stale')) {
      const s = r.map(m.get('serve_stale'), 'cache.serve_stale', ['enabled', 'max_stale', 'answer_ttl', 'client_timeout_ms', 'retry_after']);
      const ss = cc.serve_stale;
      if (s?.has('enabled')) set(r.bool(s.get('enabled'), 'cache.serve_stale.enabled'), (v) => (ss.enabled = v));
      if (s?.has('max_stale')) set(r.int(s.get('max_stale'), 'cache.serve_stale.max_stale', 1, 604800), (v) => (ss.max_stale = v));
      if (s?.has('answer_ttl')) set(r.int(s.get('answer_ttl'), 'cache.serve_stale.answer_ttl', 1, 3600), (v) => (ss.answer_ttl = v));
      if (s?.has('client_timeout_ms')) {
        set(r.int(s.get('client_timeout_ms'), 'cache.serve_stale.client_timeout_ms', 0, 60000), (v) => (ss.client_timeout_ms = v));
      }
      if (s?.has('retry_after')) set(r.int(s.get('retry_after'), 'cache.serve_stale.retry_after', 0, 3600), (v) => (ss.retry_after = v));
    }
    if (m?.has('prefetch')) {
      const p = r.map(m.get('prefetch'), 'cache.prefetch', ['enabled', 'min_hits', 'threshold']);
      const pf = cc.prefetch;
      if (p?.has('enabled')) set(r.bool(p.get('enabled'), 'cache.prefetch.enabled'), (v) => (pf.enabled = v));
      if (p?.has('min_hits')) set(r.int(p.get('min_hits'), 'cache.prefetch.min_hits', 1, 255), (v) => (pf.min_hits = v));
      if (p?.has('threshold')) set(r.num(p.get('threshold'), 'cache.prefetch.threshold', 0.01, 0.9), (v) => (pf.threshold = v));
    }
  }

  if (top.has('upstreams')) {
    const m = r.map(top.get('upstreams'), 'upstreams', ['groups', 'health']);
    if (m?.has('groups')) {
      const groups = r.map(m.get('groups'), 'upstreams.groups', [...groupNames(m.get('groups'))]);
      for (const [name, node] of groups ?? []) {
        const path = `upstreams.groups.${name}`;
        if (!/^[a-z0-9_-]+$/.test(name)) r.err(node, path, 'group names use a-z, 0-9, "_" and "-"');
        const g = r.map(node, path, ['strategy', 'timeout_ms', 'servers']);
        if (!g) continue;
        const group: GroupConfig = { strategy: 'fallback', timeout_ms: 2000, servers: [] };
        if (g.has('strategy')) set(r.oneOf(g.get('strategy'), `${path}.strategy`, ['fallback', 'parallel'] as const), (v) => (group.strategy = v));
        if (g.has('timeout_ms')) set(r.int(g.get('timeout_ms'), `${path}.timeout_ms`, 50, 60000), (v) => (group.timeout_ms = v));
        if (!g.has('servers')) r.err(node, path, 'needs servers');
        else {
          const items = r.seq(g.get('servers'), `${path}.servers`) ?? [];
          items.forEach((item, i) => {
            const u = parseUpstream(r, item, `${path}.servers[${i}]`, base);
            if (u) group.servers.push(u);
          });
          if (items.length === 0) r.err(g.get('servers'), `${path}.servers`, 'must list at least one server');
        }
        c.upstreams.groups[name] = group;
      }
    }
    if (m?.has('health')) {
      const h = r.map(m.get('health'), 'upstreams.health', ['fail_threshold', 'down_ms']);
      if (h?.has('fail_threshold')) set(r.int(h.get('fail_threshold'), 'upstreams.health.fail_threshold', 1, 100), (v) => (c.upstreams.health.fail_threshold = v));
      if (h?.has('down_ms')) set(r.int(h.get('down_ms'), 'upstreams.health.down_ms', 100, 3_600_000), (v) => (c.upstreams.health.down_ms = v));
    }
  }

  if (top.has('routes')) {
    const items = r.seq(top.get('routes'), 'routes') ?? [];
    const seen = new Set<string>();
    items.forEach((item, i) => {
      const path = `routes[${i}]`;
      const m = r.map(item, path, ['suffix', 'group']);
      if (!m) return;
      const suffix = m.has('suffix') ? r.str(m.get('suffix'), `${path}.suffix`) : (r.err(item, path, 'needs a suffix'), undefined);
      const group = m.has('group') ? r.str(m.get('group'), `${path}.group`) : (r.err(item, path, 'needs a group'), undefined);
      if (suffix === undefined || group === undefined) return;
      const problem = domainProblem(suffix, false);
      if (problem) return r.err(m.get('suffix'), `${path}.suffix`, problem);
      if (!c.upstreams.groups[group]) return r.err(m.get('group'), `${path}.group`, `no upstream group "${group}" (upstreams.groups)`);
      const norm = normalizeName(suffix);
      if (seen.has(norm)) return r.err(m.get('suffix'), `${path}.suffix`, `"${suffix}" is routed twice`);
      seen.add(norm);
      c.routes.push({ suffix: norm, group });
    });
  }

  if (top.has('local')) {
    const m = r.map(top.get('local'), 'local', ['domains', 'ttl', 'negative_ttl', 'hosts_files', 'records']);
    if (m?.has('domains')) {
      const list = r.strList(m.get('domains'), 'local.domains');
      list.forEach((d, i) => {
        const problem = domainProblem(d, false);
        if (problem) r.err(m.get('domains'), `local.domains[${i}]`, problem);
      });
      c.local.domains = list.map(normalizeName);
    }
    if (m?.has('ttl')) set(r.int(m.get('ttl'), 'local.ttl', 0, 604800), (v) => (c.local.ttl = v));
    if (m?.has('negative_ttl')) set(r.int(m.get('negative_ttl'), 'local.negative_ttl', 0, 86400), (v) => (c.local.negative_ttl = v));
    if (m?.has('hosts_files')) c.local.hosts_files = r.strList(m.get('hosts_files'), 'local.hosts_files').map(abs);
    if (m?.has('records')) {
      const items = r.seq(m.get('records'), 'local.records') ?? [];
      const owners = new Map<string, { cname: boolean; other: boolean }>();
      items.forEach((item, i) => {
        const rec = parseRecordNode(r, item, `local.records[${i}]`);
        if (!rec) return;
        const o = owners.get(rec.name) ?? { cname: false, other: false };
        const isCname = rec.type === 'CNAME';
        // RFC 1034 §3.6.2: a name with a CNAME has no other data, and only one CNAME.
        if (isCname ? o.cname || o.other : o.cname) {
          r.err(item, `local.records[${i}]`, `"${rec.name}" has a CNAME, so it can have no other record (RFC 1034 §3.6.2)`);
          return;
        }
        owners.set(rec.name, { cname: o.cname || isCname, other: o.other || !isCname });
        c.local.records.push(rec);
      });
    }
  }

  if (top.has('blocking')) parseBlocking(r, top.get('blocking') ?? null, c, abs);

  if (top.has('stats')) {
    const m = r.map(top.get('stats'), 'stats', ['top']);
    if (m?.has('top')) set(r.int(m.get('top'), 'stats.top', 1, 1000), (v) => (c.stats.top = v));
  }
  if (top.has('query_log')) {
    const m = r.map(top.get('query_log'), 'query_log', ['enabled']);
    if (m?.has('enabled')) set(r.bool(m.get('enabled'), 'query_log.enabled'), (v) => (c.query_log.enabled = v));
  }
  if (top.has('log')) {
    const m = r.map(top.get('log'), 'log', ['level', 'dir']);
    if (m?.has('level')) set(r.oneOf(m.get('level'), 'log.level', LOG_LEVELS), (v) => (c.log.level = v));
    if (m?.has('dir')) set(r.str(m.get('dir'), 'log.dir'), (v) => (c.log.dir = abs(v)));
  }

  if (top.has('trusted_names')) c.trusted_names = parseTrustedNamesConfig(r, top.get('trusted_names') ?? null, abs);
  if (top.has('fake_ip')) {
    const f = parseFakeIpConfig(r, top.get('fake_ip') ?? null, abs);
    if (f?.enabled) c.fake_ip = f;
    // One pool per server: workers would hand out the same address to different names.
    if (f?.enabled && c.workers > 1) r.err(top.get('workers'), 'workers', 'fake_ip needs workers: 1 (the pool lives in one process)');
  }

  if (top.has('dhcp')) {
    c.dhcp = parseDhcpConfig(r, top.get('dhcp') ?? null, abs);
    // Client names are a local source in the primary process, which workers would not see.
    if (c.workers > 1) r.err(top.get('workers'), 'workers', 'must be 1 when dhcp is set (the DHCP names live in one process)');
  }

  if (r.problems.length > 0) throw new ConfigError(file, r.problems);
  return c;
}

/** Group names are user-chosen keys: all of a mapping's keys are allowed, and checked for their form instead. */
function groupNames(node: YamlNode | null | undefined): string[] {
  if (!isMap(node)) return [];
  return node.items.map((p) => (isScalar(p.key) ? String(p.key.value) : '')).filter(Boolean);
}

function parseRecordNode(r: Reader, item: YamlNode | null, path: string): RecordConfig | undefined {
  const m = r.map(item, path, ['name', 'type', 'value', 'ttl']);
  if (!m) return undefined;
  for (const k of ['name', 'type', 'value']) if (!m.has(k)) r.err(item, path, `needs a ${k}`);
  const name = m.has('name') ? r.str(m.get('name'), `${path}.name`) : undefined;
  const type = m.has('type') ? r.str(m.get('type'), `${path}.type`) : undefined;
  let value: string | string[] | undefined;
  const vnode = m.get('value');
  if (m.has('value')) {
    if (isSeq(vnode)) value = r.strList(vnode, `${path}.value`);
    else {
      const v = r.scalar(vnode);
      // Unquoted numbers are fine where the value is text anyway (a TXT of "42").
      value = typeof v === 'number' ? String(v) : r.str(vnode, `${path}.value`);
    }
  }
  const ttl = m.has('ttl') ? r.int(m.get('ttl'), `${path}.ttl`, 0, 604800) : null;
  if (name === undefined || type === undefined || value === undefined || ttl === undefined) return undefined;
  const problem = domainProblem(name, true);
  if (problem) {
    r.err(m.get('name'), `${path}.name`, problem);
    return undefined;
  }
  const tnum = typeNumber(type);
  if (tnum === undefined) {
    r.err(m.get('type'), `${path}.type`, `unknown type "${type}" (A, AAAA, CNAME, TXT, SRV, MX, PTR, NS, CAA, or TYPEnnn with a "\\# len hex" value)`);
    return undefined;
  }
  const rec: RecordConfig = { name: normalizeName(name), type: type.toUpperCase(), value, ttl, line: r.line(item) };
  const why = parseRecordValue(tnum, value);
  if (typeof why === 'string') {
    r.err(vnode, `${path}.value`, why);
    return undefined;
  }
  return rec;
}

function parseBlocking(r: Reader, node: YamlNode | null, c: NsConfig, abs: (p: string) => string): void {
  const m = r.map(node, 'blocking', ['answer', 'ttl', 'lists', 'allow', 'deny', 'policies', 'clients']);
  if (!m) return;
  const b = c.blocking;
  const answers = ['nxdomain', 'zero_ip'] as const;
  if (m.has('answer')) {
    const v = r.oneOf(m.get('answer'), 'blocking.answer', answers);
    if (v) b.answer = v;
  }
  if (m.has('ttl')) {
    const v = r.int(m.get('ttl'), 'blocking.ttl', 0, 86400);
    if (v !== undefined) b.ttl = v;
  }
  const ruleList = (n: YamlNode | null | undefined, path: string): string[] => {
    const list = r.strList(n, path);
    list.forEach((d, i) => {
      const problem = domainProblem(d, false);
      if (problem) r.err(n, `${path}[${i}]`, problem);
    });
    return list.map(normalizeName);
  };
  if (m.has('allow')) b.allow = ruleList(m.get('allow'), 'blocking.allow');
  if (m.has('deny')) b.deny = ruleList(m.get('deny'), 'blocking.deny');
  if (m.has('lists')) {
    (r.seq(m.get('lists'), 'blocking.lists') ?? []).forEach((item, i) => {
      const path = `blocking.lists[${i}]`;
      const l = r.map(item, path, ['name', 'file']);
      if (!l) return;
      const name = l.has('name') ? r.str(l.get('name'), `${path}.name`) : (r.err(item, path, 'needs a name'), undefined);
      const file = l.has('file') ? r.str(l.get('file'), `${path}.file`) : (r.err(item, path, 'needs a file'), undefined);
      if (name === undefined || file === undefined) return;
      if (b.lists.some((x) => x.name === name)) return r.err(l.get('name'), `${path}.name`, `list "${name}" is defined twice`);
      b.lists.push({ name, file: abs(file) });
    });
  }
  if (m.has('policies')) {
    (r.seq(m.get('policies'), 'blocking.policies') ?? []).forEach((item, i) => {
      const path = `blocking.policies[${i}]`;
      const p = r.map(item, path, ['name', 'lists', 'allow', 'deny', 'answer']);
      if (!p) return;
      const name = p.has('name') ? r.str(p.get('name'), `${path}.name`) : (r.err(item, path, 'needs a name'), undefined);
      if (name === undefined) return;
      if (b.policies.some((x) => x.name === name)) return r.err(p.get('name'), `${path}.name`, `policy "${name}" is defined twice`);
      const lists = p.has('lists') ? r.strList(p.get('lists'), `${path}.lists`) : b.lists.map((l) => l.name);
      lists.forEach((l, j) => {
        if (!b.lists.some((x) => x.name === l)) r.err(p.get('lists'), `${path}.lists[${j}]`, `no block list named "${l}" (blocking.lists)`);
      });
      const answer = p.has('answer') ? r.oneOf(p.get('answer'), `${path}.answer`, answers) : b.answer;
      b.policies.push({
        name, lists,
        allow: p.has('allow') ? ruleList(p.get('allow'), `${path}.allow`) : [],
        deny: p.has('deny') ? ruleList(p.get('deny'), `${path}.deny`) : [],
        answer: answer ?? b.answer,
      });
    });
  }
  if (m.has('clients')) {
    const cidrs = new CidrMap<true>();
    (r.seq(m.get('clients'), 'blocking.clients') ?? []).forEach((item, i) => {
      const path = `blocking.clients[${i}]`;
      const cl = r.map(item, path, ['cidr', 'policy']);
      if (!cl) return;
      const cidr = cl.has('cidr') ? r.str(cl.get('cidr'), `${path}.cidr`) : (r.err(item, path, 'needs a cidr'), undefined);
      const policy = cl.has('policy') ? r.str(cl.get('policy'), `${path}.policy`) : (r.err(item, path, 'needs a policy'), undefined);
      if (cidr === undefined || policy === undefined) return;
      const problem = cidrs.add(cidr, true);
      if (problem) return r.err(cl.get('cidr'), `${path}.cidr`, problem);
      if (policy !== 'default' && !b.policies.some((x) => x.name === policy)) {
        return r.err(cl.get('policy'), `${path}.policy`, `no policy named "${policy}" (blocking.policies)`);
      }
      b.clients.push({ cidr, policy });
    });
  }
}

export function loadNsConfig(path: string): NsConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`${path}: cannot read: ${(err as Error).message}`]);
  }
  return parseNsConfig(text, path);
}
