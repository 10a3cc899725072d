// The dashboard: alerts first, then devices and their health, services and their instances, and storage capacity.
// It loads what the zone reports (model.ts turns that into what is shown), every 10 s while the page is visible.
import { ActionIcon, Alert as MantineAlert, Badge, Group, Paper, Progress, SimpleGrid, Skeleton, Stack, Text, Title, Tooltip } from '@mantine/core';
import { type ReactNode, useCallback, useEffect, useRef, useState } from 'react';
import { api, session } from '../../api.ts';
import { AlertIcon, CheckIcon, RefreshIcon } from '../../components/icons.tsx';
import { useI18n } from '../../i18n/context.tsx';
import type { Translate } from '../../i18n/i18n.ts';
import { formatAgo, formatBytes, formatDuration, formatNumber } from '../../format.ts';
import { type Alert, type Capacity, type DashboardInput, type DashboardModel, type DeviceView, type Health, type ServiceView, buildDashboard, servicePlaced } from './model.ts';

const POLL_MS = 10_000;

/**
 * What the zone reports, asking only what can answer: device_list only for an admin (anyone else is refused), and
 * dfs only where it is placed. Besides costing a call, a refused or unroutable call is an HTTP error the browser
 * logs in the console on every poll.
 */
async function loadInput(admin: boolean): Promise<DashboardInput> {
  const [devices, deviceEntries, serviceEntries, store] = await Promise.all([
    admin ? api.hub.device_list({}).then((r) => r.devices) : null,
    api.config.list({ prefix: 'devices/', limit: 10_000 }),
    api.config.list({ prefix: 'services/', limit: 10_000 }),
    api.config.status({}).catch(() => null),
  ]);
  const storage = servicePlaced(serviceEntries.entries, 'dfs')
    ? await api.dfs.status({}).then(
        (status) => ({ ok: true as const, status }),
        (e: unknown) => ({ ok: false as const, message: e instanceof Error ? e.message : String(e) }),
      )
    : null;
  return { now: Date.now(), devices, deviceEntries: deviceEntries.entries, serviceEntries: serviceEntries.entries, storage, store };
}

type Tone = 'ok' | 'warn' | 'bad' | 'neutral';

/** Colour and words together, never colour alone; every tone meets AA contrast in both schemes (styles.css). */
const TONES: Record<Tone, { variant: 'outline' | 'filled'; color: string }> = {
  ok: { variant: 'outline', color: 'var(--bk-ok)' },
  neutral: { variant: 'outline', color: 'var(--bk-neutral)' },
  bad: { variant: 'filled', color: 'red.9' },
  warn: { variant: 'filled', color: 'yellow.5' },
};

function StatusBadge({ tone, children }: { tone: Tone; children: ReactNode }) {
  return (
    <Badge {...TONES[tone]} autoContrast radius="sm" style={{ flexShrink: 0 }}>
      {children}
    </Badge>
  );
}

const HEALTH_TONE: Record<Health, Tone> = { healthy: 'ok', starting: 'warn', degraded: 'warn', down: 'bad' };
const DEVICE_TONE: Record<DeviceView['state'], Tone> = { online: 'ok', offline: 'bad', unknown: 'neutral' };

function Usage({ label, used, total }: { label: string; used: number; total: number }) {
  const { t, locale } = useI18n();
  const pct = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0;
  const text = t('devices.used_of', { used: formatBytes(used, locale), total: formatBytes(total, locale) });
  return (
    <div>
      <Group justify="space-between" gap="xs" wrap="nowrap">
        <Text size="sm">{label}</Text>
        <Text size="sm" c="dimmed">{text}</Text>
      </Group>
      <Progress.Root size="sm" mt={4}>
        <Progress.Section value={pct} color={pct >= 90 ? 'red.9' : 'blue.8'} aria-label={`${label}: ${text}`} />
      </Progress.Root>
    </div>
  );
}

function alertText(a: Alert, t: Translate, locale: string, now: number): string {
  switch (a.kind) {
    case 'device_offline':
      return t('alerts.device_offline', { device: a.device, time: a.lastSeen === null ? t('time.never') : formatAgo(a.lastSeen, now, locale) });
    case 'device_unknown':
      return t('alerts.device_unknown', { device: a.device });
    case 'service_down':
      return t('alerts.service_down', { service: a.service });
    case 'service_degraded':
      return t('alerts.service_degraded', { service: a.service, nodes: a.nodes.join(', ') });
    case 'disk_unreachable':
      return t('alerts.disk_unreachable', { device: a.device, disk: a.disk });
    case 'disk_errors':
      return t('alerts.disk_errors', { device: a.device, disk: a.disk, count: formatNumber(a.count, locale) });
    case 'disk_full':
      return t('alerts.disk_full', { device: a.device, disk: a.disk, percent: a.percent });
    case 'under_replicated':
      return t('alerts.under_replicated', { count: formatNumber(a.count, locale) });
    case 'store_frozen':
      return t('alerts.store_frozen', { reason: a.reason });
    case 'store_no_quorum':
      return t('alerts.store_no_quorum');
    case 'store_member_down':
      return t('alerts.store_member_down', { count: a.count });
  }
}

function AlertsSection({ alerts, now }: { alerts: Alert[]; now: number }) {
  const { t, locale } = useI18n();
  return (
    <section aria-labelledby="alerts-title">
      <Title order={2} size="h3" id="alerts-title" mb="sm">{t('alerts.title')}</Title>
      {alerts.length === 0 ? (
        <Paper withBorder p="md">
          <Group gap="sm" wrap="nowrap">
            <Text c="var(--bk-ok)" component="span" display="flex"><CheckIcon /></Text>
            <Text>{t('alerts.none')}</Text>
          </Group>
        </Paper>
      ) : (
        <Stack gap="xs" component="ul" className="bk-plain-list">
          {alerts.map((a, i) => (
            <Paper component="li" withBorder p="sm" key={`${a.kind}-${i}`} className="bk-alert" data-severity={a.severity}>
              <Group gap="sm" wrap="nowrap" align="flex-start">
                <Text component="span" display="flex" c={a.severity === 'critical' ? 'var(--bk-bad-text)' : 'var(--bk-warn-text)'}><AlertIcon /></Text>
                <div>
                  <StatusBadge tone={a.severity === 'critical' ? 'bad' : 'warn'}>{t(a.severity === 'critical' ? 'alerts.critical' : 'alerts.warning')}</StatusBadge>
                  <Text mt={4}>{alertText(a, t, locale, now)}</Text>
                </div>
              </Group>
            </Paper>
          ))}
        </Stack>
      )}
    </section>
  );
}

function DeviceCard({ d, now }: { d: DeviceView; now: number }) {
  const { t, locale } = useI18n();
  return (
    <Paper component="li" withBorder p="md" aria-labelledby={`device-${d.name}`}>
      <Stack gap="sm">
        <Group justify="space-between" wrap="nowrap" align="flex-start">
          <div>
            <Title order={3} size="h4" id={`device-${d.name}`}>{d.name}</Title>
            <Text size="sm" c="dimmed">
              {[d.role ? t(`devices.role.${d.role}`) : null, d.current ? t('devices.this') : null].filter(Boolean).join(' · ')}
            </Text>
          </div>
          <StatusBadge tone={DEVICE_TONE[d.state]}>{t(`devices.state.${d.state}`)}</StatusBadge>
        </Group>
        {d.cpu ? (
          <Group justify="space-between" gap="xs" wrap="nowrap">
            <Text size="sm">{t('devices.cpu')}</Text>
            <Text size="sm" c="dimmed">{t('devices.cpu_value', { count: d.cpu.count, load: formatNumber(d.cpu.load1, locale, 2) })}</Text>
          </Group>
        ) : null}
        {d.memory ? <Usage label={t('devices.memory')} used={d.memory.used} total={d.memory.total} /> : null}
        {d.systemDisk ? <Usage label={t('devices.system_disk')} used={d.systemDisk.size - d.systemDisk.free} total={d.systemDisk.size} /> : null}
        <Text size="sm" c="dimmed">
          {[
            d.uptimeSec !== null ? `${t('devices.uptime')}: ${formatDuration(d.uptimeSec, locale)}` : null,
            `${t('devices.last_seen')}: ${d.lastSeen === null ? t('time.never') : formatAgo(d.lastSeen, now, locale)}`,
          ].filter(Boolean).join(' · ')}
        </Text>
        {d.addresses.length > 0 ? (
          <Text size="sm" c="dimmed" style={{ overflowWrap: 'anywhere' }}>{`${t('devices.address')}: ${d.addresses.join(', ')}`}</Text>
        ) : null}
      </Stack>
    </Paper>
  );
}

function ServiceCard({ s }: { s: ServiceView }) {
  const { t, locale } = useI18n();
  return (
    <Paper component="li" withBorder p="sm" aria-labelledby={`service-${s.name}`}>
      <Group justify="space-between" wrap="nowrap">
        <Title order={3} size="h5" id={`service-${s.name}`} ff="monospace">{s.name}</Title>
        <StatusBadge tone={HEALTH_TONE[s.health]}>{t(`services.health.${s.health}`)}</StatusBadge>
      </Group>
      {s.instances.map((i) => (
        <Text key={i.node} size="sm" c="dimmed" mt={4}>
          {[
            i.node,
            i.health === 'healthy' ? null : t(`services.health.${i.health}`),
            i.rssBytes !== null ? `${t('services.memory')} ${formatBytes(i.rssBytes, locale)}` : null,
            i.restarts ? `${t('services.restarts')} ${i.restarts}` : null,
          ].filter(Boolean).join(' · ')}
        </Text>
      ))}
    </Paper>
  );
}

function CapacitySection({ capacity }: { capacity: Capacity }) {
  const { t, locale } = useI18n();
  return (
    <section aria-labelledby="capacity-title">
      <Title order={2} size="h3" id="capacity-title" mb="sm">{t('capacity.title')}</Title>
      {capacity.kind === 'none' ? (
        <Paper withBorder p="md">
          <Text fw={600}>{t('capacity.none')}</Text>
          <Text size="sm" c="dimmed">{t('capacity.none_hint')}</Text>
        </Paper>
      ) : capacity.kind === 'error' ? (
        <Paper withBorder p="md">
          <Text>{t('capacity.unavailable', { message: capacity.message })}</Text>
        </Paper>
      ) : (
        <Paper withBorder p="md">
          <Stack gap="sm">
            <Usage label={t('capacity.total', { free: formatBytes(capacity.free, locale), total: formatBytes(capacity.total, locale) })} used={capacity.total - capacity.free} total={capacity.total} />
            {capacity.disks.map((d) => (
              <Group key={`${d.node}/${d.disk}`} justify="space-between" wrap="nowrap">
                <Text size="sm">{t('capacity.disk', { disk: d.disk, device: d.node })}</Text>
                <Group gap="xs" wrap="nowrap">
                  <Text size="sm" c="dimmed">{t('devices.used_of', { used: formatBytes(d.capacity - d.free, locale), total: formatBytes(d.capacity, locale) })}</Text>
                  <StatusBadge tone={d.state === 'active' ? 'ok' : d.state === 'draining' ? 'warn' : 'bad'}>{t(`capacity.disk_state.${d.state}`)}</StatusBadge>
                </Group>
              </Group>
            ))}
          </Stack>
        </Paper>
      )}
    </section>
  );
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export default function DashboardPage() {
  const { t, locale } = useI18n();
  const [shown, setShown] = useState<{ model: DashboardModel; at: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const inFlight = useRef(false);

  const load = useCallback(async () => {
    if (inFlight.current) return;
    inFlight.current = true;
    setLoading(true);
    try {
      const input = await loadInput(session.get()?.user.role === 'admin');
      setShown({ model: buildDashboard(input), at: input.now });
      setError(null);
    } catch (e) {
      setError(describeError(e));
    } finally {
      inFlight.current = false;
      setLoading(false);
    }
  }, []);

  useEffect(() => {
    void load();
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') void load();
    }, POLL_MS);
    const onVisible = () => {
      if (document.visibilityState === 'visible') void load();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [load]);

  // First paint with data, for bench/ui-load.ts and anyone timing the page in the browser's performance panel.
  const ready = shown !== null;
  useEffect(() => {
    if (ready && performance.getEntriesByName('dashboard-ready').length === 0) performance.mark('dashboard-ready');
  }, [ready]);

  const model = shown?.model;
  return (
    <Stack gap="xl" data-state={model ? 'ready' : 'loading'}>
      <Group justify="space-between" wrap="nowrap" align="flex-start">
        <div>
          <Title order={1} size="h2">{t('dashboard.title')}</Title>
          <Text size="sm" c="dimmed" aria-live="polite">
            {shown ? t('dashboard.updated', { time: formatAgo(shown.at, Date.now(), locale) }) : t('app.loading')}
          </Text>
        </div>
        <Tooltip label={t('dashboard.refresh')}>
          <ActionIcon variant="default" size="lg" onClick={() => void load()} loading={loading} aria-label={t('dashboard.refresh')}>
            <RefreshIcon />
          </ActionIcon>
        </Tooltip>
      </Group>

      {error ? (
        <MantineAlert color="red" variant="outline" role="alert" title={t('app.offline')}>
          {t('dashboard.load_failed', { message: error })}
        </MantineAlert>
      ) : null}

      {!model ? (
        <Stack gap="md" aria-hidden="true">
          <Skeleton h={80} />
          <Skeleton h={160} />
          <Skeleton h={160} />
        </Stack>
      ) : (
        <>
          {!model.complete ? <Text size="sm" c="dimmed">{t('dashboard.admin_only')}</Text> : null}
          <AlertsSection alerts={model.alerts} now={shown.at} />
          <section aria-labelledby="devices-title">
            <Title order={2} size="h3" id="devices-title" mb="sm">{t('devices.title')}</Title>
            {model.devices.length === 0 ? (
              <Text c="dimmed">{t('devices.none')}</Text>
            ) : (
              <SimpleGrid component="ul" className="bk-plain-list" cols={{ base: 1, md: 2, xl: 3 }} spacing="md">
                {model.devices.map((d) => <DeviceCard key={d.name} d={d} now={shown.at} />)}
              </SimpleGrid>
            )}
          </section>
          <section aria-labelledby="services-title">
            <Title order={2} size="h3" id="services-title" mb="sm">{t('services.title')}</Title>
            {model.services.length === 0 ? (
              <Text c="dimmed">{t('services.none')}</Text>
            ) : (
              <SimpleGrid component="ul" className="bk-plain-list" cols={{ base: 1, sm: 2, xl: 3 }} spacing="sm">
                {model.services.map((s) => <ServiceCard key={s.name} s={s} />)}
              </SimpleGrid>
            )}
          </section>
          <CapacitySection capacity={model.capacity} />
        </>
      )}
    </Stack>
  );
}
