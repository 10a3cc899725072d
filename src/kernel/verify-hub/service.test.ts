// verify-hub as it runs: its kRPC endpoint over HTTP, backed by the real system-config service (SQLite) in a
// temporary zone root with real keys and owner-signed documents. RBAC is the real enforcer.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { systemConfigApi } from '../../lib/api/system-config.ts';
import { verifyHubApi } from '../../lib/api/verify-hub.ts';
import { nodePaths, saveNodeConfig } from '../../lib/config/node-config.ts';
import { DOCUMENT_LIFETIME_SEC, signDocument } from '../../lib/identity/documents.ts';
import { signJwt } from '../../lib/identity/jwt.ts';
import { type KeyPair, didDev, generateKeyPair, loadKeyFile, saveKeyFile } from '../../lib/identity/keys.ts';
import { IDENTITY_FILES, writeZoneFile } from '../../lib/identity/node-identity.ts';
import { VERIFY_HUB_KID, signAccessToken } from '../../lib/identity/tokens.ts';
import { type Client, KrpcError, createClient } from '../../lib/krpc/index.ts';
import { Rbac } from '../../lib/rbac/enforcer.ts';
import { type KernelRuntime, createKernelRuntime } from '../runtime.ts';
import { runSystemConfigService } from '../system-config/main.ts';
import type { AuditEvent } from './hub.ts';
import { runVerifyHubService } from './main.ts';
import { hashPassword } from './password.ts';
import { KEYS } from './records.ts';
import { freePort } from '../../../test/support/ports.ts';

const ZONE = 'alice.example.com';
const OWNER = 'alice';
const OWNER_PW = 'Owner-pass-2024';
const APP = 'control-panel';

type Hub = Client<typeof verifyHubApi.methods>;

async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<KrpcError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => {
    caught = e;
    return true;
  });
  assert.ok(caught instanceof KrpcError, `expected a KrpcError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

describe('verify-hub service on system-config', () => {
  let root: string;
  let owner: KeyPair;
  let device: KeyPair;
  let cfgService: { close(): Promise<void> };
  let rtHub: KernelRuntime;
  let hub: { port: number; close(): Promise<void> };
  let rbac: Rbac;
  let denyResources: Set<string>;
  let events: AuditEvent[];
  let deleted: string[];
  let config: Client<typeof systemConfigApi.methods>;

  const client = (token?: string): Hub => createClient(verifyHubApi, { baseUrl: `http://127.0.0.1:${hub.port}`, token: token ?? null });

  async function startHub() {
    hub = await runVerifyHubService(rtHub, 0, {
      check: (req) => !denyResources.has(req.resource) && rbac.check(req),
      audit: (e) => void events.push(e),
      onUserDeleted: (name) => {
        deleted.push(name);
        rbac.removeUser(name);
      },
    });
  }

  async function login(username: string, password: string, app = APP) {
    const c = client();
    const { nonce } = await c.login_nonce({});
    return c.login_password({ username, password, nonce, app_id: app });
  }

  async function sudoAs(username: string, password: string) {
    const s = await login(username, password);
    const { sudo_token } = await client(s.session_token).sudo({ password });
    return { session: s, sudo: sudo_token };
  }

  async function createUser(name: string, password: string, role: 'admin' | 'user' | 'limited' | 'guest' = 'user') {
    const { sudo } = await sudoAs(OWNER, OWNER_PW);
    await client(sudo).user_create({ name, password, role });
    rbac.setUserRole(name, role);
  }

  async function loginJwt(key: KeyPair, sub: string, opts: { kid?: string; ttlSec?: number; nonce?: string } = {}) {
    const c = client();
    const nonce = opts.nonce ?? (await c.login_nonce({})).nonce;
    const jwt = await signJwt({ typ: 'login', sub, nonce }, key.privateKey, { kid: opts.kid, expiresInSec: opts.ttlSec ?? 120 });
    return c.login_jwt({ jwt, app_id: 'buckyos-cli' });
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'verify-hub-'));
    const paths = nodePaths(root);
    owner = generateKeyPair();
    device = generateKeyPair();
    const vhKey = generateKeyPair();
    const now = Math.floor(Date.now() / 1000);
    const boot = await signDocument(
      {
        typ: 'zone-boot', zone: ZONE, owner: OWNER, owner_key: owner.publicKeyB64, verify_hub_key: vhKey.publicKeyB64, enrol_key: generateKeyPair().publicKeyB64,
        core_nodes: ['ood1'], gateway: { mode: 'lan' }, iat: now, exp: now + DOCUMENT_LIFETIME_SEC,
      },
      owner.privateKey,
    );
    const dev = await signDocument(
      { typ: 'device', name: 'ood1', zone: ZONE, did: didDev(device.publicKeyB64), key: device.publicKeyB64, role: 'core', iat: now, exp: now + DOCUMENT_LIFETIME_SEC },
      owner.privateKey,
    );
    writeZoneFile(paths.etc, { owner_key: owner.publicKeyB64, zone_boot_jwt: boot, device_doc_jwt: dev, activated_at: new Date().toISOString() });
    saveKeyFile(join(paths.etc, IDENTITY_FILES.deviceKey), device);
    saveKeyFile(join(paths.etc, IDENTITY_FILES.verifyHubKey), vhKey);
    writeFileSync(
      join(paths.etc, IDENTITY_FILES.ownerAdmin),
      JSON.stringify({ user: OWNER, scrypt: await hashPassword(OWNER_PW), created_at: new Date().toISOString() }),
    );
    saveNodeConfig(paths, { ports: { system_config: await freePort() }, log_level: 'warn' });

    const rtCfg = await createKernelRuntime('system-config', root);
    cfgService = await runSystemConfigService(rtCfg, rtCfg.config.ports.system_config);
    rtHub = await createKernelRuntime('verify-hub', root);
    config = rtHub.localClient(systemConfigApi, rtHub.config.ports.system_config);
    rbac = await Rbac.create();
    rbac.setUserRole(OWNER, 'admin');
    events = [];
    deleted = [];
    denyResources = new Set();
    await startHub();
  });

  after(async () => {
    await hub?.close();
    await cfgService?.close();
    rmSync(root, { recursive: true, force: true });
  });

  // Rate limits and nonces live in memory: a fresh process per test keeps each test's login count its own.
  beforeEach(async () => {
    await hub.close();
    events = [];
    denyResources = new Set();
    await startHub();
  });

  it('imports the owner from owner_admin.json once, as an admin that is the owner, and then deletes the file', async () => {
    assert.equal(existsSync(join(root, 'etc', IDENTITY_FILES.ownerAdmin)), false);
    const t = await login(OWNER, OWNER_PW);
    assert.deepEqual(t.user, { name: OWNER, role: 'admin' });
    const me = await client(t.session_token).whoami({});
    assert.equal(me.user, OWNER);
    assert.equal(me.kind, 'session');
    assert.equal(me.owner, true);
    assert.equal(me.role, 'admin');
    assert.equal(me.session_id, t.refresh_token.split('.')[0]);
    const settings = JSON.parse((await config.get({ key: `users/${OWNER}/settings` })).value!);
    assert.equal(settings.role, 'admin');
    assert.equal(settings.state, 'active');
    const cred = await config.get({ key: `system/verify-hub/credentials/${OWNER}` });
    assert.ok(!cred.value!.includes(OWNER_PW));
    // A restart finds the owner already there and changes nothing.
    await hub.close();
    await startHub();
    assert.equal((await config.get({ key: `system/verify-hub/credentials/${OWNER}` })).revision, cred.revision);
    assert.ok(events.some((e) => e.type === 'login' && e.action === 'password' && e.actor === OWNER));
  });

  it('never lets the initial password back in once imported', async () => {
    const credKey = `system/verify-hub/credentials/${OWNER}`;
    const ownerAdmin = join(root, 'etc', IDENTITY_FILES.ownerAdmin);
    const saved = (await config.get({ key: credKey })).value!;
    try {
      // A file still there from a start that stopped between the import and the deletion: the stored credential
      // wins, and the file goes.
      writeFileSync(ownerAdmin, JSON.stringify({ user: OWNER, scrypt: await hashPassword('Initial-pass-2024'), created_at: new Date().toISOString() }));
      await hub.close();
      await startHub();
      assert.equal(existsSync(ownerAdmin), false);
      assert.equal((await config.get({ key: credKey })).value, saved);
      await rejectsWith(login(OWNER, 'Initial-pass-2024'), 'UNAUTHENTICATED');
      // With the file gone, losing the credential record leaves the owner to the owner key, not to the old password.
      await config.delete({ key: credKey });
      await hub.close();
      await startHub();
      await rejectsWith(login(OWNER, OWNER_PW), 'UNAUTHENTICATED');
    } finally {
      await config.set({ key: credKey, value: saved });
    }
  });

  it('answers a wrong password and an unknown user the same way', async () => {
    const wrong = await rejectsWith(login(OWNER, 'Not-the-password-1'), 'UNAUTHENTICATED');
    const unknown = await rejectsWith(login('nobody', 'Not-the-password-1'), 'UNAUTHENTICATED');
    assert.equal(wrong.message, unknown.message);
    assert.deepEqual(
      events.filter((e) => e.type === 'login_failed').map((e) => [e.target, e.reason]),
      [[OWNER, 'wrong_password'], ['nobody', 'wrong_password']],
    );
  });

  it('needs a fresh nonce for every login', async () => {
    const c = client();
    const { nonce } = await c.login_nonce({});
    await c.login_password({ username: OWNER, password: OWNER_PW, nonce, app_id: APP });
    await rejectsWith(c.login_password({ username: OWNER, password: OWNER_PW, nonce, app_id: APP }), 'UNAUTHENTICATED', /nonce/);
    await rejectsWith(c.login_password({ username: OWNER, password: OWNER_PW, nonce: 'made-up', app_id: APP }), 'UNAUTHENTICATED', /nonce/);
  });

  it('locks an account after 5 failures, saying until when, even for the right password', async () => {
    await createUser('bob', 'Blue-sky-4711');
    await hub.close();
    await startHub();
    for (let i = 0; i < 5; i++) await rejectsWith(login('bob', 'Wrong-password-1'), 'UNAUTHENTICATED');
    const locked = await rejectsWith(login('bob', 'Blue-sky-4711'), 'RATE_LIMITED', /locked .* until \d{4}-\d\d-\d\dT/);
    const until = (locked.data as { locked_until: number }).locked_until;
    assert.ok(until > Date.now() / 1000 + 14 * 60 && until <= Date.now() / 1000 + 15 * 60 + 1);
    // The lock is stored with the account, so a restart does not lift it.
    await hub.close();
    await startHub();
    await rejectsWith(login('bob', 'Blue-sky-4711'), 'RATE_LIMITED', /locked/);
    const cred = JSON.parse((await config.get({ key: 'system/verify-hub/credentials/bob' })).value!);
    assert.equal(cred.locked_until, until);
  });

  it('locks unknown user names the same way, so the lock reveals nothing', async () => {
    for (let i = 0; i < 5; i++) await rejectsWith(login('ghost', 'Wrong-password-1'), 'UNAUTHENTICATED');
    await rejectsWith(login('ghost', 'Wrong-password-1'), 'RATE_LIMITED', /locked .* until/);
  });

  it('rate-limits logins per client address', async () => {
    for (let i = 0; i < 10; i++) await rejectsWith(login(`user${i}`, 'Wrong-password-1'), 'UNAUTHENTICATED');
    const e = await rejectsWith(login(OWNER, OWNER_PW), 'RATE_LIMITED', /too many login attempts from this address/);
    assert.ok((e.data as { retry_after_ms: number }).retry_after_ms > 0);
  });

  it('rotates refresh tokens; the old one no longer works', async () => {
    const t = await login(OWNER, OWNER_PW);
    const r1 = await client().refresh({ refresh_token: t.refresh_token });
    assert.notEqual(r1.refresh_token, t.refresh_token);
    assert.equal(r1.refresh_token.split('.')[0], t.refresh_token.split('.')[0]);
    assert.equal((await client(r1.session_token).whoami({})).user, OWNER);
    const r2 = await client().refresh({ refresh_token: r1.refresh_token });
    assert.ok(r2.session_token);
    const stored = JSON.parse((await config.get({ key: KEYS.session(t.refresh_token.split('.')[0]!) })).value!);
    assert.equal(stored.refresh_generation, 2);
    assert.ok(!JSON.stringify(stored).includes(r2.refresh_token));
  });

  it('revokes the whole session when a used refresh token comes back', async () => {
    const t = await login(OWNER, OWNER_PW);
    const r1 = await client().refresh({ refresh_token: t.refresh_token });
    await rejectsWith(client().refresh({ refresh_token: t.refresh_token }), 'UNAUTHENTICATED', /already used/);
    await rejectsWith(client().refresh({ refresh_token: r1.refresh_token }), 'UNAUTHENTICATED', /revoked/);
    await rejectsWith(client(r1.session_token).whoami({}), 'UNAUTHENTICATED');
    assert.ok(events.some((e) => e.type === 'login_failed' && e.reason === 'refresh_token_reuse'));
  });

  it('lets only one of two concurrent refreshes with the same token succeed', async () => {
    const t = await login(OWNER, OWNER_PW);
    const results = await Promise.allSettled([
      client().refresh({ refresh_token: t.refresh_token }),
      client().refresh({ refresh_token: t.refresh_token }),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  });

  it('keeps sessions across a verify-hub restart', async () => {
    const t = await login(OWNER, OWNER_PW);
    await hub.close();
    await startHub();
    assert.equal((await client(t.session_token).whoami({})).user, OWNER);
    const r = await client().refresh({ refresh_token: t.refresh_token });
    assert.equal((await client(r.session_token).whoami({})).user, OWNER);
  });

  it('logs out: the session token and the refresh token stop working', async () => {
    const t = await login(OWNER, OWNER_PW);
    const { sid } = await client(t.session_token).logout({});
    assert.equal(sid, t.refresh_token.split('.')[0]);
    await rejectsWith(client(t.session_token).whoami({}), 'UNAUTHENTICATED');
    await rejectsWith(client().refresh({ refresh_token: t.refresh_token }), 'UNAUTHENTICATED', /revoked/);
    assert.ok(events.some((e) => e.type === 'logout' && e.sid === sid));
  });

  it('answers TOKEN_EXPIRED for an expired session token', async () => {
    const t = await login(OWNER, OWNER_PW);
    const sid = t.refresh_token.split('.')[0];
    const key = loadKeyFile(join(root, 'etc', IDENTITY_FILES.verifyHubKey));
    const expired = await signAccessToken({ typ: 'session', sub: OWNER, app: APP, sid, jti: randomUUID() }, key.privateKey, -60, VERIFY_HUB_KID);
    await rejectsWith(client(expired).whoami({}), 'TOKEN_EXPIRED');
  });

  it('requires sudo for dangerous actions, and a correct password for sudo', async () => {
    await createUser('carol', 'Green-hill-4711');
    const t = await login(OWNER, OWNER_PW);
    const admin = client(t.session_token);
    await rejectsWith(admin.user_delete({ name: 'carol' }), 'SUDO_REQUIRED');
    await rejectsWith(admin.user_set_role({ name: 'carol', role: 'admin' }), 'SUDO_REQUIRED');
    await rejectsWith(admin.user_set_password({ name: 'carol', new_password: 'New-green-4711' }), 'SUDO_REQUIRED');
    await rejectsWith(admin.user_create({ name: 'dave', password: 'Old-stone-4711', role: 'admin' }), 'SUDO_REQUIRED');
    await rejectsWith(admin.sudo({ password: 'Wrong-password-1' }), 'UNAUTHENTICATED');
    const { sudo_token, expires_at } = await admin.sudo({ password: OWNER_PW });
    assert.ok(expires_at <= Math.floor(Date.now() / 1000) + 5 * 60 + 1);
    const sudo = client(sudo_token);
    assert.equal((await sudo.whoami({})).kind, 'sudo');
    assert.equal((await sudo.user_set_role({ name: 'carol', role: 'limited' })).role, 'limited');
    assert.ok(events.some((e) => e.type === 'permission_change' && e.target === 'carol' && e.reason === 'user -> limited'));
  });

  it('creates, lists, disables, enables and re-roles users; non-admins manage nobody else', async () => {
    const { sudo } = await sudoAs(OWNER, OWNER_PW);
    const admin = client(sudo);
    await rejectsWith(admin.user_create({ name: 'erin', password: 'short', role: 'user' }), 'INVALID_PARAMS', /at least 10 characters/);
    await rejectsWith(admin.user_create({ name: 'erin', password: 'erin-is-me-123', role: 'user' }), 'INVALID_PARAMS', /user name/);
    await rejectsWith(admin.user_create({ name: 'erin', password: 'onlylowercase', role: 'user' }), 'INVALID_PARAMS', /two kinds/);
    for (const reserved of ['scheduler', 'admin', 'control-panel', 'kernel']) {
      await rejectsWith(admin.user_create({ name: reserved, password: 'Plain-words-4711', role: 'user' }), 'INVALID_PARAMS', /reserved/);
    }
    const erin = await admin.user_create({ name: 'erin', password: 'Red-river-4711', role: 'user' });
    assert.deepEqual({ ...erin, created_at: 0 }, { name: 'erin', role: 'user', state: 'active', created_at: 0, owner: false });
    rbac.setUserRole('erin', 'user');
    await rejectsWith(admin.user_create({ name: 'erin', password: 'Red-river-4711', role: 'user' }), 'ALREADY_EXISTS');

    const names = (await admin.user_list({})).users.map((u) => u.name);
    assert.ok(names.includes(OWNER) && names.includes('erin'));

    const e = await login('erin', 'Red-river-4711');
    const asErin = client(e.session_token);
    assert.deepEqual((await asErin.user_list({})).users.map((u) => u.name), ['erin']);
    await rejectsWith(asErin.user_disable({ name: OWNER }), 'PERMISSION_DENIED', /only admins/);
    await rejectsWith(asErin.user_create({ name: 'frank', password: 'Tall-tree-4711', role: 'user' }), 'PERMISSION_DENIED');

    await rejectsWith(admin.user_disable({ name: OWNER }), 'PERMISSION_DENIED', /owner/);
    await rejectsWith(admin.user_set_role({ name: OWNER, role: 'user' }), 'PERMISSION_DENIED', /owner/);
    await rejectsWith(admin.user_delete({ name: OWNER }), 'PERMISSION_DENIED', /owner/);

    assert.equal((await admin.user_disable({ name: 'erin' })).state, 'disabled');
    await rejectsWith(asErin.whoami({}), 'UNAUTHENTICATED');
    await rejectsWith(client().refresh({ refresh_token: e.refresh_token }), 'UNAUTHENTICATED');
    await rejectsWith(login('erin', 'Red-river-4711'), 'PERMISSION_DENIED', /disabled/);
    assert.equal((await admin.user_enable({ name: 'erin' })).state, 'active');
    assert.ok((await login('erin', 'Red-river-4711')).session_token);
    assert.deepEqual(
      events.filter((x) => x.type === 'user_change' && x.target === 'erin').map((x) => x.action),
      ['create', 'disable', 'enable'],
    );
  });

  it('consults RBAC on obj://user/<name> for managing others', async () => {
    await createUser('gina', 'Cold-lake-4711');
    const { sudo } = await sudoAs(OWNER, OWNER_PW);
    denyResources.add('obj://user/gina');
    await rejectsWith(client(sudo).user_disable({ name: 'gina' }), 'PERMISSION_DENIED', /obj:\/\/user\/gina/);
    await rejectsWith(client(sudo).user_delete({ name: 'gina' }), 'PERMISSION_DENIED', /obj:\/\/user\/gina/);
  });

  it('changes passwords: own with the old one, another\'s as admin with sudo; other sessions end', async () => {
    await createUser('hank', 'Soft-rain-4711');
    const h1 = await login('hank', 'Soft-rain-4711');
    const h2 = await login('hank', 'Soft-rain-4711');
    const asHank = client(h1.session_token);
    await rejectsWith(asHank.user_set_password({ name: 'hank', new_password: 'Soft-rain-4712' }), 'INVALID_PARAMS', /old_password/);
    await rejectsWith(asHank.user_set_password({ name: 'hank', old_password: 'Wrong-password-1', new_password: 'Soft-rain-4712' }), 'UNAUTHENTICATED', /old password/);
    assert.deepEqual(await asHank.user_set_password({ name: 'hank', old_password: 'Soft-rain-4711', new_password: 'Soft-rain-4712' }), { revoked_sessions: 1 });
    assert.equal((await asHank.whoami({})).user, 'hank');
    await rejectsWith(client(h2.session_token).whoami({}), 'UNAUTHENTICATED');
    await rejectsWith(asHank.user_set_password({ name: OWNER, old_password: OWNER_PW, new_password: 'Owner-pass-2025' }), 'PERMISSION_DENIED');

    // Not even another admin, with sudo, may set the owner's password.
    await createUser('olga', 'High-tower-4711', 'admin');
    const { sudo: olga } = await sudoAs('olga', 'High-tower-4711');
    await rejectsWith(client(olga).user_set_password({ name: OWNER, new_password: 'Taken-over-4711' }), 'PERMISSION_DENIED', /owner/);
    await rejectsWith(login(OWNER, 'Taken-over-4711'), 'UNAUTHENTICATED');

    const { sudo } = await sudoAs(OWNER, OWNER_PW);
    assert.deepEqual(await client(sudo).user_set_password({ name: 'hank', new_password: 'Reset-by-admin-4711' }), { revoked_sessions: 1 });
    await rejectsWith(asHank.whoami({}), 'UNAUTHENTICATED');
    assert.ok((await login('hank', 'Reset-by-admin-4711')).session_token);
  });

  it('keeps guests from changing their own password (RBAC grants it from limited up)', async () => {
    await createUser('gus', 'Warm-sand-4711', 'guest');
    const g = await login('gus', 'Warm-sand-4711');
    await rejectsWith(
      client(g.session_token).user_set_password({ name: 'gus', old_password: 'Warm-sand-4711', new_password: 'Warm-sand-4712' }),
      'PERMISSION_DENIED',
    );
  });

  it('deletes a user: all their sessions at once, users/<name>/... and credentials, then the RBAC hook', async () => {
    await createUser('ivan', 'Dark-wood-4711');
    const i1 = await login('ivan', 'Dark-wood-4711');
    const i2 = await login('ivan', 'Dark-wood-4711', 'buckyos-cli');
    await config.set({ key: 'users/ivan/apps/share/spec', value: '{}' });
    await config.set({ key: 'users/ivanka/settings', value: JSON.stringify({ name: 'ivanka', role: 'user', state: 'active', created_at: 0 }) });
    const { sudo } = await sudoAs(OWNER, OWNER_PW);
    const r = await client(sudo).user_delete({ name: 'ivan' });
    assert.deepEqual(r, { deleted_keys: 5, revoked_sessions: 2 });
    for (const key of ['users/ivan/settings', 'users/ivan/apps/share/spec', 'system/verify-hub/credentials/ivan']) {
      assert.equal((await config.get({ key })).value, null, key);
    }
    assert.notEqual((await config.get({ key: 'users/ivanka/settings' })).value, null);
    await rejectsWith(client(i1.session_token).whoami({}), 'UNAUTHENTICATED');
    await rejectsWith(client().refresh({ refresh_token: i2.refresh_token }), 'UNAUTHENTICATED');
    await rejectsWith(login('ivan', 'Dark-wood-4711'), 'UNAUTHENTICATED', /wrong user name or password/);
    assert.deepEqual(deleted, ['ivan']);
    assert.equal(rbac.check({ user: 'ivan', app: APP, resource: 'obj://user/ivan', action: 'read' }), false);
    assert.ok(events.some((e) => e.type === 'deletion' && e.target === 'ivan' && e.actor === OWNER));
    await rejectsWith(client(sudo).user_delete({ name: 'ivan' }), 'NOT_FOUND');
  });

  it('gives every account an id of its own in its record, so a later account of the same name is told apart', async () => {
    const idOf = async (name: string) => (JSON.parse((await config.get({ key: `users/${name}/settings` })).value!) as { id?: unknown }).id;
    const owner = await idOf(OWNER);
    assert.match(String(owner), /^[0-9a-f-]{36}$/);
    await createUser('iris', 'Green-leaf-4711');
    const first = await idOf('iris');
    assert.match(String(first), /^[0-9a-f-]{36}$/);
    assert.notEqual(first, owner);
    const { sudo } = await sudoAs(OWNER, OWNER_PW);
    await client(sudo).user_set_role({ name: 'iris', role: 'limited' });
    assert.equal(await idOf('iris'), first, 'kept through changes of the account');
    await client(sudo).user_delete({ name: 'iris' });
    await createUser('iris', 'Green-leaf-4711');
    const second = await idOf('iris');
    assert.match(String(second), /^[0-9a-f-]{36}$/);
    assert.notEqual(second, first);
  });

  it('lists and revokes sessions: one\'s own, or anyone\'s as admin', async () => {
    await createUser('judy', 'Bright-star-4711');
    const j1 = await login('judy', 'Bright-star-4711');
    const j2 = await login('judy', 'Bright-star-4711', 'buckyos-cli');
    const asJudy = client(j1.session_token);
    const mine = (await asJudy.session_list({})).sessions.filter((s) => !s.revoked);
    assert.deepEqual(mine.map((s) => [s.app, s.current]).sort(), [['buckyos-cli', false], [APP, true]]);
    await rejectsWith(asJudy.session_list({ all: true }), 'PERMISSION_DENIED');
    await rejectsWith(asJudy.session_list({ user: OWNER }), 'PERMISSION_DENIED');
    const ownerSid = (await login(OWNER, OWNER_PW)).refresh_token.split('.')[0];
    await rejectsWith(asJudy.session_revoke({ sid: ownerSid }), 'PERMISSION_DENIED');

    const j2sid = j2.refresh_token.split('.')[0];
    await asJudy.session_revoke({ sid: j2sid });
    await rejectsWith(client(j2.session_token).whoami({}), 'UNAUTHENTICATED');

    const admin = client((await login(OWNER, OWNER_PW)).session_token);
    const all = (await admin.session_list({ all: true })).sessions;
    assert.ok(all.some((s) => s.user === 'judy') && all.some((s) => s.user === OWNER));
    await admin.session_revoke({ sid: j1.refresh_token.split('.')[0] });
    await rejectsWith(asJudy.whoami({}), 'UNAUTHENTICATED');
  });

  it('lets an installed app holding an admin\'s session list neither the users nor other accounts\' sessions', async () => {
    await config.set({ key: `users/${OWNER}/apps/notes/spec`, value: '{}' });
    rbac.loadTail('g2, notes, app\n');
    const asNotes = client((await login(OWNER, OWNER_PW, 'notes')).session_token);
    await rejectsWith(asNotes.user_list({}), 'PERMISSION_DENIED', /app notes\) may not read obj:\/\/user\/\*/);
    await rejectsWith(asNotes.session_list({ all: true }), 'PERMISSION_DENIED', /obj:\/\/user\/\*\/sessions/);
    await rejectsWith(asNotes.session_list({ user: 'judy' }), 'PERMISSION_DENIED', /obj:\/\/user\/judy\/sessions/);
    assert.ok((await asNotes.session_list({})).sessions.length > 0, 'its own user\'s sessions it may see');
    const asPanel = client((await login(OWNER, OWNER_PW)).session_token);
    assert.ok((await asPanel.user_list({})).users.length > 1, 'the system UI may');
    assert.ok((await asPanel.session_list({ all: true })).sessions.length > 0);
    rbac.loadTail('');
  });

  it('lets an installed app end its own session but not its user\'s other sessions', async () => {
    await config.set({ key: `users/${OWNER}/apps/notes/spec`, value: '{}' });
    rbac.loadTail('g2, notes, app\n');
    const panel = await login(OWNER, OWNER_PW);
    const notes = await login(OWNER, OWNER_PW, 'notes');
    const asPanel = client(panel.session_token);
    const asNotes = client(notes.session_token);
    const sidOf = async (c: typeof asPanel) => (await c.session_list({})).sessions.find((x) => x.current)!.sid;
    const panelSid = await sidOf(asPanel);
    await rejectsWith(asNotes.session_revoke({ sid: panelSid }), 'PERMISSION_DENIED', /app notes\) may not write obj:\/\/user\/[a-z]+\/sessions/);
    assert.equal((await asPanel.session_list({})).sessions.find((x) => x.sid === panelSid)?.revoked, false, 'the other session goes on');
    await asNotes.session_revoke({ sid: await sidOf(asNotes) });
    await rejectsWith(client().refresh({ refresh_token: notes.refresh_token }), 'UNAUTHENTICATED', /revoked/);
    const other = await login(OWNER, OWNER_PW);
    await asPanel.session_revoke({ sid: await sidOf(client(other.session_token)) });
    await rejectsWith(client().refresh({ refresh_token: other.refresh_token }), 'UNAUTHENTICATED', /revoked/);
    rbac.loadTail('');
  });

  it('ends an app\'s session at its next refresh once the app is uninstalled for the user', async () => {
    await config.set({ key: `users/${OWNER}/apps/jotter/spec`, value: '{}' });
    const t = await login(OWNER, OWNER_PW, 'jotter');
    const once = await client().refresh({ refresh_token: t.refresh_token });
    await config.delete({ key: `users/${OWNER}/apps/jotter/spec` });
    await rejectsWith(client().refresh({ refresh_token: once.refresh_token }), 'UNAUTHENTICATED', /revoked/);
  });

  it('logs the owner in with the owner key, and only the owner', async () => {
    const t = await loginJwt(owner, OWNER);
    assert.deepEqual(t.user, { name: OWNER, role: 'admin' });
    await rejectsWith(loginJwt(owner, 'bob'), 'UNAUTHENTICATED', /only the owner/);
    await rejectsWith(loginJwt(generateKeyPair(), OWNER), 'UNAUTHENTICATED', /not signed by the owner key/);
    await rejectsWith(loginJwt(owner, OWNER, { ttlSec: 10 * 60 }), 'UNAUTHENTICATED', /within 300 seconds/);
    await rejectsWith(loginJwt(owner, OWNER, { nonce: 'never-issued' }), 'UNAUTHENTICATED', /nonce/);
  });

  it('logs in with a core device key: this node\'s own, or another core device the owner signed; never a storage, portable or gateway device\'s', async () => {
    const own = await loginJwt(device, OWNER, { kid: didDev(device.publicKeyB64) });
    assert.equal(own.user.name, OWNER);
    const stranger = generateKeyPair();
    await rejectsWith(loginJwt(stranger, OWNER, { kid: didDev(stranger.publicKeyB64) }), 'UNAUTHENTICATED', /not part of this zone/);

    const now = Math.floor(Date.now() / 1000);
    const enrol = async (name: string, role: 'core' | 'portable') => {
      const key = generateKeyPair();
      const doc = await signDocument({ typ: 'device', name, zone: ZONE, did: didDev(key.publicKeyB64), key: key.publicKeyB64, role, iat: now, exp: now + 3600 }, owner.privateKey);
      await config.set({ key: `devices/${name}/doc`, value: doc });
      return key;
    };
    const ood2 = await enrol('ood2', 'core');
    const viaOod2 = await loginJwt(ood2, OWNER, { kid: didDev(ood2.publicKeyB64) });
    const sessions = (await client(viaOod2.session_token).session_list({})).sessions;
    assert.equal(sessions.find((s) => s.current)?.login, 'device_key');
    // A session carries no device, so RBAC's device side could not bound one opened by a non-core device's key: such
    // a key logs nobody in, the owner least of all.
    const laptop = await enrol('laptop', 'portable');
    await rejectsWith(loginJwt(laptop, OWNER, { kid: didDev(laptop.publicKeyB64) }), 'PERMISSION_DENIED', /signed by a portable device: only a core device's key logs a user in/);
    assert.ok(events.some((e) => e.type === 'login_failed' && e.reason === 'device_not_core'));
    // A key that merely claims a zone device's DID does not verify.
    await rejectsWith(loginJwt(stranger, OWNER, { kid: didDev(ood2.publicKeyB64) }), 'UNAUTHENTICATED', /not signed by the device key/);
  });

  it('lets a kernel service token (root on a device) manage users on RBAC alone, but not log in or out', async () => {
    const svc = client(await rtHub.serviceToken());
    const me = await svc.whoami({});
    assert.deepEqual([me.kind, me.role, me.owner], ['service', null, false]);
    assert.ok((await svc.user_list({})).users.some((u) => u.name === OWNER));
    assert.equal((await svc.user_create({ name: 'kim', password: 'Quiet-field-4711', role: 'admin' })).role, 'admin');
    rbac.setUserRole('kim', 'admin');
    const k = await login('kim', 'Quiet-field-4711');
    assert.ok((await svc.session_list({})).sessions.some((x) => x.user === 'kim'));
    await svc.session_revoke({ sid: k.refresh_token.split('.')[0] });
    await rejectsWith(client(k.session_token).whoami({}), 'UNAUTHENTICATED');
    await rejectsWith(svc.user_disable({ name: OWNER }), 'PERMISSION_DENIED', /owner/);
    // Root on a zone device may set the owner's password: the way back in for an owner who lost it.
    const o = await login(OWNER, OWNER_PW);
    assert.ok((await svc.user_set_password({ name: OWNER, new_password: OWNER_PW })).revoked_sessions >= 1);
    await rejectsWith(client(o.session_token).whoami({}), 'UNAUTHENTICATED');
    assert.deepEqual(await svc.user_delete({ name: 'kim' }), { deleted_keys: 3, revoked_sessions: 0 });
    assert.ok(events.some((e) => e.type === 'deletion' && e.target === 'kim' && e.actor === 'verify-hub'));
    await rejectsWith(svc.logout({}), 'FAILED_PRECONDITION');
    await rejectsWith(svc.sudo({ password: OWNER_PW }), 'PERMISSION_DENIED', /user session/);
  });

  it('refuses a storage device\'s kernel managing users, sessions or devices: RBAC bounds it by its device\'s role', async () => {
    const nas = generateKeyPair();
    const now = Math.floor(Date.now() / 1000);
    const doc = await signDocument(
      { typ: 'device', name: 'nas1', zone: ZONE, did: didDev(nas.publicKeyB64), key: nas.publicKeyB64, role: 'storage', iat: now, exp: now + 3600 },
      owner.privateKey,
    );
    await config.set({ key: 'devices/nas1/doc', value: doc });
    const token = await signAccessToken({ typ: 'service', sub: 'node-daemon', app: 'buckyos-cli', jti: randomUUID() }, nas.privateKey, 600, didDev(nas.publicKeyB64));
    const svc = client(token);
    const onNas = /node-daemon \(app buckyos-cli\) on storage device nas1 may not/;
    await rejectsWith(svc.user_create({ name: 'mole', password: 'Quiet-field-4711', role: 'admin' }), 'PERMISSION_DENIED', onNas);
    await rejectsWith(svc.user_set_password({ name: OWNER, new_password: 'Taken-over-4711' }), 'PERMISSION_DENIED', onNas);
    await rejectsWith(svc.user_set_role({ name: OWNER, role: 'guest' }), 'PERMISSION_DENIED', onNas);
    await rejectsWith(svc.device_offer({ role: 'core', ttl_sec: 600 }), 'PERMISSION_DENIED', onNas);
    await rejectsWith(svc.device_offer({ role: 'storage', ttl_sec: 600 }), 'PERMISSION_DENIED', onNas);
    await rejectsWith(svc.device_remove({ name: 'ood1', force: true, ignore_quorum: false }), 'PERMISSION_DENIED', onNas);
    const o = await login(OWNER, OWNER_PW);
    await rejectsWith(svc.session_revoke({ sid: o.refresh_token.split('.')[0] }), 'PERMISSION_DENIED', onNas);
    assert.equal((await config.get({ key: 'users/mole/settings' })).value, null);
    assert.ok((await login(OWNER, OWNER_PW)).session_token, 'the owner\'s password is unchanged');
    // It may still see the zone's devices, as `buckyos device list` on it shows them.
    assert.ok((await svc.device_list({})).devices.some((d) => d.name === 'nas1'));
  });
});
