// What the whole UI reads of the settings records: the DNS name from a boot config, and stored languages.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canKeepLanguage, canReadOwnSettings, storedLanguage, zoneNameFromBootConfig } from './settings-records.ts';

const b64url = (s: string) => Buffer.from(s).toString('base64url');
const jwt = (payload: object) => `${b64url('{"alg":"EdDSA"}')}.${b64url(JSON.stringify(payload))}.c2ln`;

describe('settings records in the UI', () => {
  it('reads the zone name from the boot config payload, and nothing from anything else', () => {
    assert.equal(zoneNameFromBootConfig(jwt({ typ: 'zone-boot', zone: 'alice.example.com' })), 'alice.example.com');
    assert.equal(zoneNameFromBootConfig(jwt({ typ: 'zone-boot' })), null);
    assert.equal(zoneNameFromBootConfig(jwt({ zone: 42 })), null);
    assert.equal(zoneNameFromBootConfig(null), null);
    assert.equal(zoneNameFromBootConfig('not-a-jwt'), null);
    assert.equal(zoneNameFromBootConfig('a.%%%.c'), null);
  });

  it('keeps a language with the account only for roles that may write their own app settings', () => {
    assert.deepEqual(['admin', 'user', 'limited', 'guest'].map(canKeepLanguage), [true, true, false, false]);
    assert.deepEqual(['admin', 'user', 'limited', 'guest'].map(canReadOwnSettings), [true, true, true, false]);
    assert.equal(storedLanguage('{"lang":"zh"}'), 'zh');
    assert.equal(storedLanguage('{"lang":"fr"}'), null, 'a language this build has no catalogue for');
    assert.equal(storedLanguage('{"lang":"zh","x":1}'), null);
    assert.equal(storedLanguage('nope'), null);
    assert.equal(storedLanguage(null), null);
  });
});
