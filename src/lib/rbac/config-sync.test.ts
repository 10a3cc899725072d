import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Rbac } from './enforcer.ts';
import { type PolicySource, followPolicy } from './config-sync.ts';

/** A PolicySource over an in-memory map whose watch fails once, so the follower must re-list; a listing answers at
 * most `page` keys, as system-config answers at most its limit. */
function source(entries: Map<string, string>, page = 10_000): PolicySource & { failNextWatch(): void } {
  let fail = false;
  let rev = 1;
  return {
    failNextWatch: () => (fail = true),
    list: async ({ prefix, limit = 1000 }) => {
      const under = [...entries].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1));
      const n = Math.min(limit, page);
      return { entries: under.slice(0, n).map(([key, value]) => ({ key, value })), revision: rev, more: under.length > n };
    },
    watch: async ({ after_revision }) => {
      await new Promise((r) => setTimeout(r, 20));
      if (fail) {
        fail = false;
        rev++;
        throw new Error('watch broke');
      }
      return { events: [], revision: after_revision };
    },
  };
}

it('drops users deleted while the watch was down when it re-lists', async () => {
  const entries = new Map([
    ['users/bob/settings', JSON.stringify({ role: 'user', state: 'active' })],
    ['users/eve/settings', JSON.stringify({ role: 'admin', state: 'active' })],
  ]);
  const src = source(entries);
  const rbac = await Rbac.create();
  const stop = new AbortController();
  const errors: unknown[] = [];
  await followPolicy(src, rbac, stop.signal, (e) => errors.push(e));
  const eveReads = { user: 'eve', app: 'buckyos-cli', resource: 'obj://config/devices/x/info', action: 'read' };
  assert.equal(rbac.check(eveReads), true);
  entries.delete('users/eve/settings');
  src.failNextWatch();
  const deadline = Date.now() + 10_000;
  while (rbac.check(eveReads) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  stop.abort();
  assert.equal(rbac.check(eveReads), false);
  assert.equal(rbac.check({ ...eveReads, user: 'bob', resource: 'obj://config/boot/config' }), true);
  assert.ok(errors.length >= 1, 'the broken watch was reported');
});

it('loads every user however many keys apps keep under users/ (a listing cut at its limit is split)', async () => {
  const entries = new Map<string, string>();
  for (let i = 0; i < 8; i++) entries.set(`users/amy/apps/notes/settings/k${i}`, '1');
  entries.set('users/amy/settings', JSON.stringify({ role: 'user', state: 'active' }));
  entries.set('users/zed/settings', JSON.stringify({ role: 'admin', state: 'active' }));
  const rbac = await Rbac.create();
  const stop = new AbortController();
  await followPolicy(source(entries, 4), rbac, stop.signal, () => {});
  stop.abort();
  assert.equal(rbac.check({ user: 'zed', app: 'buckyos-cli', resource: 'obj://config/devices/x/info', action: 'read' }), true, 'zed, past the first page, has his role');
});
