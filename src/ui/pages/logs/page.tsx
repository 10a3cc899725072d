// Logs: search the zone's log entries (words, service, device, level, time), newest first with older pages on
// request, follow new entries as they arrive (klog's long-poll tail, filtered as the search is), and read the audit
// log with the result of its tamper check. Entries stack as cards, so a phone never scrolls sideways.
import { Alert, Badge, Box, Button, Group, NativeSelect, Paper, SimpleGrid, Skeleton, Stack, Tabs, Text, TextInput, Title, UnstyledButton } from '@mantine/core';
import { useMediaQuery } from '@mantine/hooks';
import { type FormEvent, type ReactNode, useCallback, useEffect, useRef, useState } from 'react';
import { AUDIT_KINDS, type AuditKind, type LogLevel } from '../../../lib/api/klog.ts';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import { api } from '../../api.ts';
import { formatNumber, formatTimestamp } from '../../format.ts';
import { useI18n } from '../../i18n/context.tsx';
import {
  EMPTY_FILTERS, type Entry, FOLLOW_RETRIES, type FilterField, type FilterProblem, LEVELS, type LogFilters, MAX_NODE, MAX_SERVICE, MAX_TEXT, PAGE_SIZE, type QueryParams,
  RANGES, TAIL_WAIT_MS, type Tone, buildQuery, fieldsText, followBlocked, followRetryDelayMs, levelTone, mergeEntries, namesUnder, tailParams,
} from './model.ts';

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Colour and words together, never colour alone; each tone meets AA contrast in both schemes (styles.css). */
const TONES: Record<Tone, { variant: 'outline' | 'filled'; color: string }> = {
  ok: { variant: 'outline', color: 'var(--bk-ok)' },
  neutral: { variant: 'outline', color: 'var(--bk-neutral)' },
  bad: { variant: 'filled', color: 'red.9' },
  warn: { variant: 'filled', color: 'yellow.5' },
};

function ToneBadge({ tone, children }: { tone: Tone; children: ReactNode }) {
  return (
    <Badge {...TONES[tone]} autoContrast radius="sm" style={{ flexShrink: 0 }}>
      {children}
    </Badge>
  );
}

/** Long text (JSON, hashes) wraps instead of widening the page. */
function Pre({ children }: { children: string }) {
  return (
    <Box component="pre" m={0} p="xs" fz="xs" ff="monospace" bg="var(--mantine-color-default-hover)" style={{ whiteSpace: 'pre-wrap', overflowWrap: 'anywhere', borderRadius: 4 }}>
      {children}
    </Box>
  );
}

/** A label and its value, as a row of a description list. */
function Detail({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div>
      <Text component="dt" size="xs" c="dimmed">{label}</Text>
      <Text component="dd" size="sm" m={0} style={{ overflowWrap: 'anywhere' }}>{children}</Text>
    </div>
  );
}

/** A card that opens in place: its summary is one button (aria-expanded), its details follow it. */
function Expandable({ id, summary, open, onToggle, children }: { id: string; summary: ReactNode; open: boolean; onToggle: () => void; children: ReactNode }) {
  return (
    <Paper component="li" withBorder p="xs">
      <UnstyledButton w="100%" aria-expanded={open} aria-controls={id} onClick={onToggle} style={{ display: 'block' }}>
        {summary}
      </UnstyledButton>
      {open ? (
        <Box id={id} mt="xs" pt="xs" style={{ borderTop: '1px solid var(--mantine-color-default-border)' }}>
          {children}
        </Box>
      ) : null}
    </Paper>
  );
}

function EntryCard({ entry, open, onToggle, onTrace }: { entry: Entry; open: boolean; onToggle: () => void; onTrace: (trace: string) => void }) {
  const { t, locale, timeZone } = useI18n();
  const fields = fieldsText(entry.fields);
  return (
    <Expandable
      id={`log-entry-${entry.id}`}
      open={open}
      onToggle={onToggle}
      summary={
        <>
          <Group gap="xs" wrap="wrap">
            <ToneBadge tone={levelTone(entry.level)}>{t(`logs.level.${entry.level}`)}</ToneBadge>
            <Text size="xs" c="dimmed" ff="monospace" component="span">{formatTimestamp(entry.ts, locale, timeZone)}</Text>
            <Text size="xs" c="dimmed" component="span">{entry.service} · {entry.node}</Text>
          </Group>
          <Text size="sm" mt={4} lineClamp={open ? undefined : 3} style={{ overflowWrap: 'anywhere' }}>{entry.msg}</Text>
        </>
      }
    >
      <Stack gap="xs">
        <SimpleGrid component="dl" cols={{ base: 2, sm: 4 }} spacing="xs" verticalSpacing="xs" m={0}>
          <Detail label={t('logs.entry.id')}>{entry.id}</Detail>
          <Detail label={t('logs.entry.time')}>{formatTimestamp(entry.ts, locale, timeZone)}</Detail>
          <Detail label={t('logs.entry.service')}>{entry.service}</Detail>
          <Detail label={t('logs.entry.node')}>{entry.node}</Detail>
        </SimpleGrid>
        <Box component="dl" m={0}>
          <Detail label={t('logs.entry.trace')}>
            <Text component="span" ff="monospace" size="sm">{entry.trace ?? t('logs.entry.trace_none')}</Text>
          </Detail>
        </Box>
        {entry.trace ? (
          <Group>
            <Button size="xs" variant="outline" onClick={() => onTrace(entry.trace!)}>{t('logs.entry.show_trace')}</Button>
          </Group>
        ) : null}
        <Text size="xs" c="dimmed">{t('logs.entry.fields')}</Text>
        {fields ? <Pre>{fields}</Pre> : <Text size="sm">{t('logs.entry.no_fields')}</Text>}
      </Stack>
    </Expandable>
  );
}

type Follow = 'off' | 'on' | 'paused';

function LogsView() {
  const { t, locale, timeZone } = useI18n();
  const [form, setForm] = useState<LogFilters>(EMPTY_FILTERS);
  const [problems, setProblems] = useState<Partial<Record<FilterField, FilterProblem>>>({});
  const [applied, setApplied] = useState<QueryParams | null>(null);
  const [entries, setEntries] = useState<Entry[]>([]);
  const [hasMore, setHasMore] = useState(false);
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const [failed, setFailed] = useState<string | null>(null);
  const [follow, setFollow] = useState<Follow>('off');
  const [pending, setPending] = useState<Entry[]>([]);
  const [followFailed, setFollowFailed] = useState<string | null>(null);
  const [open, setOpen] = useState<ReadonlySet<number>>(new Set());
  const [services, setServices] = useState<string[]>([]);
  const [devices, setDevices] = useState<string[]>([]);
  /** Bumped by every search, so the answer of an older one (or its follow loop) is dropped. */
  const generation = useRef(0);
  /** Where following resumes: every id up to it has been looked at. */
  const cursor = useRef<number | undefined>(undefined);
  const paused = useRef(false);
  const fieldRefs = useRef<Partial<Record<FilterField, HTMLInputElement | null>>>({});
  // On a phone the filters beyond the words fold away, so the entries start on the first screen; a filter in error
  // unfolds them.
  const wide = useMediaQuery('(min-width: 48em)', true);
  const [moreOpen, setMoreOpen] = useState(false);

  const run = useCallback(async (params: QueryParams) => {
    const gen = ++generation.current;
    setLoading(true);
    setFailed(null);
    setFollow('off');
    setPending([]);
    setFollowFailed(null);
    try {
      const r = await api.klog.query({ ...params, limit: PAGE_SIZE });
      if (gen !== generation.current) return;
      setEntries(r.records);
      setHasMore(r.records.length === PAGE_SIZE);
      setApplied(params);
      setOpen(new Set());
    } catch (e) {
      if (gen === generation.current) setFailed(message(e));
    } finally {
      if (gen === generation.current) setLoading(false);
    }
  }, []);

  useEffect(() => {
    void run({});
    // Suggestions only: without them the fields still take any name.
    Promise.all([api.config.list({ prefix: 'services/', keys_only: true, limit: 10_000 }), api.config.list({ prefix: 'devices/', keys_only: true, limit: 10_000 })]).then(
      ([s, d]) => {
        setServices(namesUnder(s.entries.map((e) => e.key), 'services/'));
        setDevices(namesUnder(d.entries.map((e) => e.key), 'devices/'));
      },
      () => undefined,
    );
  }, [run]);

  const following = follow !== 'off';
  useEffect(() => {
    if (!following || !applied) return;
    const gen = generation.current;
    let stopped = false;
    void (async () => {
      let failures = 0;
      while (!stopped && gen === generation.current) {
        try {
          const r = await api.klog.tail(tailParams(applied, cursor.current), { timeoutMs: TAIL_WAIT_MS + 10_000 });
          // Not taken: the cursor stays, so following again picks these up.
          if (stopped || gen !== generation.current) return;
          failures = 0;
          cursor.current = r.last_id;
          if (r.records.length === 0) continue;
          if (paused.current) setPending((p) => mergeEntries(p, r.records));
          else setEntries((e) => mergeEntries(e, r.records));
        } catch (e) {
          if (stopped || gen !== generation.current) return;
          const transient = e instanceof KrpcError && (e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT');
          if (transient && ++failures <= FOLLOW_RETRIES) {
            await new Promise((r) => setTimeout(r, followRetryDelayMs(failures)));
            continue;
          }
          setFollowFailed(message(e));
          setFollow('off');
          return;
        }
      }
    })();
    return () => {
      stopped = true;
    };
  }, [following, applied]);

  const startFollow = () => {
    cursor.current = entries[0]?.id;
    paused.current = false;
    setPending([]);
    setFollowFailed(null);
    setFollow('on');
  };
  const pause = () => {
    paused.current = true;
    setFollow('paused');
  };
  const resume = () => {
    paused.current = false;
    setEntries((e) => mergeEntries(e, pending));
    setPending([]);
    setFollow('on');
  };
  const stopFollow = () => {
    paused.current = false;
    setEntries((e) => mergeEntries(e, pending));
    setPending([]);
    setFollow('off');
  };

  const loadOlder = async () => {
    const last = entries[entries.length - 1];
    if (!applied || !last) return;
    const gen = generation.current;
    setLoadingMore(true);
    try {
      const r = await api.klog.query({ ...applied, limit: PAGE_SIZE, before_id: last.id });
      if (gen !== generation.current) return;
      setEntries((e) => mergeEntries(e, r.records, Number.POSITIVE_INFINITY));
      setHasMore(r.records.length === PAGE_SIZE);
    } catch (e) {
      if (gen === generation.current) setFailed(message(e));
    } finally {
      setLoadingMore(false);
    }
  };

  const submit = (ev?: FormEvent, filters = form) => {
    ev?.preventDefault();
    const q = buildQuery(filters, Date.now(), timeZone);
    if (!q.ok) {
      setProblems(q.problems);
      if (q.problems.service || q.problems.node || q.problems.from || q.problems.to) setMoreOpen(true);
      const first = (['text', 'service', 'node', 'from', 'to'] as const).find((f) => q.problems[f]);
      if (first) fieldRefs.current[first]?.focus();
      return;
    }
    setProblems({});
    void run(q.params);
  };

  const edit = (patch: Partial<LogFilters>) => setForm((f) => ({ ...f, ...patch }));
  const showTrace = (trace: string) => {
    const next = { ...EMPTY_FILTERS, trace };
    setForm(next);
    submit(undefined, next);
  };
  const clear = () => {
    setForm(EMPTY_FILTERS);
    setProblems({});
    void run({});
  };

  const problemText = (f: FilterField, max?: number) => {
    const p = problems[f];
    return p ? t(`logs.error.${p}`, max === undefined ? undefined : { max }) : undefined;
  };
  const ref = (f: FilterField) => (el: HTMLInputElement | null) => {
    fieldRefs.current[f] = el;
  };
  const blocked = applied ? followBlocked(applied) : null;
  const moreSet = [form.service.trim(), form.node.trim(), form.level, form.range === 'any' ? '' : form.range].filter(Boolean).length;
  const showMore = wide || moreOpen;

  return (
    <Stack gap="md">
      <Paper withBorder p="md">
        <form onSubmit={submit} noValidate role="search" aria-labelledby="logs-search-title">
          <Stack gap="sm">
            <Title order={2} size="h3" id="logs-search-title">{t('logs.search.title')}</Title>
            <SimpleGrid cols={{ base: 1, sm: 2, lg: 3 }} spacing="sm">
              <TextInput
                ref={ref('text')}
                label={t('logs.search.text')}
                description={t('logs.search.text.help')}
                type="search"
                autoComplete="off"
                value={form.text}
                onChange={(e) => edit({ text: e.currentTarget.value })}
                error={problemText('text', MAX_TEXT)}
              />
              {wide ? null : (
                <Group>
                  <Button variant="subtle" size="compact-sm" aria-expanded={showMore} aria-controls="logs-more-filters" onClick={() => setMoreOpen(!showMore)}>
                    {moreSet > 0 ? t('logs.search.more_set', { count: moreSet }) : t('logs.search.more')}
                  </Button>
                </Group>
              )}
              <Box id="logs-more-filters" style={{ display: showMore ? 'contents' : 'none' }}>
                <TextInput
                  ref={ref('service')}
                  label={t('logs.search.service')}
                  list="logs-services"
                  autoComplete="off"
                  autoCapitalize="none"
                  spellCheck={false}
                  value={form.service}
                  onChange={(e) => edit({ service: e.currentTarget.value })}
                  error={problemText('service', MAX_SERVICE)}
                />
                <TextInput
                  ref={ref('node')}
                  label={t('logs.search.node')}
                  list="logs-devices"
                  autoComplete="off"
                  autoCapitalize="none"
                  spellCheck={false}
                  value={form.node}
                  onChange={(e) => edit({ node: e.currentTarget.value })}
                  error={problemText('node', MAX_NODE)}
                />
                <NativeSelect
                  label={t('logs.search.level')}
                  value={form.level}
                  data={[{ value: '', label: t('logs.search.level.any') }, ...LEVELS.map((l) => ({ value: l, label: t('logs.search.level.at_least', { level: t(`logs.level.${l}`) }) }))]}
                  onChange={(e) => edit({ level: e.currentTarget.value as LogLevel | '' })}
                />
                <NativeSelect
                  label={t('logs.search.range')}
                  value={form.range}
                  data={RANGES.map((r) => ({ value: r, label: t(`logs.search.range.${r}`) }))}
                  onChange={(e) => edit({ range: e.currentTarget.value as LogFilters['range'] })}
                />
              </Box>
            </SimpleGrid>
            {showMore && form.range === 'custom' ? (
              <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="sm">
                <TextInput ref={ref('from')} type="datetime-local" label={t('logs.search.from')} value={form.from} onChange={(e) => edit({ from: e.currentTarget.value })} error={problemText('from')} />
                <TextInput ref={ref('to')} type="datetime-local" label={t('logs.search.to')} value={form.to} onChange={(e) => edit({ to: e.currentTarget.value })} error={problemText('to')} />
              </SimpleGrid>
            ) : null}
            <Text size="xs" c="dimmed">{t('logs.search.times_in', { zone: timeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone })}</Text>
            <datalist id="logs-services">
              {services.map((s) => <option key={s} value={s} />)}
            </datalist>
            <datalist id="logs-devices">
              {devices.map((d) => <option key={d} value={d} />)}
            </datalist>
            <Group gap="sm">
              <Button type="submit" loading={loading}>{t('logs.search.submit')}</Button>
              <Button variant="default" onClick={clear}>{t('logs.search.clear')}</Button>
            </Group>
          </Stack>
        </form>
      </Paper>

      <section aria-labelledby="logs-results-title">
        <Stack gap="sm">
          <Group justify="space-between" gap="sm" wrap="wrap">
            <div>
              <Title order={2} size="h3" id="logs-results-title">{t('logs.results.title')}</Title>
              <Text size="xs" c="dimmed" aria-live="polite">{t('logs.results.count', { count: formatNumber(entries.length, locale) })}</Text>
            </div>
            <Group gap="xs">
              {follow === 'off' ? (
                <Button variant="outline" onClick={startFollow} disabled={!applied || blocked !== null || loading}>{t('logs.follow.start')}</Button>
              ) : (
                <>
                  {follow === 'on' ? (
                    <Button variant="outline" onClick={pause}>{t('logs.follow.pause')}</Button>
                  ) : (
                    <Button onClick={resume}>{t('logs.follow.resume')}</Button>
                  )}
                  <Button variant="default" onClick={stopFollow}>{t('logs.follow.stop')}</Button>
                </>
              )}
            </Group>
          </Group>
          {applied?.trace ? (
            <Alert color="blue" variant="light">
              <Group justify="space-between" gap="xs">
                <Text size="sm" style={{ overflowWrap: 'anywhere' }}>{t('logs.search.trace', { trace: applied.trace })}</Text>
                <Button size="xs" variant="outline" onClick={clear}>{t('logs.search.trace_clear')}</Button>
              </Group>
            </Alert>
          ) : null}
          {blocked && follow === 'off' && !applied?.trace ? <Text size="sm" c="dimmed">{t(`logs.follow.${blocked}`)}</Text> : null}
          <Text size="sm" role="status" c={follow === 'off' ? undefined : 'var(--bk-brand)'}>
            {follow === 'on' ? t('logs.follow.on') : follow === 'paused' ? t('logs.follow.paused', { count: formatNumber(pending.length, locale) }) : ''}
          </Text>
          {followFailed ? <Alert color="red" variant="light" role="alert">{t('logs.follow.failed', { message: followFailed })}</Alert> : null}
          {failed ? <Alert color="red" variant="light" role="alert">{t('logs.results.failed', { message: failed })}</Alert> : null}
          {loading && entries.length === 0 ? (
            <Skeleton height={200} radius="md" aria-label={t('app.loading')} />
          ) : entries.length === 0 ? (
            <Paper withBorder p="md"><Text>{t('logs.results.none')}</Text></Paper>
          ) : (
            <Stack gap="xs" component="ul" className="bk-plain-list" aria-labelledby="logs-results-title">
              {entries.map((e) => (
                <EntryCard
                  key={e.id}
                  entry={e}
                  open={open.has(e.id)}
                  onToggle={() => setOpen((o) => {
                    const next = new Set(o);
                    if (!next.delete(e.id)) next.add(e.id);
                    return next;
                  })}
                  onTrace={showTrace}
                />
              ))}
            </Stack>
          )}
          {entries.length > 0 ? (
            hasMore ? (
              <Group justify="center">
                <Button variant="default" loading={loadingMore} onClick={() => void loadOlder()}>{t('logs.results.more')}</Button>
              </Group>
            ) : (
              <Text size="sm" c="dimmed" ta="center">{t('logs.results.end')}</Text>
            )
          ) : null}
        </Stack>
      </section>
    </Stack>
  );
}

type AuditEvent = Awaited<ReturnType<typeof api.klog.audit_query>>['events'][number];
type Verify = Awaited<ReturnType<typeof api.klog.audit_verify>>;

function kindLabel(t: ReturnType<typeof useI18n>['t'], kind: string): string {
  return (AUDIT_KINDS as readonly string[]).includes(kind) ? t(`logs.audit.kind.${kind as AuditKind}`) : kind;
}

function VerifyCard() {
  const { t, locale } = useI18n();
  const [result, setResult] = useState<Verify | null>(null);
  const [failed, setFailed] = useState<string | null>(null);
  const [busy, setBusy] = useState(true);
  const check = useCallback(() => {
    setBusy(true);
    setFailed(null);
    api.klog.audit_verify({}).then(setResult, (e: unknown) => setFailed(message(e))).finally(() => setBusy(false));
  }, []);
  useEffect(check, [check]);

  return (
    <Paper component="section" withBorder p="md" aria-labelledby="audit-verify-title">
      <Stack gap="sm">
        <Title order={2} size="h3" id="audit-verify-title">{t('logs.audit.verify.title')}</Title>
        {failed ? (
          <Alert color="red" variant="light" role="alert">{t('logs.audit.verify.failed', { message: failed })}</Alert>
        ) : result ? (
          <Stack gap="xs" role="status">
            <Group gap="xs" wrap="nowrap" align="flex-start">
              <ToneBadge tone={result.ok ? 'ok' : 'bad'}>{t(result.ok ? 'logs.audit.verify.intact' : 'logs.audit.verify.broken')}</ToneBadge>
              <Text size="sm">
                {result.ok
                  ? t('logs.audit.verify.ok', { count: formatNumber(result.count, locale) })
                  : t('logs.audit.verify.bad', { seq: result.first_bad_seq ?? '?', reason: result.reason ?? '' })}
              </Text>
            </Group>
            <Text size="xs" c="dimmed" style={{ overflowWrap: 'anywhere' }}>{t('logs.audit.verify.head', { hash: result.head_hash })}</Text>
          </Stack>
        ) : (
          <Skeleton height={40} aria-label={t('app.loading')} />
        )}
        <Group>
          <Button size="xs" variant="outline" loading={busy} onClick={check}>{t('logs.audit.verify.again')}</Button>
        </Group>
      </Stack>
    </Paper>
  );
}

const MAX_ACTOR = 256;

function AuditView() {
  const { t, locale, timeZone } = useI18n();
  const [kind, setKind] = useState<AuditKind | ''>('');
  const [actor, setActor] = useState('');
  const [actorProblem, setActorProblem] = useState(false);
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [applied, setApplied] = useState<{ kind?: AuditKind; actor?: string }>({});
  const [hasMore, setHasMore] = useState(false);
  const [loading, setLoading] = useState(true);
  const [failed, setFailed] = useState<string | null>(null);
  const [open, setOpen] = useState<ReadonlySet<number>>(new Set());
  const generation = useRef(0);
  const actorRef = useRef<HTMLInputElement>(null);

  const load = useCallback(async (filter: { kind?: AuditKind; actor?: string }, beforeSeq?: number) => {
    const gen = beforeSeq === undefined ? ++generation.current : generation.current;
    setLoading(true);
    setFailed(null);
    try {
      const r = await api.klog.audit_query({ ...filter, limit: PAGE_SIZE, ...(beforeSeq === undefined ? {} : { before_seq: beforeSeq }) });
      if (gen !== generation.current) return;
      setEvents((prev) => (beforeSeq === undefined ? r.events : [...prev, ...r.events.filter((e) => e.seq < beforeSeq)]));
      setHasMore(r.events.length === PAGE_SIZE);
      setApplied(filter);
      if (beforeSeq === undefined) setOpen(new Set());
    } catch (e) {
      if (gen === generation.current) setFailed(message(e));
    } finally {
      if (gen === generation.current) setLoading(false);
    }
  }, []);
  useEffect(() => {
    void load({});
  }, [load]);

  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    const who = actor.trim();
    if (who.length > MAX_ACTOR) {
      setActorProblem(true);
      actorRef.current?.focus();
      return;
    }
    setActorProblem(false);
    void load({ ...(kind ? { kind } : {}), ...(who ? { actor: who } : {}) });
  };

  return (
    <Stack gap="md">
      <VerifyCard />
      <Paper withBorder p="md">
        <form onSubmit={submit} noValidate role="search" aria-labelledby="audit-search-title">
          <Stack gap="sm">
            <Title order={2} size="h3" id="audit-search-title">{t('logs.search.title')}</Title>
            <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="sm">
              <NativeSelect
                label={t('logs.audit.kind')}
                value={kind}
                data={[{ value: '', label: t('logs.audit.kind.any') }, ...AUDIT_KINDS.map((k) => ({ value: k, label: kindLabel(t, k) }))]}
                onChange={(e) => setKind(e.currentTarget.value as AuditKind | '')}
              />
              <TextInput
                ref={actorRef}
                label={t('logs.audit.actor')}
                description={t('logs.audit.actor.help')}
                autoComplete="off"
                autoCapitalize="none"
                spellCheck={false}
                value={actor}
                onChange={(e) => setActor(e.currentTarget.value)}
                error={actorProblem ? t('logs.error.too_long', { max: MAX_ACTOR }) : undefined}
              />
            </SimpleGrid>
            <Group>
              <Button type="submit" loading={loading}>{t('logs.search.submit')}</Button>
            </Group>
          </Stack>
        </form>
      </Paper>
      <section aria-labelledby="audit-results-title">
        <Stack gap="sm">
          <Title order={2} size="h3" id="audit-results-title">{t('logs.tab.audit')}</Title>
          {failed ? <Alert color="red" variant="light" role="alert">{t('logs.audit.failed', { message: failed })}</Alert> : null}
          {loading && events.length === 0 ? (
            <Skeleton height={160} radius="md" aria-label={t('app.loading')} />
          ) : events.length === 0 ? (
            <Paper withBorder p="md"><Text>{t('logs.audit.none')}</Text></Paper>
          ) : (
            <Stack gap="xs" component="ul" className="bk-plain-list" aria-labelledby="audit-results-title">
              {events.map((ev) => (
                <Expandable
                  key={ev.seq}
                  id={`audit-event-${ev.seq}`}
                  open={open.has(ev.seq)}
                  onToggle={() => setOpen((o) => {
                    const next = new Set(o);
                    if (!next.delete(ev.seq)) next.add(ev.seq);
                    return next;
                  })}
                  summary={
                    <>
                      <Group gap="xs" wrap="wrap">
                        <ToneBadge tone={ev.kind === 'login_failed' || ev.kind === 'token_reuse' ? 'warn' : 'neutral'}>{kindLabel(t, ev.kind)}</ToneBadge>
                        <Text size="xs" c="dimmed" ff="monospace" component="span">{formatTimestamp(ev.ts, locale, timeZone)}</Text>
                      </Group>
                      <Text size="sm" mt={4} style={{ overflowWrap: 'anywhere' }}>
                        {ev.target ? `${ev.actor} → ${ev.target}` : ev.actor}
                      </Text>
                    </>
                  }
                >
                  <Stack gap="xs">
                    <SimpleGrid component="dl" cols={{ base: 2, sm: 4 }} spacing="xs" verticalSpacing="xs" m={0}>
                      <Detail label={t('logs.audit.event')}>{ev.seq}</Detail>
                      <Detail label={t('logs.entry.time')}>{formatTimestamp(ev.ts, locale, timeZone)}</Detail>
                      <Detail label={t('logs.audit.source')}>{ev.source}</Detail>
                      <Detail label={t('logs.audit.target')}>{ev.target || '—'}</Detail>
                    </SimpleGrid>
                    <Text size="xs" c="dimmed">{t('logs.audit.detail')}</Text>
                    {fieldsText(ev.detail) ? <Pre>{fieldsText(ev.detail)}</Pre> : <Text size="sm">{t('logs.entry.no_fields')}</Text>}
                    <Text size="xs" c="dimmed">{t('logs.audit.hash')}</Text>
                    <Pre>{ev.hash}</Pre>
                  </Stack>
                </Expandable>
              ))}
            </Stack>
          )}
          {events.length > 0 && hasMore ? (
            <Group justify="center">
              <Button variant="default" loading={loading} onClick={() => void load(applied, events[events.length - 1]!.seq)}>{t('logs.audit.more')}</Button>
            </Group>
          ) : null}
        </Stack>
      </section>
    </Stack>
  );
}

export default function LogsPage() {
  const { t } = useI18n();
  const [tab, setTab] = useState<string | null>('logs');
  return (
    <Stack gap="md">
      <Title order={1}>{t('nav.logs')}</Title>
      <Tabs value={tab} onChange={setTab} keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="logs">{t('logs.tab.logs')}</Tabs.Tab>
          <Tabs.Tab value="audit">{t('logs.tab.audit')}</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="logs" pt="md">
          <LogsView />
        </Tabs.Panel>
        <Tabs.Panel value="audit" pt="md">
          <AuditView />
        </Tabs.Panel>
      </Tabs>
    </Stack>
  );
}
