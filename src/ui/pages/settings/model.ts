// The settings page's rules, without React or the network: the zone's DNS name from its boot config, what a form
// holds wrong, who may keep a language with their account. The records themselves are
// src/lib/config/zone-settings.ts, the same rules system-config checks a write against.
import {
  type DisplayNameProblem, type TimeZoneProblem, type ZoneSettings, displayNameProblem, timeZoneProblem, userUiSettingsSchema,
} from '../../../lib/config/zone-settings.ts';
import { LANGS, type Lang } from '../../i18n/i18n.ts';
import { readRecord } from '../../../lib/config/record.ts';
import { jwtPayload } from '../../../lib/identity/base64url.ts';

/** The zone's DNS name, from the boot config document (an owner-signed JWT; the UI only reads its payload, the
 * kernel verified it at activation). Null when absent or unreadable. */
export function zoneNameFromBootConfig(jwt: string | null): string | null {
  if (!jwt) return null;
  try {
    const zone = (jwtPayload(jwt) as { zone?: unknown }).zone;
    return typeof zone === 'string' && zone !== '' ? zone : null;
  } catch {
    return null;
  }
}

export interface ZoneForm {
  displayName: string;
  timeZone: string;
}

export interface ZoneFormProblems {
  displayName?: DisplayNameProblem;
  timeZone?: TimeZoneProblem;
}

/** What would be stored from the form, or what is wrong with it. The display name is trimmed (spaces at the ends are
 * never meant); the time zone is taken as typed, since IANA names are case-sensitive. */
export function checkZoneForm(form: ZoneForm): { ok: true; settings: ZoneSettings } | { ok: false; problems: ZoneFormProblems } {
  const name = form.displayName.trim();
  const problems: ZoneFormProblems = {};
  const nameProblem = displayNameProblem(name);
  if (nameProblem) problems.displayName = nameProblem;
  const tzProblem = timeZoneProblem(form.timeZone.trim());
  if (tzProblem) problems.timeZone = tzProblem;
  if (problems.displayName || problems.timeZone) return { ok: false, problems };
  return { ok: true, settings: { display_name: name, time_zone: form.timeZone.trim() } };
}

/** What the form starts with: the stored values, else the DNS name and the browser's own time zone. */
export function initialZoneForm(stored: ZoneSettings, dnsName: string | null, browserTimeZone: string): ZoneForm {
  return { displayName: stored.display_name ?? dnsName ?? '', timeZone: stored.time_zone ?? browserTimeZone };
}

/** Roles whose own app settings RBAC lets them write (`p, user, obj://config/users/{user}/apps/*\/settings/**`);
 * limited accounts and guests keep their language in the browser only. */
export function canKeepLanguage(role: string): boolean {
  return role === 'admin' || role === 'user';
}

/** Roles that may read their own records under users/<u>/ (guests may not). */
export function canReadOwnSettings(role: string): boolean {
  return role !== 'guest';
}

/** A stored language the UI has a catalogue for, or null (absent, broken, or a language this build lacks). */
export function storedLanguage(value: string | null): Lang | null {
  const lang = readRecord(userUiSettingsSchema, value, null).value?.lang;
  return lang !== undefined && (LANGS as readonly string[]).includes(lang) ? (lang as Lang) : null;
}
