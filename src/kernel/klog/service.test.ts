import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { klogApi } from '../../lib/api/klog.ts';
import { KrpcError, type Principal, type RunningServer, callRaw, createClient, createHttpApp, listen } from '../../lib/krpc/index.ts';
import { createDefaultAuthorize, createKlogEndpoint, redactSecrets } from './service.ts';
import { KlogStore } from './store.ts';

// The one test double: token verification. Real tokens are Ed25519 JWTs checked by lib/identity/tokens.ts, which has
// its own tests; here each test token maps straight to the principal such a token would carry. Everything behind the
// token boundary (kRPC server, authorization, redaction, store) is the real code.
const PRINCIPALS: Record<string, Principal> = {
  'svc-node-daemon': { userId: 'node-daemon', appId: 'node-daemon', kind: 'service', expiresAt: 0, deviceName: 'ood1', deviceRole: 'core' },
  'svc-verify-hub': { userId: 'verify-hub', appId: 'verify-hub', kind: 'service', expiresAt: 0, deviceName: 'ood1', deviceRole: 'core' },
  'svc-nas': { userId: 'node-daemon', appId: 'node-daemon', kind: 'service', expiresAt: 0, deviceName: 'nas1', deviceRole: 'storage' },
  'svc-unknown-device': { userId: 'node-daemon', appId: 'node-daemon', kind: 'service', expiresAt: 0 },
  'alice-panel': { userId: 'alice', appId: 'control-panel', kind: 'session', expiresAt: 0 },
  'alice-sudo-cli': { userId: 'alice', appId: 'buckyos-cli', kind: 'sudo', expiresAt: 0 },
  'alice-via-app': { userId: 'alice', appId: 'some-downloader', kind: 'session', expiresAt: 0 },
  'bob-panel': { userId: 'bob', appId: 'control-panel', kind: 'session', expiresAt: 0 },
  'ghost-panel': { userId: 'ghost', appId: 'control-panel', kind: 'session', expiresAt: 0 },
  'carol-panel': { userId: 'carol', appId: 'control-panel', kind: 'session', expiresAt: 0 },
};
const ROLES: Record<string, string> = { alice: 'admin', bob: 'user' };

function authenticate(token: string): Principal {
  const p = PRINCIPALS[token];
  if (!p) throw new KrpcError('UNAUTHENTICATED', 'unknown test token');
  return p;
}

const rec = (msg: string, over: Record<string, unknown> = {}) => ({ ts: Date.now(), level: 'info' as const, service: 'svc', node: 'n1', msg, ...over });

describe('klog service over HTTP', () => {
  let dir: string;
  let store: KlogStore;
  let srv: RunningServer;
  let base: string;
  const client = (token: string) => createClient(klogApi, { baseUrl: base, token });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'klog-svc-'));
    store = new KlogStore({ path: join(dir, 'klog.db') });
    const roleOf = async (u: string) => {
      if (u === 'carol') throw new Error('system-config unreachable');
      return ROLES[u];
    };
    const endpoint = createKlogEndpoint(store, { authorize: createDefaultAuthorize({ roleOf }), authenticate });
    srv = await listen(createHttpApp({ name: 'klog', endpoints: [endpoint] }), 0, '127.0.0.1');
    base = `http://127.0.0.1:${srv.port}`;
  });
  after(async () => {
    await srv.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lets only service tokens append, and admins (through zone apps) and services read', async () => {
    assert.deepEqual(await client('svc-node-daemon').append({ records: [rec('from the shipper')] }), { accepted: 1, duplicate: false });
    for (const t of ['alice-panel', 'alice-sudo-cli', 'bob-panel']) {
      await assert.rejects(client(t).append({ records: [rec('forged')] }), { code: 'PERMISSION_DENIED' }, t);
    }
    for (const t of ['alice-panel', 'alice-sudo-cli', 'svc-verify-hub']) {
      const { records } = await client(t).query({ text: 'shipper' });
      assert.deepEqual(records.map((r) => r.msg), ['from the shipper'], t);
      await client(t).tail({ after_id: 0, timeout_ms: 0 });
      await client(t).audit_query({});
      await client(t).audit_verify({});
    }
    for (const t of ['bob-panel', 'ghost-panel', 'alice-via-app']) {
      await assert.rejects(client(t).query({}), { code: 'PERMISSION_DENIED' }, t);
      await assert.rejects(client(t).tail({ timeout_ms: 0 }), { code: 'PERMISSION_DENIED' }, t);
      await assert.rejects(client(t).audit_query({}), { code: 'PERMISSION_DENIED' }, t);
      await assert.rejects(client(t).audit_verify({}), { code: 'PERMISSION_DENIED' }, t);
    }
    await assert.rejects(client('carol-panel').query({}), { code: 'UNAVAILABLE' });
    // A storage device's kernel ships its own logs and audit events but reads nobody's; nor does one whose device's
    // role is unknown.
    assert.equal((await client('svc-nas').append({ records: [rec('from nas1')] })).accepted, 1);
    await client('svc-nas').audit_append({ event: { kind: 'login', actor: 'alice', target: 'device:nas1' } });
    for (const t of ['svc-nas', 'svc-unknown-device']) {
      await assert.rejects(client(t).query({}), { code: 'PERMISSION_DENIED', message: /may not read the zone's logs/ }, t);
      await assert.rejects(client(t).tail({ timeout_ms: 0 }), { code: 'PERMISSION_DENIED' }, t);
      await assert.rejects(client(t).audit_query({}), { code: 'PERMISSION_DENIED' }, t);
      await assert.rejects(client(t).audit_verify({}), { code: 'PERMISSION_DENIED' }, t);
    }
    await assert.rejects(client('nobody').query({}), { code: 'UNAUTHENTICATED' });
    await assert.rejects(createClient(klogApi, { baseUrl: base }).query({}), { code: 'UNAUTHENTICATED' });
  });

  it('lets only kernel services write audit events, stamping the source from the token', async () => {
    const r = await client('svc-verify-hub').audit_append({ event: { kind: 'login', actor: 'alice', target: 'session:9', detail: { ip: '192.168.1.5' } } });
    assert.equal(r.hash.length, 64);
    await assert.rejects(client('alice-sudo-cli').audit_append({ event: { kind: 'login', actor: 'alice' } }), { code: 'PERMISSION_DENIED' });
    const raw = await callRaw(`${base}/kapi/klog`, { method: 'audit_append', params: { event: { kind: 'login', actor: 'x', source: 'forged' } }, sys: [1, 'svc-verify-hub'] }, 5000);
    assert.equal((raw.json as { error: { code: string } }).error.code, 'INVALID_PARAMS');
    const { events } = await client('alice-panel').audit_query({ kind: 'login' });
    assert.equal(events[0].seq, r.seq);
    assert.equal(events[0].source, 'verify-hub');
    assert.equal(events[0].target, 'session:9');
    assert.deepEqual(await client('alice-panel').audit_verify({}), { ok: true, count: events.length, head_hash: r.hash });
  });

  it('redacts secret-named fields at any depth before storing, in logs and in audit details', async () => {
    const fields = {
      password: 'hunter2', user: 'bob',
      req: { headers: { Authorization: 'Bearer abc' }, body: { refreshToken: 'rt', 'new-password': 'p2', nested: [{ private_key: 'pk', ok: 1 }] } },
      mnemonic: 'twelve words', client_secret: 's', token_count: 3,
    };
    await client('svc-node-daemon').append({ records: [rec('redaction probe', { fields })] });
    const [stored] = (await client('alice-panel').query({ text: 'redaction probe' })).records;
    assert.deepEqual(stored.fields, {
      password: '[redacted]', user: 'bob',
      req: { headers: { Authorization: '[redacted]' }, body: { refreshToken: '[redacted]', 'new-password': '[redacted]', nested: [{ private_key: '[redacted]', ok: 1 }] } },
      mnemonic: '[redacted]', client_secret: '[redacted]', token_count: 3,
    });
    assert.equal(JSON.stringify(store.query({ limit: 1000 })).includes('hunter2'), false);

    await client('svc-verify-hub').audit_append({ event: { kind: 'password_change', actor: 'bob', target: 'bob', detail: { old_password: 'a', by: 'self' } } });
    const [ev] = (await client('alice-panel').audit_query({ kind: 'password_change' })).events;
    assert.deepEqual(ev.detail, { old_password: '[redacted]', by: 'self' });
    assert.deepEqual(redactSecrets(['x', { sessionToken: 't' }]), ['x', { sessionToken: '[redacted]' }]);
  });

  it('acknowledges a resent batch without storing it twice', async () => {
    const c = client('svc-node-daemon');
    assert.deepEqual(await c.append({ records: [rec('batched once')], batch_id: 'stream-1:7' }), { accepted: 1, duplicate: false });
    assert.deepEqual(await c.append({ records: [rec('batched once')], batch_id: 'stream-1:7' }), { accepted: 0, duplicate: true });
    assert.equal((await client('alice-panel').query({ text: 'batched' })).records.length, 1);
  });

  it('validates bounds on append and query', async () => {
    const c = client('svc-node-daemon');
    await assert.rejects(c.append({ records: [] }), { code: 'INVALID_PARAMS' });
    await assert.rejects(c.append({ records: Array.from({ length: 1001 }, () => rec('x')) }), { code: 'INVALID_PARAMS' });
    await assert.rejects(c.append({ records: [rec('x'.repeat(9000))] }), { code: 'INVALID_PARAMS' });
    await assert.rejects(c.append({ records: [rec('x', { fields: { big: 'y'.repeat(20_000) } })] }), { code: 'INVALID_PARAMS' });
    await assert.rejects(c.append({ records: [rec('x', { level: 'loud' })] }), { code: 'INVALID_PARAMS' });
    await assert.rejects(client('alice-panel').query({ limit: 5001 }), { code: 'INVALID_PARAMS' });
    await assert.rejects(client('alice-panel').tail({ timeout_ms: 30_001 }), { code: 'INVALID_PARAMS' });
  });

  it('long-poll tail waits, wakes on a matching append, and times out empty', async () => {
    const admin = client('alice-panel');
    const start = await admin.tail({ timeout_ms: 0 });
    assert.deepEqual(start.records, []);

    const t0 = Date.now();
    const waiting = admin.tail({ after_id: start.last_id, service: 'wanted', timeout_ms: 10_000 }, { timeoutMs: 15_000 });
    setTimeout(() => void client('svc-node-daemon').append({ records: [rec('other service', { service: 'noise' })] }), 100);
    setTimeout(() => void client('svc-node-daemon').append({ records: [rec('tail me', { service: 'wanted' })] }), 300);
    const got = await waiting;
    const waited = Date.now() - t0;
    assert.deepEqual(got.records.map((r) => r.msg), ['tail me']);
    assert.ok(waited >= 250 && waited < 5000, `woke after ${waited} ms`);
    assert.equal(got.last_id, got.records[0].id);

    // Following a search on one device: only an append matching node and words wakes it with a record.
    const search = admin.tail({ after_id: got.last_id, node: 'ood9', text: 'quota', timeout_ms: 10_000 }, { timeoutMs: 15_000 });
    setTimeout(() => void client('svc-node-daemon').append({ records: [rec('quota exceeded', { node: 'other' }), rec('all fine', { node: 'ood9' })] }), 100);
    setTimeout(() => void client('svc-node-daemon').append({ records: [rec('disk quota exceeded', { node: 'ood9' })] }), 300);
    const found = await search;
    assert.deepEqual(found.records.map((r) => [r.node, r.msg]), [['ood9', 'disk quota exceeded']]);
    await assert.rejects(admin.tail({ text: '', timeout_ms: 0 }), { code: 'INVALID_PARAMS' });
    await assert.rejects(admin.tail({ node: 'x'.repeat(129), timeout_ms: 0 }), { code: 'INVALID_PARAMS' });

    const t1 = Date.now();
    const empty = await admin.tail({ after_id: found.last_id, timeout_ms: 300 });
    assert.deepEqual(empty, { records: [], last_id: found.last_id });
    assert.ok(Date.now() - t1 >= 280);
  });
});
