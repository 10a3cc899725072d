// The settings page's rules: the zone form's checks and what it starts with.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkZoneForm, initialZoneForm } from './model.ts';

describe('settings model', () => {
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

});
