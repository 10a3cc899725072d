// The `fake_ip` section of the cyfs-ns configuration, validated as every other section is (config-reader.ts): each
// problem with its line and key path, unknown keys refused. Filter files are named here and read when the pool opens,
// as hosts files and block lists are.
import type { Reader, YamlNode } from './config-reader.ts';
import {
  DEFAULT_FAKE_IP_CIDR, DEFAULT_FAKE_IP_TTL, FakeIpPool, MAX_FAKE_IP_TTL, filterPatternProblem, loadFakeIpFilter, parsePoolCidr,
  type FakeIpPoolOptions,
} from './fakeip.ts';

export interface FakeIpConfig {
  /** Present and not `enabled: false`: A queries outside the filter get fake answers. */
  enabled: boolean;
  /** IPv4 CIDR, /12 to /30, without host bits. */
  cidr: string;
  /** Absolute path of the SQLite file holding the mappings. */
  db_file: string;
  /** TTL of fake answers (s). */
  ttl: number;
  /** Patterns of names that get real answers (fakeip.ts describes the forms). */
  filter: string[];
  /** Absolute paths of files with one pattern per line. */
  filter_files: string[];
}

const KEYS = ['enabled', 'cidr', 'db_file', 'ttl', 'filter', 'filter_files'] as const;

/**
 * Reads the value of `fake_ip` (null when the key is absent: fake-ip off, undefined returned). Problems go to `r`;
 * the result is undefined when there were any. `abs` resolves paths against the configuration file's directory.
 */
export function parseFakeIpConfig(r: Reader, node: YamlNode | null, abs: (p: string) => string): FakeIpConfig | undefined {
  if (node === null) return undefined;
  const before = r.problems.length;
  const m = r.map(node, 'fake_ip', KEYS);
  if (!m) return undefined;
  const c: FakeIpConfig = {
    enabled: true, cidr: DEFAULT_FAKE_IP_CIDR, db_file: abs('fakeip.db'), ttl: DEFAULT_FAKE_IP_TTL, filter: [], filter_files: [],
  };
  if (m.has('enabled')) {
    const v = r.bool(m.get('enabled'), 'fake_ip.enabled');
    if (v !== undefined) c.enabled = v;
  }
  if (m.has('cidr')) {
    const v = r.str(m.get('cidr'), 'fake_ip.cidr');
    const range = v === undefined ? undefined : parsePoolCidr(v);
    if (typeof range === 'string') r.err(m.get('cidr'), 'fake_ip.cidr', range);
    else if (v !== undefined) c.cidr = v;
  }
  if (m.has('db_file')) {
    const v = r.str(m.get('db_file'), 'fake_ip.db_file');
    if (v !== undefined) c.db_file = abs(v);
  }
  if (m.has('ttl')) {
    const v = r.int(m.get('ttl'), 'fake_ip.ttl', 0, MAX_FAKE_IP_TTL);
    if (v !== undefined) c.ttl = v;
  }
  if (m.has('filter')) {
    const items = r.seq(m.get('filter'), 'fake_ip.filter') ?? [];
    items.forEach((item, i) => {
      const v = r.str(item, `fake_ip.filter[${i}]`);
      if (v === undefined) return;
      const problem = filterPatternProblem(v);
      if (problem) r.err(item, `fake_ip.filter[${i}]`, problem);
      else c.filter.push(v);
    });
  }
  if (m.has('filter_files')) c.filter_files = r.strList(m.get('filter_files'), 'fake_ip.filter_files').map(abs);
  return r.problems.length === before ? c : undefined;
}

/**
 * Opens the pool a configuration describes, reading its filter files. Throws FakeIpError when a file cannot be read
 * or the database cannot be opened; `problems` lists filter-file lines that were left out, for the log.
 */
export function openFakeIpPool(c: FakeIpConfig, o: Pick<FakeIpPoolOptions, 'flushMs' | 'onError'> = {}): { pool: FakeIpPool; problems: string[] } {
  const { filter, problems } = loadFakeIpFilter(c.filter, c.filter_files);
  const pool = FakeIpPool.open({ cidr: c.cidr, dbFile: c.db_file, ttl: c.ttl, filter, ...o });
  return { pool, problems };
}
