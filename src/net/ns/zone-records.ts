// The names a zone's own DNS server knows without being told (docs/ns.md, "In a zone"): the zone's name, `sys.<zone>`
// and every installed app's `<app>.<zone>` lead to the zone's entry (its core devices), and `<device>.<zone>` to each
// device. Also the check of records admins add through the API, which must pass what the configuration file's
// records pass. Pure functions: the zone service feeds them what it read from system-config.
import type { RecordConfig } from './config.ts';
import { domainProblem, parseRecordValue } from './records.ts';
import { normalizeName, typeNumber } from './wire.ts';

export interface ZoneSnapshot {
  zone: string;
  devices: { name: string; role: string; addresses: string[] }[];
  /** App names installed by any user. */
  apps: string[];
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The zone's own records, in a stable order. `sys` and apps win over a device of the same name: they are what users
 * type into a browser, and a device stays reachable by address. */
export function zoneRecords(s: ZoneSnapshot): RecordConfig[] {
  const v4 = (d: ZoneSnapshot['devices'][number]) => d.addresses.filter((a) => !a.includes(':') && !a.startsWith('127.'));
  const devices = [...s.devices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // The zone is entered through its core devices (where the control plane runs); a zone whose core devices have not
  // reported an address yet falls back to any device that has.
  const core = devices.filter((d) => d.role === 'core').flatMap(v4);
  const entry = core.length > 0 ? core : devices.flatMap(v4);
  const out: RecordConfig[] = [];
  const add = (name: string, ips: readonly string[]) => {
    for (const ip of ips) out.push({ name, type: 'A', value: ip, ttl: null, line: 0 });
  };
  const taken = new Set<string>(['sys']);
  add(s.zone, entry);
  add(`sys.${s.zone}`, entry);
  for (const app of [...new Set(s.apps)].sort()) {
    if (!LABEL.test(app) || taken.has(app)) continue;
    taken.add(app);
    add(`${app}.${s.zone}`, entry);
  }
  for (const d of devices) {
    if (taken.has(d.name)) continue;
    add(`${d.name}.${s.zone}`, v4(d));
  }
  return out;
}

/** A record from the API as a RecordConfig, or what is wrong with it. */
export function checkApiRecord(r: { name: string; type: string; value: string; ttl?: number }): RecordConfig | string {
  const problem = domainProblem(r.name, true);
  if (problem) return `name: ${problem}`;
  const type = typeNumber(r.type);
  if (type === undefined) return `type: unknown type "${r.type}"`;
  const data = parseRecordValue(type, r.value);
  if (typeof data === 'string') return `value: ${data}`;
  return { name: normalizeName(r.name), type: r.type.toUpperCase(), value: r.value, ttl: r.ttl ?? null, line: 0 };
}

/** RFC 1034 §3.6.2 across a whole set: a name with a CNAME has no other record. */
export function cnameConflict(records: readonly RecordConfig[]): string | undefined {
  const types = new Map<string, string[]>();
  for (const r of records) types.set(r.name, [...(types.get(r.name) ?? []), r.type]);
  for (const [name, t] of types) {
    if (t.includes('CNAME') && t.length > 1) return `"${name}" would have a CNAME beside other records (RFC 1034 §3.6.2)`;
  }
  return undefined;
}
