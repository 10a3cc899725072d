import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { scryptSync } from 'node:crypto';
import { activationApi, adminPasswordProblem } from '../../lib/api/activation.ts';
import { type NodePaths, nodePaths } from '../../lib/config/node-config.ts';
import {
  DEVICE_NAME, DOCUMENT_LIFETIME_SEC, type DeviceDoc, type OwnerDoc, type ZoneBootConfig, signDocument,
} from '../../lib/identity/documents.ts';
import { activateDevice, buildActivationDocs } from '../../lib/identity/activation-client.ts';
import { generateKeyPair, loadKeyFile, publicKeyToB64 } from '../../lib/identity/keys.ts';
import { ownerKeyFromMnemonic } from '../../lib/identity/mnemonic.ts';
import { IDENTITY_FILES, loadNodeIdentity, ownerAdminFileSchema } from '../../lib/identity/node-identity.ts';
import { KrpcError, type RunningServer, createClient, listen } from '../../lib/krpc/index.ts';
import {
  MAX_PENDING_ATTEMPTS, MAX_PENDING_PER_ADDRESS, PREPARES_PER_MINUTE, createActivationApp, suggestDeviceName,
} from './service.ts';
import { resetNode } from './reset.ts';

const MNEMONIC = 'legal winner thank year wave sausage worth useful legal winner thank yellow';
const OTHER_MNEMONIC = 'letter advice cage absurd amount doctor acoustic avoid letter advice cage above';
const PASSWORD = 'Correct-Horse-42';
const ZONE = 'alice.example.com';

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface Harness {
  paths: NodePaths;
  base: string;
  srv: RunningServer;
  activations: number;
}

async function startApp(root?: string): Promise<Harness> {
  const dir = root ?? mkdtempSync(join(tmpdir(), 'bk-activation-'));
  if (!root) roots.push(dir);
  const paths = nodePaths(dir);
  const h = { paths, activations: 0 } as Harness;
  h.srv = await listen(createActivationApp({ paths, onActivated: () => h.activations++ }), 0, '127.0.0.1');
  h.base = `http://127.0.0.1:${h.srv.port}`;
  return h;
}

async function withApp(fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = await startApp();
  try {
    await fn(h);
  } finally {
    await h.srv.close();
  }
}

function etcIsEmpty(paths: NodePaths): boolean {
  return !existsSync(paths.etc) || readdirSync(paths.etc).length === 0;
}

async function rejectsCode(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof KrpcError, `expected a KrpcError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

type Prepared = Awaited<ReturnType<ReturnType<typeof createClient<typeof activationApi.methods>>['prepare']>>;

/** Signs the three documents for a prepared attempt the way a client would, with any field overridden. */
async function signedDocs(
  prep: Prepared,
  over: { mnemonic?: string; boot?: Partial<ZoneBootConfig>; device?: Partial<DeviceDoc>; owner?: Partial<OwnerDoc> } = {},
) {
  const kp = ownerKeyFromMnemonic(over.mnemonic ?? MNEMONIC);
  const iat = Math.floor(Date.now() / 1000);
  const exp = iat + DOCUMENT_LIFETIME_SEC;
  const boot = {
    typ: 'zone-boot', zone: ZONE, owner: 'alice', owner_key: kp.publicKeyB64, verify_hub_key: prep.verify_hub_key, enrol_key: prep.enrol_key,
    core_nodes: [prep.device_name], gateway: { mode: 'lan' }, iat, exp, ...over.boot,
  } as ZoneBootConfig;
  const device = {
    typ: 'device', name: prep.device_name, zone: ZONE, did: prep.device_did, key: prep.device_key, role: 'core', iat, exp,
    ...over.device,
  } as DeviceDoc;
  const owner = { typ: 'owner', name: 'alice', zone: ZONE, key: kp.publicKeyB64, iat, exp, ...over.owner } as OwnerDoc;
  return {
    owner_key: kp.publicKeyB64,
    zone_boot_jwt: await signDocument(boot, kp.privateKey),
    device_doc_jwt: await signDocument(device, kp.privateKey),
    owner_doc_jwt: await signDocument(owner, kp.privateKey),
  };
}

/** prepare, then commit with what `build` makes of the attempt; asserts the refusal and that nothing was written. */
async function refusedCommit(
  build: (prep: Prepared) => Promise<Record<string, string>>,
  code: string,
  message: RegExp,
): Promise<void> {
  await withApp(async (h) => {
    const client = createClient(activationApi, { baseUrl: h.base });
    const prep = await client.prepare({});
    const params = { attempt_id: prep.attempt_id, admin_password: PASSWORD, ...(await build(prep)) };
    await rejectsCode(client.commit(params as Parameters<typeof client.commit>[0]), code, message);
    assert.ok(etcIsEmpty(h.paths), `etc is not empty: ${existsSync(h.paths.etc) ? readdirSync(h.paths.etc).join(', ') : ''}`);
    assert.equal(h.activations, 0);
  });
}

describe('activation service: device description', () => {
  it('GET /device describes the real machine', async () => {
    await withApp(async (h) => {
      const res = await fetch(`${h.base}/device`);
      assert.equal(res.status, 200);
      const d = (await res.json()) as Record<string, any>;
      assert.match(d.name, DEVICE_NAME);
      assert.equal(d.arch, arch());
      assert.equal(d.platform, platform());
      assert.equal(d.activated, false);
      assert.equal(d.version, '0.1.0');
      assert.ok(d.cpu.count >= 1 && typeof d.cpu.model === 'string');
      assert.ok(d.memory.total_bytes > 0 && d.memory.free_bytes > 0);
      assert.ok(Array.isArray(d.addresses));
      for (const a of d.addresses) assert.ok(a.address !== '127.0.0.1' && a.address !== '::1');
      const mounts = existsSync('/proc/mounts') ? readFileSync('/proc/mounts', 'utf8') : '';
      if (/^\/dev\/(?!loop|ram|zram|nbd)/m.test(mounts)) {
        assert.ok(d.disks.length >= 1, 'a mounted block device should be listed');
        for (const disk of d.disks) {
          assert.ok(disk.size_bytes > 0 && disk.free_bytes <= disk.size_bytes, JSON.stringify(disk));
          assert.doesNotMatch(disk.device, /^\/dev\/loop/);
        }
      }
    });
  });

  it('suggests a valid device name from any host name', () => {
    assert.equal(suggestDeviceName('My_Laptop.local'), 'my-laptop');
    assert.equal(suggestDeviceName('42box'), 'dev-42box');
    assert.equal(suggestDeviceName('x'), 'ood1');
    assert.equal(suggestDeviceName('---'), 'ood1');
    assert.match(suggestDeviceName('a'.repeat(80)), DEVICE_NAME);
    assert.match(suggestDeviceName(`${'a'.repeat(31)}-b`), DEVICE_NAME);
  });

  it('prepare offers fresh keys and writes nothing', async () => {
    await withApp(async (h) => {
      const client = createClient(activationApi, { baseUrl: h.base });
      const a = await client.prepare({ device_name: 'nas1' });
      const b = await client.prepare({});
      assert.equal(a.device_name, 'nas1');
      assert.equal(a.device_did, `did:dev:${a.device_key}`);
      assert.notEqual(a.device_key, b.device_key);
      assert.notEqual(a.verify_hub_key, b.verify_hub_key);
      assert.notEqual(a.attempt_id, b.attempt_id);
      assert.equal(b.device_name, b.device_info.name);
      assert.ok(a.expires_at > Date.now() / 1000 + 500);
      assert.ok(etcIsEmpty(h.paths));
      await rejectsCode(client.prepare({ device_name: 'Bad Name' }), 'INVALID_PARAMS', /device name/);
    });
  });
});

describe('activation service: full activation', () => {
  it('activates, stores verifiable identity files, then refuses a second activation', async () => {
    await withApp(async (h) => {
      const result = await activateDevice(h.base, { mnemonic: MNEMONIC, zone: ZONE, owner: 'alice', password: PASSWORD, deviceName: 'ood1' });
      assert.deepEqual(result, {
        zone: ZONE, zone_did: `did:web:${ZONE}`, device_name: 'ood1', device_did: result.device_did, owner: 'alice',
        owner_key: ownerKeyFromMnemonic(MNEMONIC).publicKeyB64,
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(h.activations, 1);

      const etc = h.paths.etc;
      assert.deepEqual(readdirSync(etc).sort(), [IDENTITY_FILES.deviceKey, IDENTITY_FILES.enrolKey, IDENTITY_FILES.ownerAdmin, IDENTITY_FILES.verifyHubKey, IDENTITY_FILES.zone].sort());
      for (const f of readdirSync(etc)) assert.equal(statSync(join(etc, f)).mode & 0o777, 0o600, f);

      const id = await loadNodeIdentity(etc);
      assert.equal(id.boot.zone, ZONE);
      assert.equal(id.boot.owner, 'alice');
      assert.deepEqual(id.boot.core_nodes, ['ood1']);
      assert.equal(id.device.name, 'ood1');
      assert.equal(id.device.did, result.device_did);
      assert.equal(id.ownerDoc?.key, result.owner_key);
      assert.equal(publicKeyToB64(id.verifyHubKey), loadKeyFile(join(etc, IDENTITY_FILES.verifyHubKey)).publicKeyB64);

      const admin = ownerAdminFileSchema.parse(JSON.parse(readFileSync(join(etc, IDENTITY_FILES.ownerAdmin), 'utf8')));
      assert.equal(admin.user, 'alice');
      assert.ok(!readFileSync(join(etc, IDENTITY_FILES.ownerAdmin), 'utf8').includes(PASSWORD));
      const { N, r, p, salt, hash } = admin.scrypt;
      assert.equal(Buffer.from(salt, 'base64').length, 16);
      const again = scryptSync(PASSWORD, Buffer.from(salt, 'base64'), Buffer.from(hash, 'base64').length, { N, r, p, maxmem: 256 * N * r });
      assert.equal(again.toString('base64'), hash);

      const d = (await (await fetch(`${h.base}/device`)).json()) as { activated: boolean };
      assert.equal(d.activated, true);

      const client = createClient(activationApi, { baseUrl: h.base });
      await rejectsCode(client.prepare({}), 'FAILED_PRECONDITION', /already activated; run `buckyos reset` first/);
      await rejectsCode(
        activateDevice(h.base, { mnemonic: OTHER_MNEMONIC, zone: 'mallory.example.com', owner: 'mallory', password: PASSWORD }),
        'FAILED_PRECONDITION',
        /already activated/,
      );
      const stale = { attempt_id: 'x', ...(await signedDocs(await fakePrepared())), admin_password: PASSWORD };
      await rejectsCode(client.commit(stale), 'FAILED_PRECONDITION', /already activated/);
      assert.equal((await loadNodeIdentity(etc)).boot.zone, ZONE);
    });
  });

  it('activates again after resetNode, with or without data', async () => {
    await withApp(async (h) => {
      await activateDevice(h.base, { mnemonic: MNEMONIC, zone: ZONE, owner: 'alice', password: PASSWORD });
      mkdirSync(join(h.paths.data, 'volumes'), { recursive: true });
      writeFileSync(join(h.paths.data, 'volumes', 'photo.jpg'), 'x');
      mkdirSync(h.paths.logs, { recursive: true });
      mkdirSync(join(h.paths.data, 'system-config'), { recursive: true });
      writeFileSync(join(h.paths.data, 'system-config', 'config.db'), 'old zone');

      const kept = resetNode(h.paths, { keepData: true });
      assert.equal(kept.removed[0], join(h.paths.etc, IDENTITY_FILES.zone));
      assert.deepEqual(kept.removed, [
        ...[IDENTITY_FILES.zone, IDENTITY_FILES.deviceKey, IDENTITY_FILES.verifyHubKey, IDENTITY_FILES.enrolKey, IDENTITY_FILES.ownerAdmin].map((f) => join(h.paths.etc, f)),
        join(h.paths.data, 'system-config'),
      ]);
      assert.deepEqual(kept.kept, [h.paths.logs, h.paths.data]);
      assert.ok(existsSync(join(h.paths.data, 'volumes', 'photo.jpg')));
      assert.ok(etcIsEmpty(h.paths));

      const second = await activateDevice(h.base, { mnemonic: OTHER_MNEMONIC, zone: 'bob.example.org', owner: 'bob', password: 'Another-Pass-77', deviceName: 'nas' });
      assert.equal(second.zone, 'bob.example.org');
      assert.equal((await loadNodeIdentity(h.paths.etc)).device.name, 'nas');

      const wiped = resetNode(h.paths, { keepData: false });
      assert.ok(wiped.removed.includes(h.paths.data));
      assert.deepEqual(wiped.kept, [h.paths.logs]);
      assert.ok(!existsSync(h.paths.data));
      assert.deepEqual(resetNode(h.paths, { keepData: false }).removed, []);

      await activateDevice(h.base, { mnemonic: MNEMONIC, zone: ZONE, owner: 'alice', password: PASSWORD });
      assert.equal((await loadNodeIdentity(h.paths.etc)).boot.zone, ZONE);
    });
  });
});

/** A prepare answer for tests that must get past parameter validation without a live attempt. */
async function fakePrepared(): Promise<Prepared> {
  const dev = generateKeyPair();
  return {
    attempt_id: 'x', device_name: 'ood1', device_key: dev.publicKeyB64, device_did: `did:dev:${dev.publicKeyB64}`,
    verify_hub_key: generateKeyPair().publicKeyB64, enrol_key: generateKeyPair().publicKeyB64, expires_at: 0, device_info: {} as Prepared['device_info'],
  };
}

describe('activation service: refused commits write nothing', () => {
  it('documents signed by another key than owner_key', () =>
    refusedCommit(async (prep) => ({
      ...(await signedDocs(prep, { mnemonic: OTHER_MNEMONIC })),
      owner_key: ownerKeyFromMnemonic(MNEMONIC).publicKeyB64,
    }), 'UNAUTHENTICATED', /zone_boot_jwt: .*signed by owner_key/));

  it('an owner document signed by another owner', () =>
    refusedCommit(async (prep) => {
      const mine = await signedDocs(prep);
      const theirs = await signedDocs(prep, { mnemonic: OTHER_MNEMONIC });
      return { ...mine, owner_doc_jwt: theirs.owner_doc_jwt };
    }, 'UNAUTHENTICATED', /owner_doc_jwt/));

  it('an invalid zone name', () =>
    refusedCommit((prep) => signedDocs(prep, { boot: { zone: 'not_a.zone!' } }), 'INVALID_PARAMS', /zone_boot_jwt: .*malformed: zone/));

  it('an invalid owner name', () =>
    refusedCommit((prep) => signedDocs(prep, { boot: { owner: 'Alice Smith' } }), 'INVALID_PARAMS', /owner: user name/));

  it('a weak password, naming the rule', async () => {
    const cases: [string, RegExp][] = [
      ['Short-1', /too short/],
      ['alllowercaseletters', /one kind of character/],
      ['alice-Rocks-2024', /user name/],
      ['Alice.Example.com', /user name|zone name/],
      ['Password123', /commonly used/],
    ];
    for (const [password, rule] of cases) {
      await refusedCommit(async (prep) => ({ ...(await signedDocs(prep)), admin_password: password }), 'INVALID_PARAMS', rule);
    }
  });

  it('a tampered device key', () =>
    refusedCommit(async (prep) => {
      const other = generateKeyPair().publicKeyB64;
      return signedDocs(prep, { device: { key: other, did: `did:dev:${other}` } });
    }, 'INVALID_PARAMS', /device document: key is not the key this device prepared/));

  it('a verify-hub key this device did not generate', () =>
    refusedCommit((prep) => signedDocs(prep, { boot: { verify_hub_key: generateKeyPair().publicKeyB64 } }), 'INVALID_PARAMS', /verify_hub_key/));

  it('an enrolment key this device did not generate', () =>
    refusedCommit((prep) => signedDocs(prep, { boot: { enrol_key: generateKeyPair().publicKeyB64 } }), 'INVALID_PARAMS', /enrol_key/));

  it('another device name, or a zone that does not list the device', async () => {
    await refusedCommit((prep) => signedDocs(prep, { device: { name: 'other' } }), 'INVALID_PARAMS', /name "other" is not the prepared device name/);
    await refusedCommit((prep) => signedDocs(prep, { boot: { core_nodes: ['other'] } }), 'INVALID_PARAMS', /core_nodes must include/);
    await refusedCommit((prep) => signedDocs(prep, { device: { zone: 'bob.example.com' } }), 'INVALID_PARAMS', /device document: zone/);
  });

  it('expired documents', () =>
    refusedCommit((prep) => signedDocs(prep, { boot: { iat: 1_000_000, exp: 1_000_100 } }), 'UNAUTHENTICATED', /expired/));

  it('an unknown attempt id', () =>
    refusedCommit(async (prep) => ({ ...(await signedDocs(prep)), attempt_id: 'no-such-attempt' }), 'FAILED_PRECONDITION', /unknown or expired activation attempt/));

  it('garbage in place of a JWT', () =>
    refusedCommit(async (prep) => ({ ...(await signedDocs(prep)), device_doc_jwt: 'garbage' }), 'UNAUTHENTICATED', /device_doc_jwt/));
});

describe('activation service: limits', () => {
  it('rate-limits commits', async () => {
    await withApp(async (h) => {
      const client = createClient(activationApi, { baseUrl: h.base });
      const params = { attempt_id: 'guess', ...(await signedDocs(await fakePrepared())), admin_password: PASSWORD };
      for (let i = 0; i < 10; i++) await rejectsCode(client.commit(params), 'FAILED_PRECONDITION');
      await rejectsCode(client.commit(params), 'RATE_LIMITED', /try again in \d+ s/);
    });
  });

  it('keeps a few pending attempts per address, evicting that address\'s oldest', async () => {
    await withApp(async (h) => {
      const client = createClient(activationApi, { baseUrl: h.base });
      const first = await client.prepare({});
      for (let i = 0; i < 4; i++) await client.prepare({});
      await rejectsCode(client.commit({ attempt_id: first.attempt_id, ...(await signedDocs(first)), admin_password: PASSWORD }), 'FAILED_PRECONDITION', /call prepare again/);
      const last = await client.prepare({});
      await client.commit({ attempt_id: last.attempt_id, ...(await signedDocs(last)), admin_password: PASSWORD });
      assert.ok(existsSync(join(h.paths.etc, IDENTITY_FILES.zone)));
    });
  });

  it('rate-limits prepare per address, and never lets one address evict another\'s attempt', async () => {
    await withApp(async (h) => {
      // The server believes X-Forwarded-For from a loopback peer (a node's own gateway): how a test speaks from
      // other addresses.
      const prepareFrom = async (address: string) => {
        const res = await fetch(`${h.base}/kapi/activation`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
          body: JSON.stringify({ method: 'prepare', params: {}, sys: [1, null, 'trace'] }),
        });
        const body = (await res.json()) as { error?: { code: string } };
        return body.error?.code ?? 'OK';
      };
      const client = createClient(activationApi, { baseUrl: h.base });
      const owners = await client.prepare({});

      const flood: string[] = [];
      for (let i = 0; i <= PREPARES_PER_MINUTE; i++) flood.push(await prepareFrom('192.168.1.66'));
      assert.deepEqual(flood, [...Array<string>(PREPARES_PER_MINUTE).fill('OK'), 'RATE_LIMITED']);

      // Many addresses together fill the device: further prepares are refused, and still nothing is evicted.
      const crowd: string[] = [];
      for (let i = 0; crowd.length < MAX_PENDING_ATTEMPTS; i++) {
        for (let j = 0; j < MAX_PENDING_PER_ADDRESS; j++) crowd.push(await prepareFrom(`192.168.2.${i}`));
      }
      const accepted = 1 + MAX_PENDING_PER_ADDRESS + crowd.filter((c) => c === 'OK').length;
      assert.equal(accepted, MAX_PENDING_ATTEMPTS);
      assert.ok(crowd.includes('RATE_LIMITED'));

      await client.commit({ attempt_id: owners.attempt_id, ...(await signedDocs(owners)), admin_password: PASSWORD });
      assert.ok(existsSync(join(h.paths.etc, IDENTITY_FILES.zone)));
    });
  });

  it('the client checks what it can before contacting the device', async () => {
    const unreachable = 'http://127.0.0.1:9';
    const base = { mnemonic: MNEMONIC, zone: ZONE, owner: 'alice', password: PASSWORD };
    await assert.rejects(activateDevice(unreachable, { ...base, mnemonic: MNEMONIC.replace('yellow', 'yelow') }), /word 12, "yelow"/);
    await rejectsCode(activateDevice(unreachable, { ...base, zone: 'nodot' }), 'INVALID_PARAMS', /zone/);
    await rejectsCode(activateDevice(unreachable, { ...base, password: 'short' }), 'INVALID_PARAMS', /too short/);
    await rejectsCode(activateDevice(unreachable, base), 'UNAVAILABLE');
    await assert.rejects(
      buildActivationDocs({ mnemonic: MNEMONIC, zone: ZONE, owner: 'alice', deviceName: 'ood1', deviceKey: 'AAAA', verifyHubKey: 'AAAA', enrolKey: 'AAAA', gateway: { mode: 'lan' } }),
      /verify_hub_key/,
    );
  });

  it('password rules', () => {
    const ctx = { user: 'alice', zone: ZONE };
    assert.equal(adminPasswordProblem(PASSWORD, ctx), null);
    assert.equal(adminPasswordProblem('ünïcödé-pässwörd', ctx), null);
    assert.match(adminPasswordProblem('🔑🔑🔑🔑🔑', ctx) ?? '', /too short/);
    assert.match(adminPasswordProblem('1234567890', ctx) ?? '', /one kind/);
  });
});

describe('activation service: the activation page', () => {
  /** A built UI with both pages, as scripts/build-ui.ts lays it out. */
  function writeUi(): string {
    const dir = mkdtempSync(join(tmpdir(), 'bk-activation-ui-'));
    roots.push(dir);
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'activation.html'), '<meta name="csp-nonce" content="__CSP_NONCE__"><title>Activate</title>');
    writeFileSync(join(dir, 'index.html'), '<title>App</title>');
    writeFileSync(join(dir, 'assets', 'activation-x.js'), 'x');
    const files = { '/activation.html': { encodings: [] }, '/index.html': { encodings: [] }, '/assets/activation-x.js': { encodings: [] } };
    writeFileSync(join(dir, 'build.json'), JSON.stringify({ id: '0123456789abcdef', built_at: Date.now(), files }));
    return dir;
  }

  it('serves the activation page (never the signed-in app) with a fresh nonce and the UI headers on every answer', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bk-activation-'));
    roots.push(dir);
    const srv = await listen(createActivationApp({ paths: nodePaths(dir), uiDir: writeUi() }), 0, '127.0.0.1');
    const base = `http://127.0.0.1:${srv.port}`;
    try {
      for (const path of ['/', '/some/route']) {
        const r = await fetch(base + path);
        const body = await r.text();
        assert.equal(r.status, 200);
        assert.match(body, /<title>Activate<\/title>/);
        const nonce = /content="([^"]+)"/.exec(body)![1]!;
        assert.notEqual(nonce, '__CSP_NONCE__');
        assert.match(r.headers.get('content-security-policy')!, new RegExp(`style-src 'self' 'nonce-${nonce.replace(/[+/]/g, '\\$&')}'`));
        assert.equal(r.headers.get('x-frame-options'), 'DENY');
      }
      assert.equal((await fetch(`${base}/index.html`)).status, 404, 'the signed-in app is not served here');
      assert.equal((await fetch(`${base}/assets/activation-x.js`)).status, 200);
      const device = await fetch(`${base}/device`);
      assert.equal(device.headers.get('x-content-type-options'), 'nosniff');
      assert.match(device.headers.get('content-security-policy')!, /frame-ancestors 'none'/);
      // kRPC only from the device's own pages.
      const call = (origin?: string) => fetch(`${base}/kapi/activation`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(origin ? { origin } : {}) },
        body: JSON.stringify({ method: 'status', params: {}, sys: [1] }),
      });
      assert.equal((await call('http://evil.example')).status, 403);
      assert.equal((await call(base)).status, 200);
    } finally {
      await srv.close();
    }
  });

  it('status says when the zone\'s UI answers; discover says it is not searching without mDNS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bk-activation-'));
    roots.push(dir);
    let uiUp = false;
    const paths = nodePaths(dir);
    const srv = await listen(createActivationApp({ paths, ui: { port: 3190, probe: async () => uiUp } }), 0, '127.0.0.1');
    const client = createClient(activationApi, { baseUrl: `http://127.0.0.1:${srv.port}` });
    try {
      assert.deepEqual(await client.status({}), { activated: false, ui_port: 3190, ui_ready: false });
      assert.deepEqual(await client.discover({}), { searching: false, devices: [] });
      await activateDevice(`http://127.0.0.1:${srv.port}`, { mnemonic: MNEMONIC, zone: ZONE, owner: 'alice', password: PASSWORD });
      assert.deepEqual(await client.status({}), { activated: true, zone: ZONE, ui_port: 3190, ui_ready: false });
      uiUp = true;
      assert.equal((await client.status({})).ui_ready, true);
    } finally {
      await srv.close();
    }
  });
});
