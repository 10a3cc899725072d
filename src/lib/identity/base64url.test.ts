// The browser-safe base64url against Node's, and reading a JWT's payload.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { base64url, fromBase64url, jwtPayload } from './base64url.ts';

describe('base64url (browser-safe)', () => {
  it('decodes what Node encodes and round-trips every length', () => {
    for (let n = 0; n < 40; n++) {
      const bytes = randomBytes(n);
      assert.deepEqual(Buffer.from(fromBase64url(bytes.toString('base64url'))), bytes);
      assert.deepEqual(Buffer.from(fromBase64url(base64url(bytes))), bytes);
    }
  });

  it('reads a JWT payload as UTF-8 JSON and refuses what is not one', () => {
    const payload = { zone: 'alice.example.com', name: '家', exp: 5 };
    const jwt = `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;
    assert.deepEqual(jwtPayload(jwt), payload);
    assert.throws(() => jwtPayload('no-dots'), /not a JWT/);
    assert.throws(() => jwtPayload(`e30.${Buffer.from('not json').toString('base64url')}.x`), SyntaxError);
  });
});
