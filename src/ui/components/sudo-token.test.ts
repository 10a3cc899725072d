// The sudo prompt's rules: a sudo token is reused for its own lifetime less a margin, only within the session it came
// from, and a refused password check is explained in words the person at the prompt can act on.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KrpcError } from '../../lib/krpc/errors.ts';
import { SUDO_MARGIN_MS, SudoCache, explainSudoError, holdSudo } from './sudo-token.ts';

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (iat: number, exp: number) => `${b64({ alg: 'EdDSA' })}.${b64({ typ: 'sudo', sub: 'alice', sid: 's1', iat, exp })}.sig`;

describe('sudo token rules', () => {
  it('keeps a token for its lifetime less the margin, by the local clock', () => {
    // The zone's clock is a day away from ours: only exp - iat counts.
    const h = holdSudo(jwt(1_000_000, 1_000_300), 'alice:s1', 5_000);
    assert.equal(h.until, 5_000 + 300_000 - SUDO_MARGIN_MS);
    const cache = new SudoCache();
    cache.set(h);
    assert.equal(cache.get('alice:s1', h.until - 1), h);
    assert.equal(cache.get('alice:s1', h.until), null, 'past its time it is asked again');
    assert.equal(cache.get('alice:s1', 0), null, 'and stays forgotten');
  });

  it('never hands a token to another session, and forgets only the token it was told to', () => {
    const cache = new SudoCache();
    const a = holdSudo(jwt(0, 300), 'alice:s1', 0);
    cache.set(a);
    cache.forget(holdSudo(jwt(0, 300), 'alice:s1', 0));
    assert.equal(cache.get('alice:s1', 1), a);
    assert.equal(cache.get('alice:s2', 1), null);
    assert.equal(cache.get('alice:s1', 1), null, 'a sign-in as someone else dropped it');
    cache.set(a);
    cache.forget(a);
    assert.equal(cache.get('alice:s1', 1), null);
  });

  it('uses an unreadable token once and keeps nothing', () => {
    const h = holdSudo('not-a-jwt', 'alice:s1', 1_000);
    assert.ok(h.until < 1_000);
    const cache = new SudoCache();
    cache.set(h);
    assert.equal(cache.get('alice:s1', 1_000), null);
  });

  it('explains refusals', () => {
    assert.deepEqual(explainSudoError(new KrpcError('UNAUTHENTICATED', 'wrong password')), { key: 'sudo.wrong' });
    assert.deepEqual(explainSudoError(new KrpcError('RATE_LIMITED', 'locked', { locked_until: 100 })), { key: 'sudo.locked', params: { time: 100_000 } });
    assert.deepEqual(explainSudoError(new KrpcError('RATE_LIMITED', 'slow down', { retry_after_ms: 2_500 })), { key: 'sudo.rate_limited', params: { seconds: 3 } });
    assert.deepEqual(explainSudoError(new KrpcError('INVALID_PARAMS', 'password is longer than 1024 characters')), { key: 'sudo.wrong' });
    assert.deepEqual(explainSudoError(new KrpcError('TIMEOUT', 'late')), { key: 'sudo.unreachable' });
    assert.deepEqual(explainSudoError(new Error('boom')), { key: 'sudo.failed', params: { message: 'boom' } });
  });
});
