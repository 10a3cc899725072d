// The zone settings' rules: display names, time zones, the records and reading them back.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_DISPLAY_NAME_CHARS, ZONE_SETTINGS_KEY, displayNameProblem, settingsSchemaFor, timeZoneProblem, timeZones, userUiSettingsKey,
  userUiSettingsSchema, zoneSettingsSchema,
} from './zone-settings.ts';
import { readRecord } from './record.ts';

describe('zone settings', () => {
  it('takes display names of 1 to 64 characters, counted as a person counts them', () => {
    assert.equal(displayNameProblem('Alice at home'), null);
    assert.equal(displayNameProblem('爱丽丝的家'), null);
    assert.equal(displayNameProblem('😀'.repeat(MAX_DISPLAY_NAME_CHARS)), null, 'an emoji is one character, not two');
    assert.equal(displayNameProblem('a'.repeat(MAX_DISPLAY_NAME_CHARS)), null);
    assert.equal(displayNameProblem('a'.repeat(MAX_DISPLAY_NAME_CHARS + 1)), 'too_long');
    assert.equal(displayNameProblem(''), 'empty');
    assert.equal(displayNameProblem('   '), 'empty');
    assert.equal(displayNameProblem(' home'), 'spaces');
    assert.equal(displayNameProblem('home\n'), 'control_chars');
    assert.equal(displayNameProblem('ho\u202eme'), 'control_chars', 'a bidi override would reorder what is shown');
    assert.equal(displayNameProblem('ho\u200bme'), 'control_chars');
  });

  it('takes IANA time zones and their aliases, and nothing else', () => {
    for (const tz of ['UTC', 'Asia/Shanghai', 'Europe/Paris', 'America/Argentina/Buenos_Aires', 'Asia/Kolkata', 'Asia/Calcutta']) {
      assert.equal(timeZoneProblem(tz), null, tz);
    }
    for (const tz of ['Mars/Olympus', 'CST', '+08:00', 'GMT+8', 'Asia/Shanghai/x/y', '../etc/passwd', 'Europe/']) {
      assert.equal(timeZoneProblem(tz), 'unknown', tz);
    }
    assert.equal(timeZoneProblem(''), 'empty');
    const list = timeZones();
    assert.ok(list.includes('UTC') && list.includes('Europe/Paris'));
    assert.deepEqual([...list].sort(), list, 'sorted');
    assert.equal(new Set(list).size, list.length, 'no repeats');
    for (const tz of list) assert.equal(timeZoneProblem(tz), null, `every listed zone is accepted: ${tz}`);
  });

  it('checks the zone record strictly, naming the field', () => {
    assert.deepEqual(zoneSettingsSchema.parse({ display_name: 'Home', time_zone: 'Asia/Shanghai' }), { display_name: 'Home', time_zone: 'Asia/Shanghai' });
    assert.deepEqual(zoneSettingsSchema.parse({}), {});
    const bad = zoneSettingsSchema.safeParse({ display_name: '', time_zone: 'Mars/Olympus', colour: 'red' });
    assert.equal(bad.success, false);
    const paths = bad.error!.issues.map((i) => i.path.join('.') || i.code);
    assert.ok(paths.includes('display_name') && paths.includes('time_zone') && paths.includes('unrecognized_keys'), JSON.stringify(paths));
  });

  it('reads records back: absent is the fallback, a broken one is the fallback with the reason', () => {
    assert.deepEqual(readRecord(zoneSettingsSchema, null, {}), { value: {}, problem: null });
    assert.deepEqual(readRecord(zoneSettingsSchema, '{"display_name":"Home"}', {}), { value: { display_name: 'Home' }, problem: null });
    assert.deepEqual(readRecord(zoneSettingsSchema, 'not json', {}), { value: {}, problem: 'not JSON' });
    const r = readRecord(zoneSettingsSchema, '{"time_zone":"Moon/Base"}', {});
    assert.deepEqual(r.value, {});
    assert.match(r.problem!, /^time_zone: "Moon\/Base" is not an IANA time zone$/);
    assert.deepEqual(readRecord(userUiSettingsSchema, '{"lang":"zh"}', null), { value: { lang: 'zh' }, problem: null });
    assert.equal(readRecord(userUiSettingsSchema, '{"lang":"<script>"}', null).value, null);
  });

  it('names the schema of each typed key, and none for other keys', () => {
    assert.equal(settingsSchemaFor(ZONE_SETTINGS_KEY), zoneSettingsSchema);
    assert.equal(settingsSchemaFor(userUiSettingsKey('alice')), userUiSettingsSchema);
    assert.equal(settingsSchemaFor('users/alice/apps/control-panel/settings/theme'), null);
    assert.equal(settingsSchemaFor('users/alice/apps/share/settings/ui'), null);
    assert.equal(settingsSchemaFor('zone/settings/x'), null);
  });
});
