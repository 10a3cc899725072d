// Other zones' names, verified (DESIGN §8, docs/ns-zone-names.md). A zone publishes two signed documents as TXT
// records at `_buckyos.<zone>`: its boot config (`BOOT=<jwt>`, signed by the owner) and its names (`NAMES=<jwt>`,
// signed by the enrolment key the boot config delegates). cyfs-ns answers a name under a zone it was told to trust
// only from those documents, after checking the chain owner key → boot config → enrolment key → names; an unsigned,
// wrongly signed, expired or mismatched record set is refused, never passed on.
import { type KeyObject } from 'node:crypto';
import { publicKeyFromB64 } from '../../lib/identity/keys.ts';
import type { ZoneNames } from '../../lib/identity/documents.ts';
import { type DnsLookup, type TrustedAnswer, TrustedNameError, type TrustedNameResolver } from './trusted.ts';
import { CLASS_IN, RCODE, type ResourceRecord, TYPE } from './wire.ts';
import { parseIP } from './ip.ts';

export const ZONE_RECORDS_LABEL = '_buckyos';
export const BOOT_PREFIX = 'BOOT=';
export const NAMES_PREFIX = 'NAMES=';

export interface TrustedZone {
  zone: string;
  /** The owner's public key (base64url Ed25519), learnt out of band: the trust anchor of every name under the zone. */
  owner_key: string;
}

export interface ZoneNamesConfig {
  zones: TrustedZone[];
  timeout_ms: number;
  /** Longest time an answer is kept, whatever the zone's document allows. */
  max_ttl: number;
}

interface Verified {
  names: ZoneNames;
  /** The TXT records it came from, which are answered as they are for `_buckyos.<zone>` TXT. */
  txt: ResourceRecord[];
  until: number;
}

function txtText(rr: ResourceRecord): string | undefined {
  return rr.data.kind === 'txt' ? Buffer.concat(rr.data.strings).toString('utf8') : undefined;
}

/** TXT strings hold 255 bytes each: a long value is split, and joined again by whoever reads it. */
export function txtStrings(value: string): Buffer[] {
  const b = Buffer.from(value, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 255) out.push(b.subarray(i, i + 255));
  return out;
}

export class ZoneNamesResolver implements TrustedNameResolver {
  readonly label = 'zone';
  readonly suffixes: readonly string[];
  readonly timeoutMs: number;
  readonly maxCacheTtl: number;
  private readonly owners = new Map<string, KeyObject>();
  private readonly ownerKeys = new Map<string, string>();
  private readonly documents = new Map<string, Verified>();

  constructor(config: ZoneNamesConfig, private readonly lookup: DnsLookup) {
    for (const z of config.zones) {
      this.owners.set(z.zone, publicKeyFromB64(z.owner_key));
      this.ownerKeys.set(z.zone, z.owner_key);
    }
    this.suffixes = config.zones.map((z) => z.zone);
    this.timeoutMs = config.timeout_ms;
    this.maxCacheTtl = config.max_ttl;
  }

  private zoneOf(name: string): string {
    for (let n = name; ; ) {
      if (this.owners.has(n)) return n;
      const dot = n.indexOf('.');
      if (dot < 0) throw new TrustedNameError(`${name} is under no trusted zone`);
      n = n.slice(dot + 1);
    }
  }

  async resolve(name: string, qtype: number, signal: AbortSignal): Promise<TrustedAnswer> {
    const zone = this.zoneOf(name);
    const doc = await this.document(zone, signal);
    const ttl = Math.min(doc.names.ttl, Math.max(1, Math.floor((doc.until - Date.now()) / 1000)));
    if (name === `${ZONE_RECORDS_LABEL}.${zone}`) {
      return { rcode: RCODE.NOERROR, answers: qtype === TYPE.TXT ? doc.txt.map((rr) => ({ ...rr, ttl })) : [], ttl };
    }
    const label = name === zone ? '@' : name.slice(0, -(zone.length + 1));
    const entry = doc.names.names[label] ?? (label === '@' ? undefined : doc.names.names['*']);
    if (!entry) return { rcode: RCODE.NXDOMAIN, answers: [], ttl };
    const addresses = qtype === TYPE.A ? entry.a : qtype === TYPE.AAAA ? entry.aaaa : undefined;
    const answers = (addresses ?? []).map((ip): ResourceRecord => ({ name, type: qtype, cls: CLASS_IN, ttl, data: { kind: 'ip', bytes: parseIP(ip)! } }));
    return { rcode: RCODE.NOERROR, answers, ttl };
  }

  /** The zone's verified names document, fetched again when the copy held has expired. */
  private async document(zone: string, signal: AbortSignal): Promise<Verified> {
    const held = this.documents.get(zone);
    if (held && held.until > Date.now()) return held;
    const where = `${ZONE_RECORDS_LABEL}.${zone}`;
    const r = await this.lookup(where, TYPE.TXT, signal);
    if (r.rcode !== RCODE.NOERROR) throw new TrustedNameError(`${zone}: looking up ${where} TXT failed (rcode ${r.rcode})`);
    const txt = r.answers.filter((rr) => rr.type === TYPE.TXT && rr.name.toLowerCase().replace(/\.$/, '') === where);
    const values = txt.map(txtText).filter((v): v is string => v !== undefined);
    const boots = values.filter((v) => v.startsWith(BOOT_PREFIX)).map((v) => v.slice(BOOT_PREFIX.length));
    const namesJwts = values.filter((v) => v.startsWith(NAMES_PREFIX)).map((v) => v.slice(NAMES_PREFIX.length));
    if (boots.length === 0) throw new TrustedNameError(`${zone}: ${where} has no ${BOOT_PREFIX} record: the zone publishes no signed boot config`);
    if (namesJwts.length === 0) throw new TrustedNameError(`${zone}: ${where} has no ${NAMES_PREFIX} record: the zone publishes no signed names`);
    const owner = this.owners.get(zone)!;
    // Loaded on first use: the verifiers bring zod and jose, some 2 MB a server without trusted zones never needs.
    const { verifyZoneBootConfig, verifyZoneNames } = await import('../../lib/identity/documents.ts');
    const boot = await firstVerified(boots, (jwt) => verifyZoneBootConfig(jwt, owner));
    if (!boot) throw new TrustedNameError(`${zone}: the boot config in ${where} is not signed by the zone's trusted owner key`);
    if (boot.zone !== zone) throw new TrustedNameError(`${zone}: the boot config in ${where} is for another zone (${boot.zone})`);
    if (boot.owner_key !== this.ownerKeys.get(zone)) throw new TrustedNameError(`${zone}: the boot config in ${where} names another owner key`);
    const enrolKey = publicKeyFromB64(boot.enrol_key);
    const verified = (await Promise.all(namesJwts.map((jwt) => verifyZoneNames(jwt, enrolKey).catch(() => undefined)))).filter(
      (n): n is ZoneNames => n !== undefined && n.zone === zone,
    );
    if (verified.length === 0) throw new TrustedNameError(`${zone}: no names record in ${where} is signed by the zone's enrolment key for this zone`);
    // Two current copies can overlap while a zone republishes: the newest wins.
    const names = verified.sort((a, b) => b.iat - a.iat)[0]!;
    const doc: Verified = { names, txt, until: Math.min(names.exp * 1000, Date.now() + Math.min(names.ttl, this.maxCacheTtl) * 1000) };
    this.documents.set(zone, doc);
    return doc;
  }
}

async function firstVerified<T>(jwts: string[], verify: (jwt: string) => Promise<T>): Promise<T | undefined> {
  for (const jwt of jwts) {
    try {
      return await verify(jwt);
    } catch {
      // The next copy may be the one the owner signed; a zone may publish an old and a new one while it changes.
    }
  }
  return undefined;
}
