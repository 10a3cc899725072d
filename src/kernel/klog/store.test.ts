import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AUDIT_GENESIS_HASH, KlogStore, type LogRecord, auditHash, canonicalJson } from './store.ts';

const now = Date.now();

function rec(over: Partial<LogRecord> = {}): LogRecord {
  return { ts: now, level: 'info', service: 'svc', node: 'n1', msg: 'hello', ...over };
}

describe('KlogStore', () => {
  let dir: string;
  let path: string;
  let store: KlogStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'klog-store-'));
    path = join(dir, 'klog', 'klog.db');
    store = new KlogStore({ path });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores records and returns them newest first with ids, trace and fields', () => {
    assert.deepEqual(store.append([rec({ msg: 'a' }), rec({ msg: 'b', trace: 't1', fields: { k: [1, { x: 'y' }] } })]), { accepted: 2, duplicate: false });
    const out = store.query({ limit: 10 });
    assert.deepEqual(out.map((r) => r.msg), ['b', 'a']);
    assert.deepEqual(out[0], { id: 2, ts: now, level: 'info', service: 'svc', node: 'n1', msg: 'b', trace: 't1', fields: { k: [1, { x: 'y' }] } });
    assert.equal('trace' in out[1], false);
    assert.equal('fields' in out[1], false);
  });

  it('filters by service, node, level, trace, time and pages with before_id', () => {
    store.append([
      rec({ service: 'a', level: 'debug', ts: now - 3000 }),
      rec({ service: 'b', node: 'n2', level: 'warn', ts: now - 2000, trace: 'tr' }),
      rec({ service: 'a', level: 'error', ts: now - 1000 }),
      rec({ service: 'a', level: 'fatal', ts: now }),
    ]);
    const ids = (q: Parameters<KlogStore['query']>[0]) => store.query(q).map((r) => r.id);
    assert.deepEqual(ids({ service: 'a', limit: 10 }), [4, 3, 1]);
    assert.deepEqual(ids({ node: 'n2', limit: 10 }), [2]);
    assert.deepEqual(ids({ levelMin: 'warn', limit: 10 }), [4, 3, 2]);
    assert.deepEqual(ids({ levelMin: 'error', service: 'a', limit: 10 }), [4, 3]);
    assert.deepEqual(ids({ trace: 'tr', limit: 10 }), [2]);
    assert.deepEqual(ids({ since: now - 2000, until: now - 1000, limit: 10 }), [3, 2]);
    assert.deepEqual(ids({ limit: 2 }), [4, 3]);
    assert.deepEqual(ids({ limit: 2, beforeId: 3 }), [2, 1]);
  });

  it('searches msg and fields with FTS5: every word, as a prefix, any case, any punctuation', () => {
    store.append([
      rec({ msg: 'connect ECONNREFUSED 10.0.0.7:3200' }),
      rec({ msg: 'request failed', fields: { err: { message: 'disk quota exceeded' } } }),
      rec({ msg: 'user alice logged in' }),
      rec({ msg: 'user bob logged out' }),
    ]);
    const msgs = (text: string) => store.query({ text, limit: 10 }).map((r) => r.msg);
    assert.deepEqual(msgs('econnrefused'), ['connect ECONNREFUSED 10.0.0.7:3200']);
    assert.deepEqual(msgs('10.0.0.7'), ['connect ECONNREFUSED 10.0.0.7:3200']);
    assert.deepEqual(msgs('quota'), ['request failed']);
    assert.deepEqual(msgs('user logged'), ['user bob logged out', 'user alice logged in']);
    assert.deepEqual(msgs('user ali'), ['user alice logged in']);
    assert.deepEqual(msgs('"unbalanced AND ( NOT'), []);
    assert.deepEqual(msgs('   '), ['user bob logged out', 'user alice logged in', 'request failed', 'connect ECONNREFUSED 10.0.0.7:3200']);
    assert.deepEqual(store.query({ text: 'logged', service: 'other', limit: 10 }), []);
  });

  it('tails oldest first after an id, with filters, reporting how far it looked', async () => {
    store.append([rec({ msg: '1' }), rec({ msg: '2', service: 'x' }), rec({ msg: '3' })]);
    assert.deepEqual(store.tail({ afterId: 0, limit: 10 }).records.map((r) => r.msg), ['1', '2', '3']);
    const page = store.tail({ afterId: 0, limit: 2 });
    assert.deepEqual([page.records.map((r) => r.msg), page.lastId], [['1', '2'], 2]);
    const filtered = store.tail({ afterId: 0, service: 'x', limit: 10 });
    assert.deepEqual([filtered.records.map((r) => r.msg), filtered.lastId], [['2'], 3]);
    assert.deepEqual(store.tail({ limit: 10 }), { records: [], lastId: 3 });

    const started = Date.now();
    const waiting = store.waitForAppend(3, 5000);
    setTimeout(() => store.append([rec({ msg: '4' })]), 50);
    await waiting;
    assert.ok(Date.now() - started < 2000);
    assert.deepEqual(store.tail({ afterId: 3, limit: 10 }).records.map((r) => r.msg), ['4']);
    const t0 = Date.now();
    await store.waitForAppend(4, 100);
    assert.ok(Date.now() - t0 >= 90);
  });

  it('tails with the same node and full-text filters as query, still reporting how far it looked', () => {
    store.append([
      rec({ msg: 'disk sda failing', node: 'n1' }),
      rec({ msg: 'disk sdb fine', node: 'n2' }),
      rec({ msg: 'user alice logged in', node: 'n2', fields: { err: { code: 'EDISK' } } }),
      rec({ msg: 'unrelated', node: 'n2' }),
    ]);
    const msgs = (q: Omit<Parameters<KlogStore['tail']>[0], 'limit'>) => store.tail({ afterId: 0, limit: 10, ...q });
    assert.deepEqual(msgs({ node: 'n2' }).records.map((r) => r.msg), ['disk sdb fine', 'user alice logged in', 'unrelated']);
    assert.deepEqual(msgs({ text: 'disk' }).records.map((r) => r.msg), ['disk sda failing', 'disk sdb fine']);
    assert.deepEqual(msgs({ text: 'edisk' }).records.map((r) => r.msg), ['user alice logged in'], 'fields are searched too');
    const both = msgs({ text: 'disk', node: 'n2' });
    assert.deepEqual([both.records.map((r) => r.msg), both.lastId], [['disk sdb fine'], 4], 'a short page looked at everything');
    assert.deepEqual(msgs({ text: '"( NOT' }).records, [], 'operators are plain words');
    assert.deepEqual(msgs({ afterId: 2, text: 'disk' }).records, [], 'only after the cursor');
  });

  it('drops a batch id it has already stored', () => {
    assert.deepEqual(store.append([rec()], 'b-1'), { accepted: 1, duplicate: false });
    assert.deepEqual(store.append([rec(), rec()], 'b-1'), { accepted: 0, duplicate: true });
    assert.deepEqual(store.append([rec()], 'b-2'), { accepted: 1, duplicate: false });
    assert.equal(store.query({ limit: 10 }).length, 2);
  });

  it('prunes by age and by row count, keeps ids increasing, and keeps the search index in step', async () => {
    store.close();
    store = new KlogStore({ path, retention: { maxAgeMs: 60_000, maxRows: 5 } });
    const day = 24 * 3600 * 1000;
    store.append([rec({ ts: now - day, msg: 'ancient needle' }), rec({ ts: now - 2 * day, msg: 'older needle' })]);
    store.append(Array.from({ length: 8 }, (_, i) => rec({ msg: `fresh ${i} needle` })));
    assert.equal(await store.prune(), 5);
    const left = store.query({ limit: 100 });
    assert.deepEqual(left.map((r) => r.msg), ['fresh 7 needle', 'fresh 6 needle', 'fresh 5 needle', 'fresh 4 needle', 'fresh 3 needle']);
    assert.equal(store.query({ text: 'needle', limit: 100 }).length, 5);
    assert.equal(store.query({ text: 'ancient', limit: 100 }).length, 0);
    store.close();
    store = new KlogStore({ path, retention: { maxAgeMs: 60_000, maxRows: 5 } });
    store.append([rec({ msg: 'after reopen' })]);
    assert.equal(store.query({ limit: 1 })[0].id, 11);
  });

  it('chains audit events by hash and verifies the chain', async () => {
    assert.deepEqual(await store.verify(), { ok: true, count: 0, headHash: AUDIT_GENESIS_HASH });
    const a = store.auditAppend({ kind: 'login', actor: 'alice', target: 'session:1', detail: { ip: '10.0.0.2' }, source: 'verify-hub' });
    const b = store.auditAppend({ kind: 'deletion', actor: 'alice', target: 'obj://dfs/home/x', detail: {}, source: 'dcfs' });
    const c = store.auditAppend({ kind: 'login_failed', actor: 'anonymous', target: 'bob', detail: { z: 1, a: [2, { d: 1, c: 2 }] }, source: 'verify-hub' });
    assert.deepEqual([a.seq, b.seq, c.seq], [1, 2, 3]);
    const { hash: _h, ...body } = a;
    assert.equal(a.hash, auditHash(AUDIT_GENESIS_HASH, canonicalJson(body)));
    assert.equal(canonicalJson({ b: 1, a: { d: [1, 'x'], c: null } }), '{"a":{"c":null,"d":[1,"x"]},"b":1}');
    assert.deepEqual(await store.verify(), { ok: true, count: 3, headHash: c.hash });

    assert.deepEqual(store.auditQuery({ limit: 10 }).map((e) => e.seq), [3, 2, 1]);
    assert.deepEqual(store.auditQuery({ kind: 'login', limit: 10 }).map((e) => e.seq), [1]);
    assert.deepEqual(store.auditQuery({ actor: 'alice', limit: 10 }).map((e) => e.seq), [2, 1]);
    assert.deepEqual(store.auditQuery({ limit: 10, beforeSeq: 3 }).map((e) => e.seq), [2, 1]);
    assert.deepEqual(store.auditQuery({ since: c.ts + 1, limit: 10 }), []);
    assert.deepEqual(store.auditQuery({ kind: 'login_failed', limit: 1 })[0], c);
  });

  it('refuses UPDATE, DELETE and REPLACE of audit rows, on its own connection and on any other', () => {
    store.auditAppend({ kind: 'config_change', actor: 'admin', target: 'boot/config', detail: {}, source: 'system-config' });
    store.auditAppend({ kind: 'logout', actor: 'admin', target: '', detail: {}, source: 'verify-hub' });
    const other = new Database(path);
    try {
      assert.throws(() => other.prepare(`UPDATE audit SET record = '{}' WHERE seq = 1`).run(), /append-only: UPDATE refused/);
      assert.throws(() => other.prepare('DELETE FROM audit WHERE seq = 2').run(), /append-only: DELETE refused/);
      assert.throws(() => other.prepare('DELETE FROM audit').run(), /append-only/);
      assert.throws(() => other.prepare(`INSERT OR REPLACE INTO audit (seq, ts, record, hash) VALUES (1, 0, '{}', 'x')`).run(), /append-only/);
      assert.throws(() => other.prepare(`INSERT INTO audit (seq, ts, record, hash) VALUES (7, 0, '{}', 'x')`).run(), /append-only/);
    } finally {
      other.close();
    }
    assert.equal(store.auditQuery({ limit: 10 }).length, 2);
  });

  it('detects a row rewritten through another connection with the triggers dropped, and restores the triggers', async () => {
    for (const actor of ['a', 'b', 'c', 'd']) store.auditAppend({ kind: 'permission_change', actor, target: 'obj://config/x', detail: { grant: 'read' }, source: 'system-config' });
    assert.equal((await store.verify()).ok, true);

    const attacker = new Database(path);
    attacker.exec('DROP TRIGGER audit_no_update');
    const row = attacker.prepare('SELECT record FROM audit WHERE seq = 2').get() as { record: string };
    const forged = row.record.replace('"grant":"read"', '"grant":"write"');
    assert.notEqual(forged, row.record);
    attacker.prepare('UPDATE audit SET record = ? WHERE seq = 2').run(forged);
    attacker.close();

    const v = await store.verify();
    assert.equal(v.ok, false);
    assert.equal(v.firstBadSeq, 2);
    assert.equal(v.count, 4);
    assert.match(v.reason!, /hash does not match/);

    store.close();
    store = new KlogStore({ path });
    const again = new Database(path);
    try {
      assert.throws(() => again.prepare(`UPDATE audit SET ts = 0 WHERE seq = 3`).run(), /append-only/);
    } finally {
      again.close();
    }
  });

  it('detects a deleted row and a row whose hash was recomputed without fixing the rest of the chain', async () => {
    for (let i = 0; i < 5; i++) store.auditAppend({ kind: 'user_change', actor: 'owner', target: `u${i}`, detail: {}, source: 'verify-hub' });
    const attacker = new Database(path);
    attacker.exec('DROP TRIGGER audit_no_delete; DROP TRIGGER audit_no_update');
    // Rewrite event 4 and give it a correct hash for its new content: event 5 still chains from the old hash.
    const prev = (attacker.prepare('SELECT hash FROM audit WHERE seq = 3').get() as { hash: string }).hash;
    const four = JSON.parse((attacker.prepare('SELECT record FROM audit WHERE seq = 4').get() as { record: string }).record);
    four.target = 'someone-else';
    attacker.prepare('UPDATE audit SET record = ?, hash = ? WHERE seq = 4').run(canonicalJson(four), auditHash(prev, canonicalJson(four)));
    attacker.close();
    assert.equal((await store.verify()).firstBadSeq, 5);

    const deleter = new Database(path);
    deleter.exec('DROP TRIGGER IF EXISTS audit_no_delete');
    deleter.prepare('DELETE FROM audit WHERE seq = 2').run();
    deleter.close();
    const v = await store.verify();
    assert.equal(v.firstBadSeq, 2);
    assert.match(v.reason!, /missing/);
  });

  it('refuses calls after close and releases waiting tails', async () => {
    const waiting = store.waitForAppend(0, 10_000);
    store.close();
    await waiting;
    assert.throws(() => store.query({ limit: 1 }), /closed/);
  });
});
