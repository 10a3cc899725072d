import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BasicSessions, RENEW_BEFORE_MS, type BasicGrant } from './basic-sessions.ts';

/** A verify-hub in miniature: counts logins and refreshes, and issues 15-minute tokens on a clock the test moves. */
function hub() {
  let clock = 1_000_000;
  let n = 0;
  const calls: string[] = [];
  const live = new Set<string>();
  const grant = (): BasicGrant => {
    n++;
    const g = { token: `t${n}`, refreshToken: `r${n}`, expiresAt: clock + 15 * 60_000 };
    live.add(g.refreshToken);
    return g;
  };
  const sessions = new BasicSessions({
    now: () => clock,
    login: async (user, password) => {
      calls.push(`login ${user}`);
      await new Promise((r) => setImmediate(r));
      if (password !== 'right') throw new Error('wrong password');
      return grant();
    },
    refresh: async (refreshToken) => {
      calls.push(`refresh ${refreshToken}`);
      await new Promise((r) => setImmediate(r));
      // Single use, as verify-hub's are: a second presentation ends the session.
      if (!live.delete(refreshToken)) throw new Error('refresh token already used');
      return grant();
    },
  });
  return { sessions, calls, live, advance: (ms: number) => (clock += ms) };
}

describe('BasicSessions', () => {
  it('makes one login for parallel requests and reuses its token while it lasts', async () => {
    const h = hub();
    const tokens = await Promise.all(Array.from({ length: 16 }, () => h.sessions.token('alice', 'right', () => undefined)));
    assert.deepEqual(new Set(tokens), new Set(['t1']));
    h.advance(10 * 60_000);
    assert.equal(await h.sessions.token('alice', 'right', () => undefined), 't1');
    assert.deepEqual(h.calls, ['login alice']);
  });

  it('renews an expiring token with one refresh shared by parallel requests, never a new login', async () => {
    const h = hub();
    await h.sessions.token('alice', 'right', () => undefined);
    for (let round = 0; round < 3; round++) {
      h.advance(15 * 60_000 - RENEW_BEFORE_MS + 1);
      const tokens = await Promise.all(Array.from({ length: 8 }, () => h.sessions.token('alice', 'right', () => assert.fail('no new login'))));
      assert.equal(new Set(tokens).size, 1);
    }
    assert.deepEqual(h.calls, ['login alice', 'refresh r1', 'refresh r2', 'refresh r3']);
  });

  it('logs in again when the refresh is refused, asking beforeLogin first', async () => {
    const h = hub();
    await h.sessions.token('alice', 'right', () => undefined);
    h.live.clear();
    h.advance(20 * 60_000);
    let asked = 0;
    assert.equal(await h.sessions.token('alice', 'right', () => void asked++), 't2');
    assert.equal(asked, 1);
    assert.deepEqual(h.calls, ['login alice', 'refresh r1', 'login alice']);
  });

  it('remembers no failed login, lets beforeLogin refuse one, and forgets a dropped session', async () => {
    const h = hub();
    await assert.rejects(h.sessions.token('alice', 'wrong', () => undefined), /wrong password/);
    await assert.rejects(h.sessions.token('alice', 'wrong', () => undefined), /wrong password/);
    await assert.rejects(
      h.sessions.token('alice', 'right', () => {
        throw new Error('rate limited');
      }),
      /rate limited/,
    );
    assert.equal(await h.sessions.token('alice', 'right', () => undefined), 't1');
    h.sessions.drop('alice', 'right');
    assert.equal(await h.sessions.token('alice', 'right', () => undefined), 't2');
    assert.deepEqual(h.calls, ['login alice', 'login alice', 'login alice', 'login alice']);
  });
});
