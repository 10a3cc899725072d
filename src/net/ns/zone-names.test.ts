// Other zones' names through their signed TXT records, end to end: a scripted upstream publishes `_buckyos.<zone>`
// TXT records as a DNS provider would, and cyfs-ns (configured from YAML) answers names under the zone only when the
// chain owner key → boot config → enrolment key → names verifies. Every way of breaking the chain is SERVFAIL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type dnsPacket from 'dns-packet';
import { DOCUMENT_LIFETIME_SEC, type ZoneBootConfig, type ZoneNames, signDocument } from '../../lib/identity/documents.ts';
import { type KeyPair, generateKeyPair } from '../../lib/identity/keys.ts';
import { ConfigError, parseNsConfig } from './config.ts';
import { NsServer } from './server.ts';
import { ScriptedDns, ask } from './testing.suite.ts';
import { BOOT_PREFIX, NAMES_PREFIX, txtStrings } from './zone-names.ts';

const log = pino({ level: 'silent' });
const NOW = () => Math.floor(Date.now() / 1000);

function bootConfig(zone: string, owner: KeyPair, enrol: KeyPair): ZoneBootConfig {
  const iat = NOW();
  return {
    typ: 'zone-boot', zone, owner: 'bob', owner_key: owner.publicKeyB64, verify_hub_key: generateKeyPair().publicKeyB64,
    enrol_key: enrol.publicKeyB64, core_nodes: ['ood1'], gateway: { mode: 'public', host: zone }, iat, exp: iat + DOCUMENT_LIFETIME_SEC,
  };
}

function namesDoc(zone: string, over: Partial<ZoneNames> = {}): ZoneNames {
  const iat = NOW();
  return {
    typ: 'zone-names', zone, ttl: 600, iat, exp: iat + 86400,
    names: { '@': { a: ['203.0.113.7'] }, www: { a: ['203.0.113.8'], aaaa: ['2001:db8::8'] }, '*': { a: ['203.0.113.9'] } },
    ...over,
  };
}

const txt = (name: string, values: string[]): dnsPacket.Answer[] =>
  values.map((v) => ({ name, type: 'TXT', ttl: 300, data: txtStrings(v) }) as dnsPacket.Answer);

describe('trusted zone names', () => {
  let up: ScriptedDns;
  let ns: NsServer;
  const owner = generateKeyPair();
  const enrol = generateKeyPair();
  const stranger = generateKeyPair();

  /** Publishes a record set for a zone at the scripted "DNS provider". */
  async function publish(zone: string, boot: { cfg: ZoneBootConfig; key: KeyPair } | null, names: { doc: ZoneNames; key: KeyPair } | null): Promise<void> {
    const values: string[] = [];
    if (boot) values.push(BOOT_PREFIX + (await signDocument(boot.cfg, boot.key.privateKey)));
    if (names) values.push(NAMES_PREFIX + (await signDocument(names.doc, names.key.privateKey)));
    values.push('v=spf1 -all');
    up.set(`_buckyos.${zone}`, 'TXT', { answers: txt(`_buckyos.${zone}`, values) });
  }

  before(async () => {
    up = await ScriptedDns.start();
    const zones = ['good.example', 'unsigned.example', 'forged.example', 'noboot.example', 'expired.example', 'otherzone.example', 'wrongowner.example'];
    const yaml = [
      'listen: { addresses: [127.0.0.1], port: 0 }',
      `upstreams: { groups: { default: { timeout_ms: 500, servers: ["127.0.0.1:${up.port}"] } } }`,
      'trusted_names:',
      '  timeout_ms: 2000',
      '  zones:',
      ...zones.map((z) => `    - { zone: ${z}, owner_key: ${owner.publicKeyB64} }`),
    ].join('\n');
    const config = parseNsConfig(yaml, 'ns.yaml');
    await publish('good.example', { cfg: bootConfig('good.example', owner, enrol), key: owner }, { doc: namesDoc('good.example'), key: enrol });
    // Names signed by a key the boot config does not delegate to.
    await publish('unsigned.example', { cfg: bootConfig('unsigned.example', owner, enrol), key: owner }, { doc: namesDoc('unsigned.example'), key: stranger });
    // A boot config signed by someone other than the pinned owner, delegating to the forger's own key.
    await publish('forged.example', { cfg: bootConfig('forged.example', stranger, stranger), key: stranger }, { doc: namesDoc('forged.example'), key: stranger });
    await publish('noboot.example', null, { doc: namesDoc('noboot.example'), key: enrol });
    await publish('expired.example', { cfg: bootConfig('expired.example', owner, enrol), key: owner }, { doc: namesDoc('expired.example', { iat: NOW() - 7200, exp: NOW() - 3600 }), key: enrol });
    // Authentic documents of one zone replayed under another zone's name.
    await publish('otherzone.example', { cfg: bootConfig('good.example', owner, enrol), key: owner }, { doc: namesDoc('good.example'), key: enrol });
    // Signed by the pinned owner key, but naming another owner key inside.
    const wrongOwner = { ...bootConfig('wrongowner.example', owner, enrol), owner_key: stranger.publicKeyB64 };
    await publish('wrongowner.example', { cfg: wrongOwner, key: owner }, { doc: namesDoc('wrongowner.example'), key: enrol });
    up.set('plain.example', 'A', { answers: [{ name: 'plain.example', type: 'A', ttl: 60, data: '198.51.100.1' } as dnsPacket.Answer] });
    ns = await NsServer.start({ config, log });
  });

  after(async () => {
    await ns?.close();
    await up?.close();
  });

  it('answers a verified zone\'s names: its own name, a named host, the wildcard, and IPv6', async () => {
    const apex = await ask(ns.port, 'good.example', 'A');
    assert.equal(apex.rcode, 0);
    assert.deepEqual(apex.answers.map((a) => a.data), ['203.0.113.7']);
    assert.deepEqual((await ask(ns.port, 'WWW.good.example', 'A')).answers.map((a) => a.data), ['203.0.113.8']);
    assert.deepEqual((await ask(ns.port, 'www.good.example', 'AAAA')).answers.map((a) => a.data), ['2001:db8::8']);
    assert.deepEqual((await ask(ns.port, 'app.deep.good.example', 'A')).answers.map((a) => a.data), ['203.0.113.9']);
    const mx = await ask(ns.port, 'good.example', 'MX');
    assert.equal(mx.rcode, 0);
    assert.equal(mx.answers.length, 0);
    assert.ok(mx.answers.every((a) => a.ttl <= 600));
  });

  it('refuses every broken chain with SERVFAIL, never passing the upstream\'s answer on', async () => {
    for (const zone of ['unsigned.example', 'forged.example', 'noboot.example', 'expired.example', 'otherzone.example', 'wrongowner.example']) {
      const r = await ask(ns.port, `www.${zone}`, 'A');
      assert.equal(r.rcode, 2, `${zone}: SERVFAIL`);
      assert.equal(r.answers.length, 0, zone);
    }
    const stats = await ns.stats();
    const zone = stats.trusted.find((t) => t.label === 'zone');
    assert.ok(zone && zone.failures >= 6);
    assert.match(zone.last_error ?? '', /signed|boot config|another|no names|expired/);
  });

  it('caches a verified document: the zone\'s TXT records are fetched once', async () => {
    const before = up.count('_buckyos.good.example', 'TXT');
    for (let i = 0; i < 5; i++) await ask(ns.port, `h${i}.good.example`, 'A');
    assert.equal(up.count('_buckyos.good.example', 'TXT'), before);
  });

  it('leaves names outside trusted zones to the upstreams', async () => {
    const r = await ask(ns.port, 'plain.example', 'A');
    assert.deepEqual(r.answers.map((a) => a.data), ['198.51.100.1']);
  });

  it('refuses a configuration with a malformed owner key or a zone listed twice, with the line', () => {
    const yaml = 'trusted_names:\n  zones:\n    - { zone: a.example, owner_key: nope }\n    - { zone: b.example, owner_key: ' + owner.publicKeyB64 + ' }\n    - { zone: B.example., owner_key: ' + owner.publicKeyB64 + ' }\n';
    assert.throws(() => parseNsConfig(yaml, 'ns.yaml'), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /ns\.yaml:3: trusted_names\.zones\[0\]\.owner_key: must be the zone owner's Ed25519 public key/);
      assert.match(e.message, /ns\.yaml:5: trusted_names\.zones\[2\]\.zone: "b\.example" is listed twice/);
      return true;
    });
  });
});
