// What the whole UI reads of the settings records, without React or the network: the zone's DNS name from its boot
// config, who may keep a language with their account, and a stored language. The records themselves are
// src/lib/config/zone-settings.ts, the same rules system-config checks a write against.
import { userUiSettingsSchema } from '../lib/config/zone-settings.ts';
import { LANGS, type Lang } from './i18n/i18n.ts';
import { readRecord } from '../lib/config/record.ts';
import { jwtPayload } from '../lib/identity/base64url.ts';

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
