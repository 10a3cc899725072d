// The activation page (docs/ui-activation.md): the device describes itself and lists the other new devices it heard
// on the LAN; the owner's 12 words are made (or typed) here, checked, and turned into the owner key here; the zone's
// documents are signed here; the device gets signatures, the public key and the admin password, never the words or
// the key. Then the page waits for the zone's system UI and opens it.
import {
  Alert, Anchor, Box, Button, Checkbox, Group, Loader, Paper, PasswordInput, Radio, Stack, Text, TextInput,
  Textarea, Title, VisuallyHidden,
} from '@mantine/core';
import { type FormEvent, type ReactNode, useCallback, useEffect, useRef, useState } from 'react';
import { type DeviceInfo, type DiscoveredDevice, activationApi, adminPasswordRules } from '../../lib/api/activation.ts';
import { type ActivationStep, activateWithKey, ownerSigningKey } from '../../lib/identity/activation-docs.ts';
import { GATEWAY_MODES, type GatewayMode } from '../../lib/identity/doc-schemas.ts';
import { generateMnemonic, ownerSeedFromMnemonic } from '../../lib/identity/recovery-phrase.ts';
import { KrpcError } from '../../lib/krpc/errors.ts';
import { createFetchClient } from '../../lib/krpc/fetch-client.ts';
import { LanguageMenuView } from '../components/language-menu.tsx';
import { formatBytes } from '../format.ts';
import { useT } from './i18n.tsx';
import type { MessageKey } from './messages.ts';
import {
  type FormField, type Problem, type ZoneForm, confirmationProblems, deviceAddressUrl, explainActivationError, pickConfirmPositions,
  wordsProblem, zoneFormProblems,
} from './model.ts';
import { loadVault, saveVault, sealOwnerKey } from './vault.ts';

const client = createFetchClient(activationApi, { timeoutMs: 60_000 });
const DISCOVER_EVERY_MS = 3000;
const STATUS_EVERY_MS = 1000;

type Step = 'device' | 'words' | 'confirm' | 'zone' | 'progress' | 'done';
type Stage = 'checking' | 'sealing' | ActivationStep | 'starting' | 'opening';
const STAGES: Stage[] = ['checking', 'sealing', 'preparing', 'signing', 'committing', 'starting', 'opening'];
const STEP_NAMES: Partial<Record<Step, MessageKey>> = { device: 'step.device', words: 'step.words', confirm: 'step.confirm', zone: 'step.zone' };
const STEP_ORDER: Step[] = ['device', 'words', 'confirm', 'zone'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function LanguageSwitch() {
  const { t, lang, setLang } = useT();
  return <LanguageMenuView label={t('lang.label')} lang={lang} setLang={setLang} name={(l) => t(`lang.${l}`)} />;
}

/** A step's frame: its heading takes focus when the step opens, so a screen reader starts there. */
function StepFrame({ step, title, subtitle, children }: { step: Step; title: string; subtitle?: ReactNode; children: ReactNode }) {
  const { t } = useT();
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [step]);
  const n = STEP_ORDER.indexOf(step);
  return (
    <Stack gap="md">
      <div>
        <Text fw={700} c="var(--bk-brand)">{t('app.name')}</Text>
        {n >= 0 ? <Text size="sm" c="dimmed">{t('steps.label', { n: n + 1, total: STEP_ORDER.length, name: t(STEP_NAMES[step]!) })}</Text> : null}
        <Title order={1} size="h2" ref={heading} tabIndex={-1} style={{ outline: 'none' }}>{title}</Title>
        {subtitle ? <Text c="dimmed" size="sm">{subtitle}</Text> : null}
      </div>
      {children}
    </Stack>
  );
}

// ---- step 1: the device -----------------------------------------------------------------------------------------

function DeviceStep({ onStart }: { onStart: (info: DeviceInfo) => void }) {
  const { t, locale } = useT();
  const [info, setInfo] = useState<DeviceInfo | null>(null);
  const [failed, setFailed] = useState(false);
  const [found, setFound] = useState<{ searching: boolean; devices: DiscoveredDevice[] } | null>(null);
  const [address, setAddress] = useState('');
  const [addressProblem, setAddressProblem] = useState<MessageKey | null>(null);

  const load = useCallback(async () => {
    setFailed(false);
    try {
      const r = await fetch('/device', { cache: 'no-store', credentials: 'omit' });
      setInfo((await r.json()) as DeviceInfo);
    } catch {
      setFailed(true);
    }
  }, []);
  useEffect(() => void load(), [load]);

  useEffect(() => {
    let stopped = false;
    const tick = async () => {
      while (!stopped) {
        try {
          const r = await client.discover({});
          if (!stopped) setFound(r);
        } catch {
          // The device's own answer (GET /device) says whether it is reachable; the list just stays as it was.
        }
        await sleep(DISCOVER_EVERY_MS);
      }
    };
    void tick();
    return () => {
      stopped = true;
    };
  }, []);

  const openAddress = (ev: FormEvent) => {
    ev.preventDefault();
    if (address.trim() === '') return setAddressProblem('address.empty');
    const url = deviceAddressUrl(address, Number(location.port) || 80);
    if (!url) return setAddressProblem('address.invalid');
    setAddressProblem(null);
    location.assign(url);
  };

  return (
    <StepFrame step="device" title={t('device.title')} subtitle={info && !info.activated ? t('device.subtitle') : undefined}>
      {failed ? (
        <Alert color="red" variant="light" role="alert">
          <Stack gap="xs" align="flex-start">
            <span>{t('device.unreachable')}</span>
            <Button size="xs" variant="default" onClick={() => void load()}>{t('device.retry')}</Button>
          </Stack>
        </Alert>
      ) : null}
      {!info && !failed ? (
        <Group gap="xs"><Loader size="sm" aria-hidden /><Text>{t('device.loading')}</Text></Group>
      ) : null}
      {info ? (
        <>
          {info.activated ? (
            <Alert color="blue" variant="light" role="status">
              <Text fw={700}>{t('device.already')}</Text>
              <Text size="sm">{t('device.already_hint')}</Text>
            </Alert>
          ) : null}
          <section aria-labelledby="device-facts">
            <Title order={2} size="h4" id="device-facts">{info.name}</Title>
            <dl className="bk-facts">
              <dt>{t('device.host')}</dt><dd>{info.hostname}</dd>
              <dt>{t('device.system')}</dt><dd>{`${info.platform} ${info.kernel} (${info.arch})`}</dd>
              <dt>{t('device.cpu')}</dt><dd>{t('device.cpu_value', { model: info.cpu.model, count: info.cpu.count })}</dd>
              <dt>{t('device.memory')}</dt><dd>{t('device.memory_value', { total: formatBytes(info.memory.total_bytes, locale), free: formatBytes(info.memory.free_bytes, locale) })}</dd>
              <dt>{t('device.addresses')}</dt><dd>{info.addresses.map((a) => a.address).join(', ') || '—'}</dd>
              <dt>{t('device.version')}</dt><dd>{info.version}</dd>
              <dt>{t('device.disks')}</dt>
              <dd>
                {info.disks.length === 0 ? t('device.no_disks') : (
                  <ul className="bk-plain-list">
                    {info.disks.map((d) => (
                      <li key={d.mount}>{t('device.disk', { mount: d.mount, device: d.device, size: formatBytes(d.size_bytes, locale), free: formatBytes(d.free_bytes, locale) })}</li>
                    ))}
                  </ul>
                )}
              </dd>
            </dl>
          </section>
          {!info.activated ? <Button onClick={() => onStart(info)}>{t('device.start')}</Button> : null}
        </>
      ) : null}
      <section aria-labelledby="discover-title">
        <Title order={2} size="h4" id="discover-title">{t('discover.title')}</Title>
        {found === null ? <Text size="sm" c="dimmed">{t('discover.searching')}</Text>
        : !found.searching ? <Text size="sm" c="dimmed">{t('discover.off')}</Text>
        : found.devices.length === 0 ? <Text size="sm" c="dimmed">{t('discover.none')}</Text>
        : (
          <ul className="bk-plain-list" aria-label={t('discover.title')}>
            {found.devices.map((d) => (
              <li key={d.url}>
                <Group justify="space-between" wrap="nowrap" gap="xs">
                  <Text>{t('discover.item', { name: d.name, address: d.address })}</Text>
                  <Anchor href={d.url}>{t('discover.open', { name: d.name })}</Anchor>
                </Group>
              </li>
            ))}
          </ul>
        )}
      </section>
      <form onSubmit={openAddress} noValidate>
        <Stack gap="xs">
          <TextInput
            label={t('address.label')}
            description={t('address.description')}
            name="address"
            inputMode="url"
            autoCapitalize="none"
            autoCorrect="off"
            spellCheck={false}
            value={address}
            onChange={(e) => setAddress(e.currentTarget.value)}
            error={addressProblem ? t(addressProblem) : undefined}
          />
          <Group justify="flex-end">
            <Button type="submit" variant="default">{t('address.open')}</Button>
          </Group>
        </Stack>
      </form>
    </StepFrame>
  );
}

// ---- steps 2 and 3: the words -----------------------------------------------------------------------------------

function WordsStep({ initial, onBack, onNew, onRestored }: {
  initial: string | null;
  onBack: () => void;
  onNew: (phrase: string) => void;
  onRestored: (phrase: string) => void;
}) {
  const { t } = useT();
  const [mode, setMode] = useState<'new' | 'restore'>('new');
  const [phrase, setPhrase] = useState(() => initial ?? generateMnemonic());
  const [written, setWritten] = useState(false);
  const [typed, setTyped] = useState('');
  const [problem, setProblem] = useState<Omit<Problem, 'field'> | null>(null);
  const field = useRef<HTMLTextAreaElement>(null);
  const check = useRef<HTMLInputElement>(null);

  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    if (mode === 'new') {
      if (!written) {
        setProblem({ key: 'words.written_required' });
        return check.current?.focus();
      }
      return onNew(phrase);
    }
    const r = wordsProblem(typed);
    setProblem(r.problem);
    if (r.problem) return field.current?.focus();
    setTyped('');
    onRestored(r.phrase!);
  };

  return (
    <StepFrame step="words" title={t('words.title')} subtitle={t('words.subtitle')}>
      <form onSubmit={submit} noValidate>
        <Stack gap="md">
          <Radio.Group label={t('words.choice')} value={mode} onChange={(v) => { setMode(v as 'new' | 'restore'); setProblem(null); }}>
            <Group mt="xs">
              <Radio value="new" label={t('words.new')} />
              <Radio value="restore" label={t('words.restore')} />
            </Group>
          </Radio.Group>
          {mode === 'new' ? (
            <>
              <Alert color="yellow" variant="light">{t('words.warning')}</Alert>
              <ol className="bk-words" aria-label={t('words.list')} translate="no">
                {phrase.split(' ').map((w, i) => (
                  <li key={i}><span className="bk-n">{i + 1}.</span><span className="bk-w">{w}</span></li>
                ))}
              </ol>
              <Group>
                <Button variant="default" size="xs" onClick={() => { setPhrase(generateMnemonic()); setWritten(false); }}>{t('words.again')}</Button>
              </Group>
              <Checkbox
                ref={check}
                label={t('words.written')}
                checked={written}
                onChange={(e) => { setWritten(e.currentTarget.checked); setProblem(null); }}
                error={problem ? t(problem.key, problem.params) : undefined}
              />
            </>
          ) : (
            <Textarea
              ref={field}
              label={t('words.input')}
              description={t('words.input_description')}
              name="recovery-words"
              autoComplete="off"
              autoCapitalize="none"
              autoCorrect="off"
              spellCheck={false}
              minRows={3}
              autosize
              value={typed}
              onChange={(e) => setTyped(e.currentTarget.value)}
              error={problem ? t(problem.key, problem.params) : undefined}
            />
          )}
          <Group justify="space-between">
            <Button variant="default" onClick={onBack}>{t('back')}</Button>
            <Button type="submit">{t('words.next')}</Button>
          </Group>
        </Stack>
      </form>
    </StepFrame>
  );
}

function ConfirmStep({ phrase, onBack, onConfirmed }: { phrase: string; onBack: () => void; onConfirmed: () => void }) {
  const { t } = useT();
  const [positions] = useState(() => pickConfirmPositions());
  const [answers, setAnswers] = useState<Record<number, string>>(() => Object.fromEntries(positions.map((p) => [p, ''])));
  const [problems, setProblems] = useState<Problem[]>([]);
  const refs = useRef<Record<number, HTMLInputElement | null>>({});

  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    const found = confirmationProblems(phrase.split(' '), answers);
    setProblems(found);
    if (found.length > 0) return refs.current[Number(found[0]!.params!.n)]?.focus();
    onConfirmed();
  };
  const problemAt = (n: number) => problems.find((p) => p.params?.n === n);

  return (
    <StepFrame step="confirm" title={t('confirm.title')} subtitle={t('confirm.subtitle')}>
      <form onSubmit={submit} noValidate>
        <Stack gap="md">
          {positions.map((n) => {
            const p = problemAt(n);
            return (
              <TextInput
                key={n}
                ref={(el) => { refs.current[n] = el; }}
                label={t('confirm.word', { n })}
                name={`word-${n}`}
                autoComplete="off"
                autoCapitalize="none"
                autoCorrect="off"
                spellCheck={false}
                value={answers[n]}
                onChange={(e) => { const v = e.currentTarget.value; setAnswers((a) => ({ ...a, [n]: v })); }}
                error={p ? t(p.key, p.params) : undefined}
              />
            );
          })}
          <Group justify="space-between">
            <Button variant="default" onClick={onBack}>{t('back')}</Button>
            <Button type="submit">{t('confirm.next')}</Button>
          </Group>
        </Stack>
      </form>
    </StepFrame>
  );
}

// ---- step 4: the zone -------------------------------------------------------------------------------------------

function PasswordRules({ password, owner, zone }: { password: string; owner: string; zone: string }) {
  const { t } = useT();
  return (
    <div id="password-rules">
      <Text size="sm">{t('rule.title')}</Text>
      <ul className="bk-plain-list">
        {adminPasswordRules(password, { user: owner.trim(), zone: zone.trim() }).map((r) => (
          <li key={r.rule} className="bk-rule" data-ok={String(password !== '' && r.ok)}>
            <Text size="sm" span>{password !== '' && r.ok ? '✓ ' : '○ '}{t(`rule.${r.rule}`)}</Text>
            <VisuallyHidden>{` (${t(password !== '' && r.ok ? 'rule.ok' : 'rule.missing')})`}</VisuallyHidden>
          </li>
        ))}
      </ul>
    </div>
  );
}

function ZoneStep({ form, setForm, problems, onBack, onSubmit }: {
  form: ZoneForm;
  setForm: (f: ZoneForm) => void;
  problems: Problem[];
  onBack: () => void;
  onSubmit: () => void;
}) {
  const { t } = useT();
  const refs = useRef<Partial<Record<FormField, HTMLInputElement | null>>>({});
  const problem = (f: FormField) => problems.find((p) => p.field === f);
  const message = (f: FormField) => {
    const p = problem(f);
    return p ? t(p.key, p.params) : undefined;
  };
  useEffect(() => {
    const first = problems.find((p) => p.field !== 'form');
    if (first) refs.current[first.field]?.focus();
  }, [problems]);
  const set = (k: keyof ZoneForm) => (e: { currentTarget: { value: string } }) => setForm({ ...form, [k]: e.currentTarget.value });
  const text = (k: 'zone' | 'owner' | 'deviceName', label: MessageKey, description?: MessageKey, autoComplete = 'off') => (
    <TextInput
      ref={(el) => { refs.current[k] = el; }}
      label={t(label)}
      description={description ? t(description) : undefined}
      name={k}
      required
      autoComplete={autoComplete}
      autoCapitalize="none"
      autoCorrect="off"
      spellCheck={false}
      value={form[k]}
      onChange={set(k)}
      error={message(k)}
    />
  );

  return (
    <StepFrame step="zone" title={t('zone.title')} subtitle={t('zone.subtitle')}>
      <form onSubmit={(e) => { e.preventDefault(); onSubmit(); }} noValidate>
        <Stack gap="md">
          {problem('form') ? <Alert color="red" variant="light" role="alert">{message('form')}</Alert> : null}
          {text('zone', 'zone.name', 'zone.name_description')}
          {text('owner', 'zone.owner', 'zone.owner_description', 'username')}
          {text('deviceName', 'zone.device')}
          <Radio.Group label={t('zone.gateway')} value={form.gateway} onChange={(v) => setForm({ ...form, gateway: v as GatewayMode })}>
            <Stack gap="xs" mt="xs">
              {GATEWAY_MODES.map((m) => (
                <Radio key={m} value={m} label={t(`zone.gateway.${m}`)} description={t(`zone.gateway.${m}_hint`)} />
              ))}
            </Stack>
          </Radio.Group>
          {form.gateway !== 'lan' ? (
            <TextInput
              ref={(el) => { refs.current.gatewayHost = el; }}
              label={t('zone.gateway_host')}
              name="gateway-host"
              autoCapitalize="none"
              spellCheck={false}
              value={form.gatewayHost}
              onChange={set('gatewayHost')}
              error={message('gatewayHost')}
            />
          ) : null}
          <PasswordInput
            ref={(el) => { refs.current.password = el; }}
            label={t('zone.password')}
            description={t('zone.password_description')}
            name="new-password"
            autoComplete="new-password"
            required
            value={form.password}
            onChange={set('password')}
            error={message('password')}
            aria-invalid={problem('password') ? true : undefined}
            visibilityToggleButtonProps={{ 'aria-label': t('zone.show_password') }}
          />
          <PasswordRules password={form.password} owner={form.owner} zone={form.zone} />
          <PasswordInput
            ref={(el) => { refs.current.password2 = el; }}
            label={t('zone.password2')}
            name="new-password-again"
            autoComplete="new-password"
            required
            value={form.password2}
            onChange={set('password2')}
            error={message('password2')}
            aria-invalid={problem('password2') ? true : undefined}
            visibilityToggleButtonProps={{ 'aria-label': t('zone.show_password') }}
          />
          <Group justify="space-between">
            <Button variant="default" onClick={onBack}>{t('back')}</Button>
            <Button type="submit">{t('zone.submit')}</Button>
          </Group>
        </Stack>
      </form>
    </StepFrame>
  );
}

// ---- step 5: activating -----------------------------------------------------------------------------------------

function ProgressStep({ zone, stage, slow }: { zone: string; stage: Stage; slow: boolean }) {
  const { t } = useT();
  const at = STAGES.indexOf(stage);
  return (
    <StepFrame step="progress" title={t('progress.title', { zone })}>
      <ol className="bk-plain-list" aria-live="polite">
        {STAGES.map((s, i) => (
          <li key={s}>
            <Group gap="xs" wrap="nowrap">
              {i < at ? <Text span c="var(--bk-ok)" aria-hidden>✓</Text> : i === at ? <Loader size="xs" aria-hidden /> : <Text span c="dimmed" aria-hidden>○</Text>}
              <Text span fw={i === at ? 700 : undefined}>{t(`progress.${s}`)}</Text>
              <Text span size="sm" c="dimmed">({t(i < at ? 'progress.done' : i === at ? 'progress.running' : 'progress.waiting')})</Text>
            </Group>
          </li>
        ))}
      </ol>
      {slow ? <Alert color="blue" variant="light">{t('done.slow')}</Alert> : null}
    </StepFrame>
  );
}

function DoneStep({ zone, owner, url }: { zone: string; owner: string; url: string }) {
  const { t } = useT();
  return (
    <StepFrame step="done" title={t('done.title', { zone })} subtitle={t('done.text', { owner })}>
      <Text size="sm">{t('done.key_kept')}</Text>
      <Button component="a" href={url}>{t('done.open')}</Button>
    </StepFrame>
  );
}

// ---- the page ---------------------------------------------------------------------------------------------------

const EMPTY_FORM: ZoneForm = { zone: '', owner: '', deviceName: '', gateway: 'lan', gatewayHost: '', password: '', password2: '' };

export function ActivationApp() {
  const [step, setStep] = useState<Step>('device');
  const [phrase, setPhrase] = useState<string | null>(null);
  /** The owner key's secret, from the moment the words are accepted until activation ends; never in React state,
   * storage or a request. */
  const secret = useRef<Uint8Array | null>(null);
  const [form, setForm] = useState<ZoneForm>(EMPTY_FORM);
  const [problems, setProblems] = useState<Problem[]>([]);
  const [stage, setStage] = useState<Stage>('checking');
  const [slow, setSlow] = useState(false);
  const [opened, setOpened] = useState<{ url: string; zone: string; owner: string } | null>(null);

  const acceptWords = (words: string) => {
    secret.current?.fill(0);
    secret.current = ownerSeedFromMnemonic(words);
    setPhrase(null);
    setStep('zone');
  };

  const activate = async () => {
    const found = zoneFormProblems(form);
    setProblems(found);
    if (found.length > 0 || !secret.current) return;
    const zone = form.zone.trim();
    const owner = form.owner.trim();
    const fields = {
      zone,
      owner,
      deviceName: form.deviceName.trim(),
      password: form.password,
      gateway: form.gateway === 'lan' ? { mode: 'lan' as const } : { mode: form.gateway, ...(form.gatewayHost.trim() ? { host: form.gatewayHost.trim() } : {}) },
    };
    setStep('progress');
    setStage('sealing');
    try {
      const key = ownerSigningKey(secret.current);
      if (loadVault(localStorage, zone)?.public_key !== key.publicKeyB64) {
        saveVault(localStorage, await sealOwnerKey(secret.current, form.password, { zone, owner, publicKey: key.publicKeyB64 }));
      }
      const done = await activateWithKey(client, key, fields, (s) => setStage(s === 'checking' ? 'sealing' : s));
      secret.current.fill(0);
      secret.current = null;
      setForm(EMPTY_FORM);
      setStage('starting');
      const url = await waitForZoneUi(() => setSlow(true));
      setStage('opening');
      setOpened({ url, zone: done.zone, owner: done.owner });
      setStep('done');
      location.assign(url);
    } catch (e) {
      setProblems([explainActivationError(e)]);
      setStep('zone');
    }
  };

  return (
    <Box component="main" mih="100dvh" p="md">
      <Group justify="flex-end">
        <LanguageSwitch />
      </Group>
      <Box mx="auto" mt={{ base: 'sm', sm: 48 }} maw={640}>
        <Paper withBorder shadow="sm" p={{ base: 'md', sm: 'xl' }}>
          {step === 'device' ? (
            <DeviceStep onStart={(info) => { setForm((f) => ({ ...f, deviceName: f.deviceName || info.name })); setStep('words'); }} />
          ) : step === 'words' ? (
            <WordsStep
              initial={phrase}
              onBack={() => setStep('device')}
              onNew={(p) => { setPhrase(p); setStep('confirm'); }}
              onRestored={acceptWords}
            />
          ) : step === 'confirm' && phrase ? (
            <ConfirmStep phrase={phrase} onBack={() => setStep('words')} onConfirmed={() => acceptWords(phrase)} />
          ) : step === 'zone' ? (
            <ZoneStep form={form} setForm={setForm} problems={problems} onBack={() => { setProblems([]); setStep('words'); }} onSubmit={() => void activate()} />
          ) : step === 'progress' ? (
            <ProgressStep zone={form.zone.trim() || opened?.zone || ''} stage={stage} slow={slow} />
          ) : opened ? (
            <DoneStep {...opened} />
          ) : null}
        </Paper>
      </Box>
    </Box>
  );
}

/** Asks the device (still on its activation port, docs/ui-activation.md) until the zone's system UI answers; then its
 * address on the host this page came from. If the port has closed meanwhile, the UI answered already. */
async function waitForZoneUi(onSlow: () => void): Promise<string> {
  const started = Date.now();
  let port = 0;
  for (;;) {
    try {
      const s = await client.status({}, { timeoutMs: 5000 });
      port = s.ui_port;
      if (s.ui_ready) break;
    } catch (e) {
      if (port && e instanceof KrpcError && (e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT')) break;
    }
    if (Date.now() - started > 20_000) onSlow();
    await sleep(STATUS_EVERY_MS);
  }
  // location.hostname keeps an IPv6 address's brackets.
  return `${location.protocol}//${location.hostname}:${port}/`;
}
