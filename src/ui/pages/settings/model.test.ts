// The settings page's rules: the DNS name from a boot config, the zone form's checks, and stored languages.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canKeepLanguage, canReadOwnSettings, checkZoneForm, initialZoneForm, storedLanguage, zoneNameFromBootConfig } from './model.ts';

const b64url = (s: string) => Buffer.from(s).toString('base64url');
const jwt = (payload: object) => `${b64url('{"alg":"EdDSA"}')}.${b64url(JSON.stringify(payload))}.c2ln`;

describe('settings model', () => {
  it('reads the zone name from the boot config payload, and nothing from anything else', () => {
    assert.equal(zoneNameFromBootConfig(jwt({ typ: 'zone-boot', zone: 'alice.example.com' })), 'alice.example.com');
    assert.equal(zoneNameFromBootConfig(jwt({ typ: 'zone-boot' })), null);
    assert.equal(zoneNameFromBootConfig(jwt({ zone: 42 })), null);
    assert.equal(zoneNameFromBootConfig(null), null);
    assert.equal(zoneNameFromBootConfig('not-a-jwt'), null);
    assert.equal(zoneNameFromBootConfig('a.%%%.c'), null);
  });

  it('trims the display name, keeps the time zone as typed, and names every problem at once', () => {
    assert.deepEqual(checkZoneForm({ displayName: '  Home  ', timeZone: 'Asia/Shanghai' }), { ok: true, settings: { display_name: 'Home', time_zone: 'Asia/Shanghai' } });
    assert.deepEqual(checkZoneForm({ displayName: ' ', timeZone: 'Mars/Olympus' }), { ok: false, problems: { displayName: 'empty', timeZone: 'unknown' } });
    assert.deepEqual(checkZoneForm({ displayName: 'x'.repeat(65), timeZone: '' }), { ok: false, problems: { displayName: 'too_long', timeZone: 'empty' } });
    assert.deepEqual(checkZoneForm({ displayName: 'a\u202eb', timeZone: 'asia/shanghai' }).ok, false, 'IANA names are case-sensitive');
  });

  it('starts the form from what is stored, else the DNS name and the browser\'s zone', () => {
    assert.deepEqual(initialZoneForm({}, 'alice.example.com', 'Europe/Paris'), { displayName: 'alice.example.com', timeZone: 'Europe/Paris' });
    assert.deepEqual(initialZoneForm({ display_name: 'Home', time_zone: 'UTC' }, 'alice.example.com', 'Europe/Paris'), { displayName: 'Home', timeZone: 'UTC' });
    assert.deepEqual(initialZoneForm({}, null, 'UTC'), { displayName: '', timeZone: 'UTC' });
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
