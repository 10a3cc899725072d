// The settings page's rules, without React or the network: what the zone form holds wrong and what it starts with.
// The records themselves are src/lib/config/zone-settings.ts, the same rules system-config checks a write against.
import {
  type DisplayNameProblem, type TimeZoneProblem, type ZoneSettings, displayNameProblem, timeZoneProblem,
} from '../../../lib/config/zone-settings.ts';

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
