// The settings as stored in system-config (src/lib/config/zone-settings.ts): reading them for the page and for the
// whole UI (the zone's time zone, a user's language), and writing them. Every write is compare-and-swap on the
// revision that was read, so two admins saving at once cannot silently overwrite each other.
import { ZONE_SETTINGS_KEY, type ZoneSettings, userUiSettingsKey, zoneSettingsSchema } from '../lib/config/zone-settings.ts';
import { useEffect, useState } from 'react';
import { api } from './api.ts';
import type { Lang } from './i18n/i18n.ts';
import type { Session } from './session.ts';
import { canKeepLanguage, canReadOwnSettings, storedLanguage, zoneNameFromBootConfig } from './settings-records.ts';
import { readRecord } from '../lib/config/record.ts';

export interface StoredZoneSettings {
  settings: ZoneSettings;
  /** Why the stored record was not used (written by hand and broken), or null. */
  problem: string | null;
  /** The revision read; 0 when the record does not exist yet. */
  revision: number;
  /** The zone's DNS name, bound into its owner-signed identity. */
  dnsName: string | null;
}

export async function loadZoneSettings(): Promise<StoredZoneSettings> {
  const [rec, boot] = await Promise.all([api.config.get({ key: ZONE_SETTINGS_KEY }), api.config.get({ key: 'boot/config' })]);
  const parsed = readRecord(zoneSettingsSchema, rec.value, {});
  return { settings: parsed.value, problem: parsed.problem, revision: rec.revision, dnsName: zoneNameFromBootConfig(boot.value) };
}

/** Stores `settings` if the record is still at `revision`; CONFLICT (a KrpcError) otherwise. */
export async function saveZoneSettings(settings: ZoneSettings, revision: number): Promise<number> {
  const r = await api.config.set({ key: ZONE_SETTINGS_KEY, value: JSON.stringify(settings), expect_revision: revision });
  window.dispatchEvent(new Event(ZONE_SETTINGS_SAVED));
  return r.revision;
}

const ZONE_SETTINGS_SAVED = 'buckyos:zone-settings-saved';

/** The name the zone is shown by (its display name, else its DNS name), loaded once and again after a save here;
 * null until known or when it cannot be read. */
export function useZoneName(): string | null {
  const [name, setName] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      loadZoneSettings().then(
        (z) => live && setName(z.settings.display_name ?? z.dnsName),
        // The header then shows the product's name alone; the dashboard reports an unreachable zone.
        () => undefined,
      );
    void load();
    window.addEventListener(ZONE_SETTINGS_SAVED, load);
    return () => {
      live = false;
      window.removeEventListener(ZONE_SETTINGS_SAVED, load);
    };
  }, []);
  return name;
}

/** What the UI applies when a session starts: the zone's time zone, and the language the user keeps with their
 * account (null when none, or when their role keeps none). */
export async function loadPreferences(user: Session['user']): Promise<{ timeZone: string | undefined; lang: Lang | null }> {
  const [zone, own] = await Promise.all([
    api.config.get({ key: ZONE_SETTINGS_KEY }),
    canReadOwnSettings(user.role) ? api.config.get({ key: userUiSettingsKey(user.name) }) : null,
  ]);
  return { timeZone: readRecord(zoneSettingsSchema, zone.value, {}).value.time_zone, lang: own ? storedLanguage(own.value) : null };
}

/** Keeps `lang` with the user's account, when their role may. */
export async function saveLanguage(user: Session['user'], lang: Lang): Promise<void> {
  if (!canKeepLanguage(user.role)) return;
  await api.config.set({ key: userUiSettingsKey(user.name), value: JSON.stringify({ lang }) });
}
