// The `trusted_names` section of the cyfs-ns configuration: which name spaces are answered only after verification,
// and how. Zones are trusted by their owner key, pinned here (docs/ns-zone-names.md); ENS through an Ethereum
// JSON-RPC endpoint (docs/ns-ens.md).
import { publicKeyFromB64 } from '../../lib/identity/keys.ts';
import { type Reader, type YamlNode } from './config-reader.ts';
import { type EnsConfig, parseEnsConfig } from './ens-config.ts';
import { domainProblem } from './records.ts';
import { normalizeName } from './wire.ts';
import type { ZoneNamesConfig } from './zone-names.ts';

export interface TrustedNamesConfig {
  zones: ZoneNamesConfig;
  ens: EnsConfig | null;
}

export function defaultTrustedNames(): TrustedNamesConfig {
  return { zones: { zones: [], timeout_ms: 3000, max_ttl: 3600 }, ens: null };
}

export function parseTrustedNamesConfig(r: Reader, node: YamlNode | null, abs: (p: string) => string): TrustedNamesConfig {
  const out = defaultTrustedNames();
  const m = r.map(node, 'trusted_names', ['zones', 'timeout_ms', 'max_ttl', 'ens']);
  if (!m) return out;
  const z = out.zones;
  if (m.has('timeout_ms')) z.timeout_ms = r.int(m.get('timeout_ms'), 'trusted_names.timeout_ms', 100, 60_000) ?? z.timeout_ms;
  if (m.has('max_ttl')) z.max_ttl = r.int(m.get('max_ttl'), 'trusted_names.max_ttl', 0, 86_400) ?? z.max_ttl;
  if (m.has('zones')) {
    (r.seq(m.get('zones'), 'trusted_names.zones') ?? []).forEach((item, i) => {
      const path = `trusted_names.zones[${i}]`;
      const e = r.map(item, path, ['zone', 'owner_key']);
      if (!e) return;
      const zone = e.has('zone') ? r.str(e.get('zone'), `${path}.zone`) : (r.err(item, path, 'needs a zone'), undefined);
      const key = e.has('owner_key') ? r.str(e.get('owner_key'), `${path}.owner_key`) : (r.err(item, path, 'needs an owner_key'), undefined);
      if (zone === undefined || key === undefined) return;
      const problem = domainProblem(zone, false);
      if (problem) return r.err(e.get('zone'), `${path}.zone`, problem);
      const name = normalizeName(zone);
      if (z.zones.some((t) => t.zone === name)) return r.err(e.get('zone'), `${path}.zone`, `"${name}" is listed twice`);
      try {
        if (!/^[A-Za-z0-9_-]{43}$/.test(key)) throw new Error('length');
        publicKeyFromB64(key);
      } catch {
        return r.err(e.get('owner_key'), `${path}.owner_key`, 'must be the zone owner\'s Ed25519 public key in base64url (43 characters), as `buckyos zone dns-records` prints it');
      }
      z.zones.push({ zone: name, owner_key: key });
    });
  }
  if (m.has('ens')) out.ens = parseEnsConfig(r, m.get('ens') ?? null, 'trusted_names.ens', abs) ?? null;
  const ensSuffixes = new Set(out.ens?.suffixes ?? []);
  for (const t of z.zones) {
    if (ensSuffixes.has(t.zone)) r.err(m.get('zones'), 'trusted_names.zones', `"${t.zone}" is also an ENS suffix: a name space has one resolver`);
  }
  return out;
}
