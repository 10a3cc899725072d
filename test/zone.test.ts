// End-to-end: a real single-device zone (node_daemon and its kernel children as separate processes) in a temporary
// root, activated through the activation API and used through the node gateway, as a person or script would.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { BIN, startZone, type TestZone } from './support/zone.ts';
import { activateDevice } from '../src/lib/identity/activation-client.ts';
import { generateMnemonic } from '../src/lib/identity/mnemonic.ts';
import { loadKeyFile } from '../src/lib/identity/keys.ts';
import { VERIFY_HUB_KID, signAccessToken } from '../src/lib/identity/tokens.ts';
import { systemConfigApi } from '../src/lib/api/system-config.ts';
import { verifyHubApi } from '../src/lib/api/verify-hub.ts';
import { klogApi } from '../src/lib/api/klog.ts';
import { schedulerApi } from '../src/lib/api/scheduler.ts';
import { KrpcError, createClient } from '../src/lib/krpc/index.ts';
import type { NodeStatusFile } from '../src/kernel/node-daemon/main.ts';

const ADMIN_PASSWORD = 'Correct-horse-battery-9';
const BOB_PASSWORD = 'Staple-Battery-42x';
const KERNEL = ['system-config', 'verify-hub', 'klog', 'scheduler', 'gateway'];

const allHealthy = (s: NodeStatusFile) => s.state === 'running' && KERNEL.every((n) => s.children.some((c) => c.name === n && c.healthy));

describe('single-device zone, end to end', { timeout: 300_000 }, () => {
  let zone: TestZone;
  const hub = () => createClient(verifyHubApi, { baseUrl: zone.gatewayUrl });
  const config = (token: string) => createClient(systemConfigApi, { baseUrl: zone.gatewayUrl, token });

  /** A password login as a person would do it: the login rate limit (10 attempts from one address, one more every
   * 6 s), which this many tests reach, is waited out rather than failed on. */
  async function login(username: string, password: string) {
    for (let attempt = 1; ; attempt++) {
      try {
        const { nonce } = await hub().login_nonce({});
        return await hub().login_password({ username, password, nonce, app_id: 'control-panel' });
      } catch (e) {
        if (!(e instanceof KrpcError && e.code === 'RATE_LIMITED') || attempt === 5) throw e;
        const wait = (e.data as { retry_after_ms?: number } | undefined)?.retry_after_ms ?? 1000;
        await new Promise((r) => setTimeout(r, Math.min(wait, 10_000)));
      }
    }
  }

  before(async () => {
    zone = await startZone();
  });
  after(async () => {
    await zone?.destroy();
  });

  it('describes the unactivated device and activates it through the API', async () => {
    const dev = (await (await fetch(`${zone.activationUrl}/device`)).json()) as { activated: boolean; cpu: { count: number }; memory: { total_bytes: number } };
    assert.equal(dev.activated, false);
    assert.ok(dev.cpu.count >= 1 && dev.memory.total_bytes > 0);
    await assert.rejects(
      activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: 'alice.example.com', owner: 'alice', password: 'weak' }),
      (e: KrpcError) => e.code === 'INVALID_PARAMS',
    );
    const r = await activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: 'alice.example.com', owner: 'alice', password: ADMIN_PASSWORD });
    assert.equal(r.zone, 'alice.example.com');
    await zone.waitFor(allHealthy, 90_000, 'every kernel service healthy');
    await zone.waitRoutable(KERNEL);
  });

  it('logs in the owner and serves config reads and writes through the gateway', async () => {
    const t = await login('alice', ADMIN_PASSWORD);
    assert.equal(t.user.role, 'admin');
    const c = config(t.session_token);
    const boot = await c.get({ key: 'boot/config' });
    assert.ok(boot.value && boot.value.split('.').length === 3, 'boot/config holds the owner-signed JWT');
    await c.set({ key: 'storage/settings/demo', value: '{"copies":2}' });
    assert.equal((await c.get({ key: 'storage/settings/demo' })).value, '{"copies":2}');
    await assert.rejects(login('alice', 'Wrong-password-123'), (e: KrpcError) => e.code === 'UNAUTHENTICATED');
  });

  it('allows and denies config access by RBAC for a plain user', async () => {
    const admin = await login('alice', ADMIN_PASSWORD);
    await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: admin.session_token }).user_create({ name: 'bob', password: BOB_PASSWORD, role: 'user' });
    const bob = config((await login('bob', BOB_PASSWORD)).session_token);
    assert.notEqual((await bob.get({ key: 'users/bob/settings' })).value, null);
    await bob.set({ key: 'users/bob/apps/share/settings/theme', value: 'dark' });
    for (const call of [
      () => bob.set({ key: 'storage/settings/demo', value: '{}' }),
      () => bob.get({ key: 'users/alice/settings' }),
      () => bob.get({ key: 'system/verify-hub/credentials/alice' }),
      () => bob.set({ key: 'users/bob/settings', value: '{"role":"admin"}' }),
    ]) {
      await assert.rejects(call(), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
    }
  });

  it('rejects expired tokens and detects refresh-token reuse', async () => {
    const hubKey = loadKeyFile(join(zone.paths.etc, 'verify_hub_key.pem'));
    const expired = await signAccessToken({ typ: 'session', sub: 'alice', app: 'control-panel', sid: 'x', jti: randomUUID() }, hubKey.privateKey, -120, VERIFY_HUB_KID);
    await assert.rejects(config(expired).get({ key: 'boot/config' }), (e: KrpcError) => e.code === 'TOKEN_EXPIRED');

    const first = await login('alice', ADMIN_PASSWORD);
    const second = await hub().refresh({ refresh_token: first.refresh_token });
    assert.notEqual(second.refresh_token, first.refresh_token);
    await assert.rejects(hub().refresh({ refresh_token: first.refresh_token }), (e: KrpcError) => e.code === 'UNAUTHENTICATED');
    // Reuse revoked the whole session: the rotated token is dead too.
    await assert.rejects(hub().refresh({ refresh_token: second.refresh_token }), (e: KrpcError) => e.code === 'UNAUTHENTICATED');
  });

  it('keeps sessions across a verify-hub crash and restart', async () => {
    const t = await login('alice', ADMIN_PASSWORD);
    const before = zone.status()!.children.find((c) => c.name === 'verify-hub')!;
    process.kill(before.pid!, 'SIGKILL');
    await zone.waitFor((s) => s.children.some((c) => c.name === 'verify-hub' && c.healthy && c.pid !== before.pid), 60_000, 'verify-hub restarted');
    await zone.waitRoutable(['verify-hub']);
    const again = await hub().refresh({ refresh_token: t.refresh_token });
    const who = await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: again.session_token }).whoami({});
    assert.equal(who.user, 'alice');
  });

  for (const name of ['system-config', 'klog', 'scheduler', 'gateway']) {
    it(`restarts ${name} after kill -9 with its state intact`, async () => {
      const t = await login('alice', ADMIN_PASSWORD);
      await config(t.session_token).set({ key: `storage/marker-${name}`, value: name });
      const victim = zone.status()!.children.find((c) => c.name === name)!;
      process.kill(victim.pid!, 'SIGKILL');
      await zone.waitFor((s) => s.children.some((c) => c.name === name && c.healthy && c.pid !== victim.pid), 60_000, `${name} restarted`);
      await zone.waitFor(allHealthy, 60_000, 'zone healthy again');
      await zone.waitRoutable(KERNEL);
      const after = await login('alice', ADMIN_PASSWORD);
      assert.equal((await config(after.session_token).get({ key: `storage/marker-${name}` })).value, name);
      if (name === 'klog') {
        const klog = createClient(klogApi, { baseUrl: zone.gatewayUrl, token: after.session_token });
        const audit = await klog.audit_query({ kind: 'login', limit: 5 });
        assert.ok(audit.events.length > 0, 'audit stream kept its login events');
      }
    });
  }

  it('reports status through the CLI and answers config and user verbs as local root', async () => {
    const st = await zone.cli(['status', '--json']);
    assert.equal(st.code, 0, st.stderr);
    const report = JSON.parse(st.stdout) as { state: string; services: { name: string; healthy: boolean; rss_bytes: number }[]; config_reachable: boolean };
    assert.equal(report.state, 'running');
    assert.deepEqual(report.services.map((s) => s.name).sort(), [...KERNEL].sort());
    assert.ok(report.services.every((s) => s.healthy && s.rss_bytes > 0));
    assert.equal(report.config_reachable, true);
    const table = await zone.cli(['status']);
    assert.match(table.stdout, /SERVICE\s+STATE\s+HEALTH/);
    const got = await zone.cli(['config', 'get', 'storage/settings/demo']);
    assert.equal(got.stdout.trim(), '{"copies":2}');
    const users = await zone.cli(['user', 'list']);
    assert.match(users.stdout, /alice\s+admin/);
    assert.match(users.stdout, /bob\s+user/);
    const logs = await zone.cli(['logs', '-s', 'verify-hub', '-g', 'listening', '-n', '5']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /verify-hub: .*listening/);
    const follow = spawn(process.execPath, [BIN, '--root', zone.root, 'logs', '--follow', '-n', '0', '-g', 'marker-follow']);
    let followed = '';
    let followErr = '';
    follow.stdout.on('data', (d) => (followed += d));
    follow.stderr.on('data', (d) => (followErr += d));
    try {
      const deadline = Date.now() + 30_000;
      while (!followed.includes('marker-follow') && Date.now() < deadline) {
        // system-config logs each write with its keys (debug level in this zone); shipped to klog, it reaches the follower.
        await zone.cli(['config', 'set', 'storage/marker-follow', '1']);
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.match(followed, /marker-follow/, `follower printed nothing matching; stderr: ${followErr}`);
    } finally {
      follow.kill();
    }
    const denied = await zone.cli(['--user', 'bob', 'config', 'set', 'storage/x', '1'], { BUCKYOS_PASSWORD: BOB_PASSWORD });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /PERMISSION_DENIED/);
  });

  it('removes a deleted user\'s access at once', async () => {
    const bobSession = (await login('bob', BOB_PASSWORD)).session_token;
    const rm = await zone.cli(['user', 'rm', 'bob']);
    assert.equal(rm.code, 0, rm.stderr);
    await assert.rejects(config(bobSession).get({ key: 'users/bob/settings' }), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
    await assert.rejects(login('bob', BOB_PASSWORD), (e: KrpcError) => e.code === 'UNAUTHENTICATED');
    const admin = await login('alice', ADMIN_PASSWORD);
    const klog = createClient(klogApi, { baseUrl: zone.gatewayUrl, token: admin.session_token });
    const deadline = Date.now() + 20_000;
    let kinds = new Set<string>();
    while (Date.now() < deadline) {
      kinds = new Set((await klog.audit_query({ limit: 500 })).events.map((e) => e.kind));
      if (['activation', 'login', 'login_failed', 'user_change', 'deletion', 'device_change'].every((k) => kinds.has(k))) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.deepEqual(
      ['activation', 'login', 'login_failed', 'user_change', 'deletion', 'device_change'].filter((k) => !kinds.has(k)),
      [],
      'the audit stream holds every kind of security event this run caused',
    );
    assert.equal((await klog.audit_verify({})).ok, true);
  });

  it('routes by what the scheduler writes, and a settled zone ticks without writing', async () => {
    const admin = await login('alice', ADMIN_PASSWORD);
    const scheduler = createClient(schedulerApi, { baseUrl: zone.gatewayUrl, token: admin.session_token });
    const node = zone.status()!.node!;
    const kernel = createClient(systemConfigApi, { baseUrl: zone.gatewayUrl, token: await zone.localToken() });
    const route = JSON.parse((await kernel.get({ key: 'services/verify-hub/info' })).value!) as { instances: unknown[] };
    assert.deepEqual(route.instances, [{ node, host: '127.0.0.1', port: zone.ports.verify_hub, state: 'running' }]);
    // Heartbeats keep arriving every second; a tick may still be catching up with the last restart, then none writes.
    let tick = await scheduler.tick({});
    for (let i = 0; i < 20 && tick.changes.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      tick = await scheduler.tick({});
    }
    assert.deepEqual(tick, { changes: [], written: false, revision: null, conflicts: [] });
    const status = await scheduler.status({});
    assert.ok(status.ticks > 0 && status.writes > 0, JSON.stringify(status));
    assert.deepEqual(status.problems, []);
    const cli = await zone.cli(['scheduler', 'status']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /ticks: \d+\s+writes: \d+\s+lost races: \d+/);
    await createClient(verifyHubApi, { baseUrl: zone.gatewayUrl, token: admin.session_token }).user_create({ name: 'dave', password: BOB_PASSWORD, role: 'user' });
    const plain = (await login('dave', BOB_PASSWORD)).session_token;
    await assert.rejects(createClient(schedulerApi, { baseUrl: zone.gatewayUrl, token: plain }).tick({}), (e: KrpcError) => e.code === 'PERMISSION_DENIED');
  });

  it('converges to the scheduler\'s intent: a service a spec places nowhere stops, and starts again when the spec goes', async () => {
    const t = await login('alice', ADMIN_PASSWORD);
    const node = zone.status()!.node!;
    const admin = config(t.session_token);
    const kernel = createClient(systemConfigApi, { baseUrl: zone.gatewayUrl, token: await zone.localToken() });
    await admin.set({ key: 'services/klog/spec', value: JSON.stringify({ replicas: 0, roles: ['core'] }) });
    await zone.waitFor((s) => !s.children.some((c) => c.name === 'klog'), 30_000, 'klog stopped');
    const runConfig = JSON.parse((await kernel.get({ key: `nodes/${node}/config` })).value!) as { kernel: string[] };
    assert.deepEqual(runConfig.kernel, KERNEL.filter((k) => k !== 'klog'));
    assert.equal((await kernel.get({ key: `services/klog/instances/${node}` })).value, null, 'a service stopped on purpose leaves no heartbeat behind');
    await admin.delete({ key: 'services/klog/spec' });
    await zone.waitFor(allHealthy, 60_000, 'klog started again');
    await zone.waitRoutable(['klog']);
  });

  it('stops the whole process tree on SIGTERM', async () => {
    const pids = zone.status()!.children.map((c) => c.pid!);
    await zone.stop();
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), `kernel process ${pid} still alive`);
    assert.equal(zone.daemon.exitCode, 0);
    assert.throws(() => readFileSync(join(zone.paths.run, 'status.json')), 'status file removed');
  });

  it('resets to an unactivated device that keeps no old accounts', async () => {
    const refused = await zone.cli(['reset']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /--yes/);
    const r = await zone.cli(['reset', '--yes']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /removed .*zone\.json/);
    assert.match(r.stdout, /removed .*system-config/);
    assert.match(r.stdout, /kept .*logs/);
    zone.startDaemon();
    await zone.waitFor((s) => s.state === 'activation', 30_000, 'activation mode after reset');
    await activateDevice(zone.activationUrl, { mnemonic: generateMnemonic(), zone: 'carol.example.net', owner: 'carol', password: 'Another-horse-77x' });
    await zone.waitFor(allHealthy, 90_000, 'new zone healthy');
    await zone.waitRoutable(KERNEL);
    await assert.rejects(login('alice', ADMIN_PASSWORD), (e: KrpcError) => e.code === 'UNAUTHENTICATED');
    assert.equal((await login('carol', 'Another-horse-77x')).user.role, 'admin');
  });
});
