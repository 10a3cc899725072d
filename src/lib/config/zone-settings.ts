// The zone's own settings in system-config (docs/ui-logs-settings.md): the name people see for the zone and the time
// zone its times are read in, written by admins; and each user's UI preferences. Checked when written and again when
// read, so a record written by hand (`buckyos config set`) can never make a reader misbehave. Free of Node: the
// system UI bundles it and checks a form with exactly the rules system-config applies.
import { z } from 'zod';

/** Readable by every signed-in user, written by admins (src/lib/rbac/default-policy.ts). */
export const ZONE_SETTINGS_KEY = 'zone/settings';

/** A user's UI preferences: under the user's own app settings, which the user may write (role user and above). */
export const userUiSettingsKey = (user: string): string => `users/${user}/apps/control-panel/settings/ui`;

export const MAX_DISPLAY_NAME_CHARS = 64;

export type DisplayNameProblem = 'empty' | 'too_long' | 'control_chars' | 'spaces';
export type TimeZoneProblem = 'empty' | 'unknown';

/** Counted in code points, as a person counts characters (an emoji is one, not two UTF-16 units). */
const chars = (s: string): number => [...s].length;

/** Why `name` cannot be a display name, or null. The form trims what is typed; a stored name must already be trimmed,
 * so two names that look the same are the same. */
export function displayNameProblem(name: string): DisplayNameProblem | null {
  if (name.trim() === '') return 'empty';
  if (chars(name) > MAX_DISPLAY_NAME_CHARS) return 'too_long';
  // Control and format characters (line breaks, bidi overrides, zero-width joiners at the edges) would let a name
  // pretend to be something else where it is shown.
  if (/[\p{Cc}\p{Cf}\u2028\u2029]/u.test(name)) return 'control_chars';
  if (name !== name.trim()) return 'spaces';
  return null;
}

let known: { list: readonly string[]; set: ReadonlySet<string> } | null = null;

function knownZones(): { list: readonly string[]; set: ReadonlySet<string> } {
  if (!known) {
    // The engine's IANA list leaves out UTC itself (only its Etc/ aliases), which is the one people expect to find.
    const list = [...new Set([...Intl.supportedValuesOf('timeZone'), 'UTC'])].sort();
    known = { list, set: new Set(list) };
  }
  return known;
}

/** The IANA time zones this engine knows, sorted, UTC included. */
export function timeZones(): readonly string[] {
  return knownZones().list;
}

/** Why `tz` is not a time zone, or null. A name on the IANA list is one; so is an IANA alias that resolves to a name
 * on it (Node's ICU lists `Asia/Calcutta` where a newer browser lists `Asia/Kolkata`), so a browser and the zone with
 * different ICU versions agree. Abbreviations and offsets (`CST`, `+08:00`) are refused: they are not places and do not
 * follow daylight saving. */
export function timeZoneProblem(tz: string): TimeZoneProblem | null {
  if (tz.trim() === '') return 'empty';
  const { set } = knownZones();
  if (set.has(tz)) return null;
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){1,2}$/.test(tz)) return 'unknown';
  try {
    const resolved = new Intl.DateTimeFormat('en-US', { timeZone: tz }).resolvedOptions().timeZone;
    return set.has(resolved) ? null : 'unknown';
  } catch {
    return 'unknown';
  }
}

const DISPLAY_NAME_MESSAGES: Record<DisplayNameProblem, string> = {
  empty: 'display_name: empty',
  too_long: `display_name: longer than ${MAX_DISPLAY_NAME_CHARS} characters`,
  control_chars: 'display_name: contains control or invisible formatting characters',
  spaces: 'display_name: starts or ends with spaces',
};

export const displayNameSchema = z.string().superRefine((s, ctx) => {
  const p = displayNameProblem(s);
  if (p) ctx.addIssue({ code: z.ZodIssueCode.custom, message: DISPLAY_NAME_MESSAGES[p] });
});

export const timeZoneSchema = z.string().max(64, 'time_zone: longer than 64 characters').superRefine((s, ctx) => {
  const p = timeZoneProblem(s);
  if (p) ctx.addIssue({ code: z.ZodIssueCode.custom, message: p === 'empty' ? 'time_zone: empty' : `time_zone: "${s}" is not an IANA time zone` });
});

/** `zone/settings`. Both fields optional: without a display name the zone is shown by its DNS name, without a time
 * zone each reader's own is used. Strict, so a misspelt field is reported rather than silently ignored. */
export const zoneSettingsSchema = z
  .object({
    display_name: displayNameSchema.optional(),
    time_zone: timeZoneSchema.optional(),
  })
  .strict();
export type ZoneSettings = z.infer<typeof zoneSettingsSchema>;

/** A language tag (BCP 47, as the UI's catalogues are named). Which ones the UI has is the UI's business; a tag it does
 * not have is ignored when read. */
const langTag = z.string().regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$/, 'lang: a language tag such as "en" or "zh"');

/** `users/<u>/apps/control-panel/settings/ui`. */
export const userUiSettingsSchema = z.object({ lang: langTag }).strict();
export type UserUiSettings = z.infer<typeof userUiSettingsSchema>;

/** The typed records under this module's keys, by key: system-config checks a write to one of them against its
 * schema, so a value no reader could use is refused where it is written. */
export function settingsSchemaFor(key: string): z.ZodType<unknown, z.ZodTypeDef, unknown> | null {
  if (key === ZONE_SETTINGS_KEY) return zoneSettingsSchema;
  if (/^users\/[^/]+\/apps\/control-panel\/settings\/ui$/.test(key)) return userUiSettingsSchema;
  return null;
}
