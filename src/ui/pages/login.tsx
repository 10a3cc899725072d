// Sign-in: a user name and password to verify-hub (login_nonce, then login_password for the control-panel app).
// Every refusal is explained beside the field it concerns, in the reader's language, and focus moves there.
import { Alert, Box, Button, Center, Group, Paper, PasswordInput, Stack, Text, TextInput, Title } from '@mantine/core';
import { type FormEvent, useRef, useState } from 'react';
import { verifyHubApi } from '../../lib/api/verify-hub.ts';
import { KrpcError } from '../../lib/krpc/errors.ts';
import { session } from '../api.ts';
import { LanguageMenu } from '../components/language-menu.tsx';
import { useI18n } from '../i18n/context.tsx';
import type { MessageKey } from '../i18n/en.ts';
import type { Params } from '../i18n/i18n.ts';
import { formatTime } from '../format.ts';

type Field = 'username' | 'password' | 'form';
/** A message by key, so it follows a language switch made while it is shown. */
type Problem = { field: Field; key: MessageKey; params?: Params };

const usernameSchema = verifyHubApi.methods.login_password.params.shape.username;

/** What verify-hub's refusal means to the person at the form (docs/verify-hub.md §2, in check order). */
export function explainLoginError(e: unknown): Problem {
  if (!(e instanceof KrpcError)) return { field: 'form', key: 'login.failed', params: { message: e instanceof Error ? e.message : String(e) } };
  switch (e.code) {
    case 'UNAUTHENTICATED':
      return { field: 'password', key: 'login.wrong' };
    case 'RATE_LIMITED': {
      const d = (e.data ?? {}) as { locked_until?: unknown; retry_after_ms?: unknown };
      if (typeof d.locked_until === 'number') return { field: 'username', key: 'login.locked', params: { time: d.locked_until * 1000 } };
      const ms = typeof d.retry_after_ms === 'number' ? d.retry_after_ms : 1000;
      return { field: 'password', key: 'login.rate_limited', params: { seconds: Math.max(1, Math.ceil(ms / 1000)) } };
    }
    // For the control-panel app (a trusted UI app) the only refusal after a right password is a disabled account.
    case 'PERMISSION_DENIED':
      return { field: 'username', key: 'login.disabled' };
    case 'INVALID_PARAMS':
      return { field: 'username', key: 'login.username.invalid' };
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return { field: 'form', key: 'login.unreachable' };
    default:
      return { field: 'form', key: 'login.failed', params: { message: e.message } };
  }
}

export function LoginPage() {
  const { t, locale } = useI18n();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [problems, setProblems] = useState<Problem[]>([]);
  const [busy, setBusy] = useState(false);
  const userRef = useRef<HTMLInputElement>(null);
  const passRef = useRef<HTMLInputElement>(null);
  const ended = session.endReason();

  const message = (p: Problem | undefined) => {
    if (!p) return undefined;
    const params = p.key === 'login.locked' && p.params ? { time: formatTime(Number(p.params.time), locale) } : p.params;
    return t(p.key, params);
  };
  const problem = (f: Field) => problems.find((p) => p.field === f);

  const show = (found: Problem[]) => {
    setProblems(found);
    const first = found[0]?.field;
    if (first === 'username') userRef.current?.focus();
    else if (first === 'password') passRef.current?.focus();
  };

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    const name = username.trim();
    const found: Problem[] = [];
    if (name === '') found.push({ field: 'username', key: 'login.username.empty' });
    else if (!usernameSchema.safeParse(name).success) found.push({ field: 'username', key: 'login.username.invalid' });
    if (password === '') found.push({ field: 'password', key: 'login.password.empty' });
    if (found.length > 0) return show(found);
    setBusy(true);
    try {
      await session.login(name, password);
    } catch (e) {
      const p = explainLoginError(e);
      if (p.key === 'login.wrong') setPassword('');
      show([p]);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Box component="main" mih="100dvh" p="md">
      <Group justify="flex-end">
        <LanguageMenu />
      </Group>
      <Center mt={{ base: 'lg', sm: 80 }}>
        <Paper withBorder shadow="sm" p={{ base: 'lg', sm: 'xl' }} w="100%" maw={400}>
          <form onSubmit={(e) => void submit(e)} noValidate aria-describedby="login-subtitle">
            <Stack gap="md">
              <div>
                <Text fw={700} c="var(--bk-brand)">{t('app.name')}</Text>
                <Title order={1} size="h2">{t('login.title')}</Title>
                <Text id="login-subtitle" c="dimmed" size="sm">{t('login.subtitle')}</Text>
              </div>
              {ended === 'expired' || ended === 'copied' ? (
                <Alert color="blue" variant="light">{t(ended === 'expired' ? 'login.ended' : 'login.copied')}</Alert>
              ) : null}
              {problem('form') ? <Alert color="red" variant="light" role="alert">{message(problem('form'))}</Alert> : null}
              <TextInput
                ref={userRef}
                label={t('login.username')}
                name="username"
                autoComplete="username"
                autoCapitalize="none"
                autoCorrect="off"
                spellCheck={false}
                required
                value={username}
                onChange={(e) => setUsername(e.currentTarget.value)}
                error={message(problem('username'))}
              />
              <PasswordInput
                ref={passRef}
                label={t('login.password')}
                name="password"
                autoComplete="current-password"
                required
                value={password}
                onChange={(e) => setPassword(e.currentTarget.value)}
                error={message(problem('password'))}
                // Mantine marks its wrapper, not the input itself, as invalid; screen readers read the input.
                aria-invalid={problem('password') ? true : undefined}
                visibilityToggleButtonProps={{ 'aria-label': t('login.show_password') }}
              />
              <Button type="submit" loading={busy} fullWidth>
                {t('login.submit')}
              </Button>
            </Stack>
          </form>
        </Paper>
      </Center>
    </Box>
  );
}
