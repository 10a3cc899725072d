// Settings: the zone's display name and time zone (admins change them; everyone else reads them), the DNS name the
// zone was activated with (read-only: it is part of the zone's signed identity), and the reader's own language.
import { Alert, Button, Group, NativeSelect, Paper, Skeleton, Stack, Text, TextInput, Title } from '@mantine/core';
import { type FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import { MAX_DISPLAY_NAME_CHARS, timeZones } from '../../../lib/config/zone-settings.ts';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import { session } from '../../api.ts';
import { formatTimestamp } from '../../format.ts';
import { useI18n } from '../../i18n/context.tsx';
import type { MessageKey } from '../../i18n/en.ts';
import { LANGS, type Lang } from '../../i18n/i18n.ts';
import { type ZoneForm, type ZoneFormProblems, checkZoneForm, initialZoneForm } from './model.ts';
import { canKeepLanguage } from '../../settings-records.ts';
import { type StoredZoneSettings, loadZoneSettings, saveZoneSettings } from '../../settings-store.ts';

const browserTimeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

type Notice = { tone: 'ok' | 'bad'; key: MessageKey; params?: Record<string, string> } | null;

function ZoneSection({ stored, admin, onSaved }: { stored: StoredZoneSettings; admin: boolean; onSaved: (s: StoredZoneSettings) => void }) {
  const { t, locale, setTimeZone } = useI18n();
  const [form, setForm] = useState<ZoneForm>(() => initialZoneForm(stored.settings, stored.dnsName, browserTimeZone));
  const [problems, setProblems] = useState<ZoneFormProblems>({});
  const [notice, setNotice] = useState<Notice>(null);
  const [busy, setBusy] = useState(false);
  const nameRef = useRef<HTMLInputElement>(null);
  const tzRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    setForm(initialZoneForm(stored.settings, stored.dnsName, browserTimeZone));
  }, [stored]);

  const edit = (patch: Partial<ZoneForm>) => {
    setForm((f) => ({ ...f, ...patch }));
    setNotice(null);
  };

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    const checked = checkZoneForm(form);
    if (!checked.ok) {
      setProblems(checked.problems);
      setNotice(null);
      (checked.problems.displayName ? nameRef : tzRef).current?.focus();
      return;
    }
    setProblems({});
    setBusy(true);
    try {
      const revision = await saveZoneSettings(checked.settings, stored.revision);
      setTimeZone(checked.settings.time_zone);
      onSaved({ ...stored, settings: checked.settings, problem: null, revision });
      setNotice({ tone: 'ok', key: 'settings.zone.saved' });
    } catch (e) {
      if (e instanceof KrpcError && e.code === 'CONFLICT') {
        onSaved(await loadZoneSettings());
        setNotice({ tone: 'bad', key: 'settings.zone.conflict' });
      } else {
        setNotice({ tone: 'bad', key: 'settings.zone.save_failed', params: { message: e instanceof Error ? e.message : String(e) } });
      }
    } finally {
      setBusy(false);
    }
  };

  const nameError = problems.displayName && t(`settings.error.display_name.${problems.displayName}`, { max: MAX_DISPLAY_NAME_CHARS });
  const tzError = problems.timeZone && t(`settings.error.time_zone.${problems.timeZone}`, { zone: form.timeZone.trim() });
  const zone = stored.settings.time_zone;

  return (
    <Paper component="section" withBorder p="md" aria-labelledby="settings-zone-title">
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Stack gap="md">
          <Title order={2} size="h3" id="settings-zone-title">{t('settings.zone.title')}</Title>
          {admin ? null : <Text size="sm" c="dimmed">{t('settings.zone.admin_only')}</Text>}
          {stored.problem ? <Alert color="yellow" variant="light">{t('settings.zone.stored_invalid', { problem: stored.problem })}</Alert> : null}
          <TextInput
            ref={nameRef}
            label={t('settings.zone.display_name')}
            description={admin ? t('settings.zone.display_name.help', { max: MAX_DISPLAY_NAME_CHARS }) : t('settings.zone.display_name.help_read')}
            name="display_name"
            readOnly={!admin}
            variant={admin ? 'default' : 'filled'}
            required={admin}
            autoComplete="off"
            value={form.displayName}
            onChange={(e) => edit({ displayName: e.currentTarget.value })}
            error={nameError}
          />
          <TextInput
            label={t('settings.zone.dns_name')}
            description={t('settings.zone.dns_name.help')}
            readOnly
            variant="filled"
            value={stored.dnsName ?? t('settings.zone.dns_unknown')}
          />
          <TextInput
            ref={tzRef}
            label={t('settings.zone.time_zone')}
            description={t(admin ? 'settings.zone.time_zone.help' : 'settings.zone.time_zone.help_read')}
            name="time_zone"
            readOnly={!admin}
            variant={admin ? 'default' : 'filled'}
            required={admin}
            autoComplete="off"
            autoCapitalize="none"
            autoCorrect="off"
            spellCheck={false}
            list={admin ? 'settings-time-zones' : undefined}
            value={form.timeZone}
            onChange={(e) => edit({ timeZone: e.currentTarget.value })}
            error={tzError}
          />
          {admin ? (
            <datalist id="settings-time-zones">
              {timeZones().map((z) => (
                <option key={z} value={z} />
              ))}
            </datalist>
          ) : null}
          <Text size="sm" c="dimmed">
            {zone
              ? t('settings.zone.time_zone.current', { zone, time: formatTimestamp(Date.now(), locale, zone) })
              : t('settings.zone.time_zone.unset', { zone: browserTimeZone })}
          </Text>
          {notice ? (
            <Alert color={notice.tone === 'ok' ? 'teal' : 'red'} variant="light" role={notice.tone === 'ok' ? 'status' : 'alert'}>
              {t(notice.key, notice.params)}
            </Alert>
          ) : null}
          {admin ? (
            <Group>
              <Button type="submit" loading={busy}>{t('settings.zone.save')}</Button>
            </Group>
          ) : null}
        </Stack>
      </form>
    </Paper>
  );
}

function LanguageSection({ role }: { role: string }) {
  const { t, lang, setLang } = useI18n();
  return (
    <Paper component="section" withBorder p="md" aria-labelledby="settings-language-title">
      <Stack gap="md">
        <Title order={2} size="h3" id="settings-language-title">{t('settings.language.title')}</Title>
        <NativeSelect
          label={t('settings.language.label')}
          description={t(canKeepLanguage(role) ? 'settings.language.kept_account' : 'settings.language.kept_browser')}
          value={lang}
          data={LANGS.map((l) => ({ value: l, label: t(`lang.${l}`) }))}
          onChange={(e) => setLang(e.currentTarget.value as Lang)}
        />
      </Stack>
    </Paper>
  );
}

export default function SettingsPage() {
  const { t, setTimeZone } = useI18n();
  const user = session.get()?.user;
  const [stored, setStored] = useState<StoredZoneSettings | null>(null);
  const [failed, setFailed] = useState<string | null>(null);

  const load = useCallback(() => {
    setFailed(null);
    loadZoneSettings().then(
      (s) => {
        setStored(s);
        // What was read here is newer than what the session started with (another admin may have changed it).
        setTimeZone(s.settings.time_zone);
      },
      (e: unknown) => setFailed(e instanceof Error ? e.message : String(e)),
    );
  }, [setTimeZone]);
  useEffect(load, [load]);

  return (
    <Stack gap="lg" maw={720}>
      <Title order={1}>{t('nav.settings')}</Title>
      {failed !== null ? (
        <Alert color="red" variant="light" role="alert">
          <Stack gap="xs" align="flex-start">
            <Text size="sm">{t('settings.load_failed', { message: failed })}</Text>
            <Button size="xs" variant="outline" onClick={load}>{t('settings.retry')}</Button>
          </Stack>
        </Alert>
      ) : stored ? (
        <ZoneSection stored={stored} admin={user?.role === 'admin'} onSaved={setStored} />
      ) : (
        <Skeleton height={320} radius="md" aria-label={t('app.loading')} />
      )}
      <LanguageSection role={user?.role ?? 'guest'} />
    </Stack>
  );
}
