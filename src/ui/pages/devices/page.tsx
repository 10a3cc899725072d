// Devices: the zone's devices (role, state, addresses, last report), adding one through a one-time join code (its
// text and a QR code, with the time it stays valid counting down and how to use it on the new device), and removing
// one after a confirmation. Offers and removals are sudo actions (components/sudo.tsx). A device's role cannot
// change after it joins (the page says why; docs/ui-admin.md). model.ts holds the rules.
import { Alert, Box, Button, Code, Group, NativeSelect, Paper, SimpleGrid, Skeleton, Stack, Text, TextInput, Title } from '@mantine/core';
import { type FormEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { Result } from '../../../lib/krpc/service.ts';
import type { verifyHubApi } from '../../../lib/api/verify-hub.ts';
import { api } from '../../api.ts';
import { Dialog } from '../../components/dialog.tsx';
import { StatusBadge, type Tone } from '../../components/status-badge.tsx';
import { type Sudo, isSudoCancelled, useSudo } from '../../components/sudo.tsx';
import { formatAgo, formatDuration, formatTime } from '../../format.ts';
import { useI18n } from '../../i18n/context.tsx';
import type { MessageKey } from '../../i18n/en.ts';
import {
  DEVICE_NAME_MAX, DEVICE_ROLES, type DeviceRole, type Field, OFFER_LIFETIMES, type Problem, type ZoneDevice, checkOfferForm,
  explainDeviceError, formatCountdown, qrPath, removable, secondsLeft, sortDevices,
} from './model.ts';

const POLL_MS = 10_000;
type Offer = Result<typeof verifyHubApi.methods.device_offer> & { receivedAt: number; ttl: number };
type Notice = { tone: 'ok' | 'bad'; key: MessageKey; params?: Record<string, string | number> };
const STATE_TONE: Record<ZoneDevice['state'], Tone> = { online: 'ok', offline: 'bad', unknown: 'neutral' };

function useProblems() {
  const { t } = useI18n();
  const [problems, setProblems] = useState<Problem[]>([]);
  const refs = useRef<Partial<Record<Field, HTMLElement | null>>>({});
  return {
    message: (f: Field) => {
      const p = problems.find((x) => x.field === f);
      return p ? t(p.key, p.params) : undefined;
    },
    show: (found: Problem[]) => {
      setProblems(found);
      const first = found[0]?.field;
      if (first) refs.current[first]?.focus();
    },
    ref: (f: Field) => (el: HTMLElement | null) => {
      refs.current[f] = el;
    },
  };
}

function QrCode({ text, label }: { text: string; label: string }) {
  const { path, size } = useMemo(() => qrPath(text), [text]);
  return (
    <Box maw={360} w="100%">
      <svg viewBox={`0 0 ${size} ${size}`} role="img" aria-label={label} shapeRendering="crispEdges" width="100%" data-testid="join-qr">
        <rect width={size} height={size} fill="#ffffff" />
        <path d={path} fill="#000000" />
      </svg>
    </Box>
  );
}

function OfferCard({ offer, onDone }: { offer: Offer; onDone(): void }) {
  const { t, locale, timeZone } = useI18n();
  const [now, setNow] = useState(() => Date.now());
  const [copied, setCopied] = useState(false);
  const left = secondsLeft(offer.receivedAt, offer.ttl, now);
  const expired = left === 0;
  useEffect(() => {
    if (expired) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [expired]);
  // The clipboard API exists only in secure contexts (HTTPS, localhost); elsewhere the code is selected by hand.
  const canCopy = typeof navigator.clipboard?.writeText === 'function';

  return (
    <Paper withBorder p={{ base: 'md', sm: 'lg' }} component="section" aria-labelledby="offer-title" data-offer={offer.id}>
      <Stack gap="md">
        <Title order={2} size="h3" id="offer-title">{t('device_page.offer.title', { role: t(`devices.role.${offer.role}`) })}</Title>
        {offer.name ? <Text>{t('device_page.offer.named', { name: offer.name })}</Text> : null}
        {left > 0 ? (
          <Text fw={600} role="timer" data-seconds-left={left} title={formatTime(offer.expires_at * 1000, locale, timeZone)}>
            {t('device_page.offer.left', { time: formatCountdown(left) })}
          </Text>
        ) : (
          <Alert color="red" variant="light" role="alert">{t('device_page.offer.expired')}</Alert>
        )}
        {left > 0 ? (
          <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="lg">
            <QrCode text={offer.qr_payload} label={t('device_page.offer.qr')} />
            <Stack gap="sm">
              <Text fw={500} id="offer-code-label">{t('device_page.offer.code')}</Text>
              <Code block aria-labelledby="offer-code-label" data-testid="join-code" style={{ wordBreak: 'break-all', whiteSpace: 'pre-wrap', maxHeight: 160, overflowY: 'auto' }} tabIndex={0}>
                {offer.code}
              </Code>
              {canCopy ? (
                <Group>
                  <Button size="xs" variant="default" onClick={() => void navigator.clipboard.writeText(offer.code).then(() => setCopied(true), () => setCopied(false))}>
                    {t(copied ? 'device_page.offer.copied' : 'device_page.offer.copy')}
                  </Button>
                </Group>
              ) : null}
              <Text size="sm" c="dimmed">{t('device_page.offer.secret')}</Text>
            </Stack>
          </SimpleGrid>
        ) : null}
        <div>
          <Title order={3} size="h4" mb="xs">{t('device_page.offer.how')}</Title>
          <Text component="ol" size="sm" pl="lg" m={0}>
            <li>{t('device_page.offer.step_cli')}</li>
            <li>{t('device_page.offer.step_ui')}</li>
            <li>{t('device_page.offer.step_wait')}</li>
          </Text>
        </div>
        <Group justify="flex-end">
          <Button variant="default" onClick={onDone}>{t('device_page.offer.done')}</Button>
        </Group>
      </Stack>
    </Paper>
  );
}

function AddDevice({ sudo, onStart, onOffer }: { sudo: Sudo; onStart(): void; onOffer(o: Offer): void }) {
  const { t, locale } = useI18n();
  const [role, setRole] = useState<DeviceRole>('storage');
  const [name, setName] = useState('');
  const [ttl, setTtl] = useState<number>(OFFER_LIFETIMES[0]);
  const [busy, setBusy] = useState(false);
  const { message, show, ref } = useProblems();

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    onStart();
    const found = checkOfferForm({ name, ttl });
    if (found.length > 0) return show(found);
    show([]);
    setBusy(true);
    const fixed = name.trim();
    try {
      const o = await sudo.run((g) => g.hub.device_offer({ role, ttl_sec: ttl, ...(fixed ? { name: fixed } : {}) }));
      setName('');
      onOffer({ ...o, receivedAt: Date.now(), ttl });
    } catch (e) {
      if (!isSudoCancelled(e)) show([explainDeviceError(e)]);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Paper withBorder p={{ base: 'md', sm: 'lg' }} component="section" aria-labelledby="add-device-title">
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Stack gap="md">
          <div>
            <Title order={2} size="h3" id="add-device-title">{t('device_page.add.title')}</Title>
            <Text size="sm" c="dimmed">{t('device_page.add.explain')}</Text>
          </div>
          {message('form') ? <Alert color="red" variant="light" role="alert">{message('form')}</Alert> : null}
          <SimpleGrid cols={{ base: 1, sm: 3 }} spacing="md">
            <NativeSelect
              ref={ref('role')}
              label={t('device_page.role')}
              name="device-role"
              value={role}
              onChange={(e) => setRole(e.currentTarget.value as DeviceRole)}
              data={DEVICE_ROLES.map((r) => ({ value: r, label: t(`devices.role.${r}`) }))}
              description={t(`device_page.role.${role}_hint`)}
              error={message('role')}
            />
            <TextInput
              ref={ref('name')}
              label={t('device_page.name')}
              name="device-name"
              autoComplete="off"
              autoCapitalize="none"
              autoCorrect="off"
              spellCheck={false}
              maxLength={DEVICE_NAME_MAX * 2}
              value={name}
              onChange={(e) => setName(e.currentTarget.value)}
              description={t('device_page.name.hint')}
              error={message('name')}
            />
            <NativeSelect
              ref={ref('ttl')}
              label={t('device_page.ttl')}
              name="device-ttl"
              value={String(ttl)}
              onChange={(e) => setTtl(Number(e.currentTarget.value))}
              data={OFFER_LIFETIMES.map((s) => ({ value: String(s), label: formatDuration(s, locale) }))}
              error={message('ttl')}
            />
          </SimpleGrid>
          <Group justify="flex-end">
            <Button type="submit" loading={busy}>{t('device_page.add.submit')}</Button>
          </Group>
        </Stack>
      </form>
    </Paper>
  );
}

function RemoveDialog({ device, sudo, onClose, onDone }: { device: ZoneDevice; sudo: Sudo; onClose(): void; onDone(n: Notice): void }) {
  const { t } = useI18n();
  const [busy, setBusy] = useState(false);
  const { message, show } = useProblems();
  const core = device.role === 'core';

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    setBusy(true);
    try {
      // A core device is removed only when the admin has read why it is different (the warning above the button).
      await sudo.run((g) => g.hub.device_remove({ name: device.name, force: core }));
      onDone({ tone: 'ok', key: 'device_page.remove.done', params: { name: device.name } });
    } catch (e) {
      if (!isSudoCancelled(e)) show([{ ...explainDeviceError(e), field: 'form' }]);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog opened={!sudo.asking} onClose={() => !busy && onClose()} title={t('device_page.remove.title', { name: device.name })} closeLabel={t('device_page.close')}>
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Stack gap="md">
          {message('form') ? <Alert color="red" variant="light" role="alert">{message('form')}</Alert> : null}
          <Text size="sm">{t('device_page.remove.explain')}</Text>
          {core ? <Alert color="orange" variant="light">{t('device_page.remove.core')}</Alert> : null}
          <Group justify="flex-end" gap="sm">
            <Button variant="default" onClick={onClose} disabled={busy}>{t('device_page.cancel')}</Button>
            <Button type="submit" color="red.9" loading={busy}>{t(core ? 'device_page.remove.submit_core' : 'device_page.remove.submit')}</Button>
          </Group>
        </Stack>
      </form>
    </Dialog>
  );
}

function DeviceCard({ d, now, onRemove }: { d: ZoneDevice; now: number; onRemove(): void }) {
  const { t, locale } = useI18n();
  return (
    <Paper component="li" withBorder p="md" aria-labelledby={`device-${d.name}`} data-device={d.name}>
      <Stack gap="xs">
        <Group justify="space-between" wrap="nowrap" align="flex-start">
          <div>
            <Title order={3} size="h4" id={`device-${d.name}`}>{d.name}</Title>
            <Text size="sm" c="dimmed">{[t(`devices.role.${d.role}`), d.current ? t('devices.this') : null].filter(Boolean).join(' · ')}</Text>
          </div>
          <StatusBadge tone={STATE_TONE[d.state]}>{t(`devices.state.${d.state}`)}</StatusBadge>
        </Group>
        <Group justify="space-between" gap="xs" wrap="nowrap">
          <Text size="sm">{t('device_page.addresses')}</Text>
          <Text size="sm" c="dimmed" ta="right">{d.addresses.length > 0 ? d.addresses.join(', ') : t('device_page.no_address')}</Text>
        </Group>
        <Group justify="space-between" gap="xs" wrap="nowrap">
          <Text size="sm">{t('device_page.last_seen')}</Text>
          <Text size="sm" c="dimmed">{d.last_seen === null ? t('time.never') : formatAgo(d.last_seen * 1000, now, locale)}</Text>
        </Group>
        {removable(d) ? (
          <Group justify="flex-end">
            <Button size="xs" variant="outline" color="var(--bk-bad-text)" onClick={onRemove} aria-label={`${t('device_page.remove')} ${d.name}`}>{t('device_page.remove')}</Button>
          </Group>
        ) : null}
      </Stack>
    </Paper>
  );
}

export default function DevicesPage() {
  const { t } = useI18n();
  const sudo = useSudo();
  const [devices, setDevices] = useState<{ list: ZoneDevice[]; at: number } | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [offer, setOffer] = useState<Offer | null>(null);
  const [removing, setRemoving] = useState<ZoneDevice | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);

  const load = useCallback(async () => {
    try {
      const r = await api.hub.device_list({});
      setDevices({ list: sortDevices(r.devices), at: Date.now() });
      setLoadError(null);
    } catch (e) {
      setLoadError(e instanceof Error ? e.message : String(e));
    }
  }, []);
  useEffect(() => {
    void load();
    // A device that joins with the code shown here appears by itself.
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') void load();
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [load]);

  return (
    <Stack gap="xl" data-state={devices ? 'ready' : 'loading'}>
      <div>
        <Title order={1}>{t('nav.devices')}</Title>
        <Text c="dimmed">{t('device_page.intro')}</Text>
      </div>
      {notice ? (
        <Alert color={notice.tone === 'ok' ? 'teal' : 'red'} variant="light" role={notice.tone === 'ok' ? 'status' : 'alert'} withCloseButton closeButtonLabel={t('device_page.close')} onClose={() => setNotice(null)}>
          {t(notice.key, notice.params)}
        </Alert>
      ) : null}
      {offer ? <OfferCard key={offer.id} offer={offer} onDone={() => setOffer(null)} /> : <AddDevice sudo={sudo} onStart={() => setNotice(null)} onOffer={setOffer} />}
      <section aria-labelledby="device-list-title">
        <Title order={2} size="h3" id="device-list-title" mb="sm">{t('device_page.list.title')}</Title>
        {loadError ? <Alert color="red" variant="light" role="alert" mb="sm">{t('device_page.load_failed', { message: loadError })}</Alert> : null}
        {devices === null ? (
          loadError ? null : <Skeleton height={120} />
        ) : (
          <SimpleGrid cols={{ base: 1, sm: 2, lg: 3 }} spacing="md" component="ul" className="bk-plain-list">
            {devices.list.map((d) => (
              <DeviceCard key={d.name} d={d} now={devices.at} onRemove={() => {
                setNotice(null);
                setRemoving(d);
              }} />
            ))}
          </SimpleGrid>
        )}
        <Text size="sm" c="dimmed" mt="sm">{t('device_page.roles_fixed')}</Text>
      </section>
      {removing ? (
        <RemoveDialog
          key={removing.name}
          device={removing}
          sudo={sudo}
          onClose={() => setRemoving(null)}
          onDone={(n) => {
            setRemoving(null);
            setNotice(n);
            void load();
          }}
        />
      ) : null}
      {sudo.prompt}
    </Stack>
  );
}
