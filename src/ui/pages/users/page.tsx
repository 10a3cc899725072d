// Users and permissions: every account with its role and state; add a user (the password's strength rules shown as
// it is typed), change a role, reset a password, disable or enable, delete (after a confirmation). Each form checks
// what it can before sending and says every refusal beside the field it concerns; the dangerous actions (verify-hub's
// sudo list) go through the password prompt of components/sudo.tsx. model.ts holds the rules.
import { Alert, Box, Button, Group, NativeSelect, Paper, PasswordInput, Skeleton, Stack, Text, TextInput, Title, VisuallyHidden } from '@mantine/core';
import { type FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import { MIN_PASSWORD_LENGTH, type UserRole } from '../../../lib/api/verify-hub.ts';
import { api, session } from '../../api.ts';
import { Dialog } from '../../components/dialog.tsx';
import { CheckIcon } from '../../components/icons.tsx';
import { StatusBadge } from '../../components/status-badge.tsx';
import { type Sudo, type SudoGrant, isSudoCancelled, useSudo } from '../../components/sudo.tsx';
import { useI18n } from '../../i18n/context.tsx';
import type { MessageKey } from '../../i18n/en.ts';
import {
  type Field, type ListedUser, NAME_MAX, type Problem, USER_ROLES, actionsFor, checkNewPassword, checkNewUser,
  createNeedsSudo, explainUserError, passwordRules, sortUsers,
} from './model.ts';

type Notice = { tone: 'ok' | 'bad'; key: MessageKey; params?: Record<string, string | number> };

function useProblems() {
  const [problems, setProblems] = useState<Problem[]>([]);
  const { t } = useI18n();
  const refs = useRef<Partial<Record<Field, HTMLElement | null>>>({});
  const message = (f: Field) => {
    const p = problems.find((x) => x.field === f);
    return p ? t(p.key, p.params) : undefined;
  };
  const show = (found: Problem[]) => {
    setProblems(found);
    const first = found[0]?.field;
    if (first) refs.current[first]?.focus();
  };
  const ref = (f: Field) => (el: HTMLElement | null) => {
    refs.current[f] = el;
  };
  return { problems, message, show, ref };
}

function FormAlert({ text }: { text: string | undefined }) {
  return text ? <Alert color="red" variant="light" role="alert">{text}</Alert> : null;
}

/** The strength rules under a new password, each ticked as it is met; read out as they change. */
export function PasswordRules({ password, user, id }: { password: string; user: string; id: string }) {
  const { t } = useI18n();
  return (
    <Box>
      <Text size="sm" fw={500} id={`${id}-title`}>{t('users.rules.title')}</Text>
      <ul className="bk-plain-list" aria-labelledby={`${id}-title`} aria-live="polite" id={id}>
        {passwordRules(password, user).map((r) => (
          <li key={r.rule} data-rule={r.rule} data-ok={r.ok}>
            <Group gap={6} wrap="nowrap">
              <Text component="span" display="flex" c={r.ok ? 'var(--bk-ok)' : 'var(--bk-neutral)'} aria-hidden>
                {r.ok ? <CheckIcon size={16} /> : '○'}
              </Text>
              <Text size="sm" c={r.ok ? undefined : 'dimmed'}>
                {t(`users.rule.${r.rule}`, { min: MIN_PASSWORD_LENGTH })}
                <VisuallyHidden> ({t(r.ok ? 'users.rule.met' : 'users.rule.unmet')})</VisuallyHidden>
              </Text>
            </Group>
          </li>
        ))}
      </ul>
    </Box>
  );
}

/** A new password's field with its strength rules ticked beneath as it is typed. */
function NewPasswordField({ label, name, user, rulesId, value, onChange, error, inputRef, autoFocus }: {
  label: string;
  name: string;
  /** The account's name, which the password must not contain. */
  user: string;
  rulesId: string;
  value: string;
  onChange(v: string): void;
  error: string | undefined;
  inputRef: (el: HTMLElement | null) => void;
  /** Focused when its dialog opens. */
  autoFocus?: boolean;
}) {
  const { t } = useI18n();
  return (
    <>
      <PasswordInput
        ref={inputRef}
        data-autofocus={autoFocus || undefined}
        label={label}
        name={name}
        autoComplete="new-password"
        required
        value={value}
        onChange={(e) => onChange(e.currentTarget.value)}
        error={error}
        aria-invalid={error ? true : undefined}
        visibilityToggleButtonProps={{ 'aria-label': t('users.show_password') }}
      />
      <PasswordRules password={value} user={user} id={rulesId} />
    </>
  );
}

function RoleSelect({ value, onChange, error, elRef }: { value: UserRole; onChange(r: UserRole): void; error?: string; elRef?: (el: HTMLElement | null) => void }) {
  const { t } = useI18n();
  return (
    <NativeSelect
      ref={elRef}
      label={t('users.role')}
      name="role"
      value={value}
      onChange={(e) => onChange(e.currentTarget.value as UserRole)}
      data={USER_ROLES.map((r) => ({ value: r, label: t(`role.${r}`) }))}
      description={t(`users.role.${value}_hint`)}
      error={error}
      aria-invalid={error ? true : undefined}
    />
  );
}

function CreateUser({ sudo, onStart, onCreated }: { sudo: Sudo; onStart(): void; onCreated(name: string, role: UserRole): void }) {
  const { t } = useI18n();
  const [name, setName] = useState('');
  const [role, setRole] = useState<UserRole>('user');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const { message, show, ref } = useProblems();

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    onStart();
    const found = checkNewUser({ name, password });
    if (found.length > 0) return show(found);
    show([]);
    setBusy(true);
    const params = { name: name.trim(), role, password };
    try {
      if (createNeedsSudo(role)) await sudo.run((g) => g.hub.user_create(params));
      else await api.hub.user_create(params);
      setName('');
      setPassword('');
      setRole('user');
      onCreated(params.name, role);
    } catch (e) {
      if (!isSudoCancelled(e)) show([explainUserError(e)]);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Paper withBorder p={{ base: 'md', sm: 'lg' }} component="section" aria-labelledby="create-user-title">
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Stack gap="md">
          <Title order={2} size="h3" id="create-user-title">{t('users.create.title')}</Title>
          <FormAlert text={message('form')} />
          <Group align="flex-start" grow preventGrowOverflow={false} gap="md" wrap="wrap">
            <TextInput
              ref={ref('name')}
              miw={220}
              label={t('users.name')}
              name="new-user-name"
              autoComplete="off"
              autoCapitalize="none"
              autoCorrect="off"
              spellCheck={false}
              required
              maxLength={NAME_MAX * 2}
              value={name}
              onChange={(e) => setName(e.currentTarget.value)}
              description={t('users.name.hint')}
              error={message('name')}
            />
            <Box miw={220}>
              <RoleSelect value={role} onChange={setRole} error={message('role')} elRef={ref('role')} />
            </Box>
          </Group>
          <NewPasswordField label={t('users.password')} name="new-user-password" user={name} rulesId="create-user-rules" value={password} onChange={setPassword} error={message('password')} inputRef={ref('password')} />
          <Group justify="flex-end">
            <Button type="submit" loading={busy}>{t('users.create.submit')}</Button>
          </Group>
        </Stack>
      </form>
    </Paper>
  );
}

type Dialog = { kind: 'role' | 'password' | 'delete'; user: ListedUser };

/** The dialog of one action; hidden while the password prompt asks, and shown again with the outcome. */
function UserDialog({ dialog, sudo, onClose, onDone }: {
  dialog: Dialog;
  sudo: Sudo;
  onClose(): void;
  onDone(n: Notice): void;
}) {
  const { t } = useI18n();
  const u = dialog.user;
  const [role, setRole] = useState<UserRole>(u.role);
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const { message, show, ref } = useProblems();
  const roleName = (r: UserRole) => t(`role.${r}`);

  const act = async (fn: (g: SudoGrant) => Promise<Notice>, passwordField: 'password' | 'form' = 'form') => {
    setBusy(true);
    try {
      onDone(await sudo.run(fn));
    } catch (e) {
      if (!isSudoCancelled(e)) show([explainUserError(e, passwordField)]);
    } finally {
      setBusy(false);
    }
  };

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    if (dialog.kind === 'role') {
      if (role === u.role) return show([{ field: 'role', key: 'users.role_dialog.same' }]);
      await act(async (g) => {
        const r = await g.hub.user_set_role({ name: u.name, role });
        return { tone: 'ok', key: 'users.role_dialog.done', params: { name: r.name, role: roleName(r.role) } };
      });
    } else if (dialog.kind === 'password') {
      const p = checkNewPassword(password, u.name);
      if (p) return show([p]);
      await act(async (g) => {
        const r = await g.hub.user_set_password({ name: u.name, new_password: password });
        return { tone: 'ok', key: 'users.password_dialog.done', params: { name: u.name, count: r.revoked_sessions } };
      }, 'password');
    } else {
      await act(async (g) => {
        await g.hub.user_delete({ name: u.name });
        return { tone: 'ok', key: 'users.delete.done', params: { name: u.name } };
      });
    }
  };

  const title =
    dialog.kind === 'role' ? t('users.role_dialog.title', { name: u.name })
      : dialog.kind === 'password' ? t('users.password_dialog.title', { name: u.name })
        : t('users.delete_dialog.title', { name: u.name });
  const submitLabel = dialog.kind === 'role' ? 'users.role_dialog.submit' : dialog.kind === 'password' ? 'users.password_dialog.submit' : 'users.delete_dialog.submit';

  return (
    <Dialog title={title} opened={!sudo.asking} onClose={() => !busy && onClose()} closeLabel={t('users.close')}>
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Stack gap="md">
          <FormAlert text={message('form')} />
          {dialog.kind === 'role' ? (
            <RoleSelect value={role} onChange={setRole} error={message('role')} elRef={ref('role')} />
          ) : dialog.kind === 'password' ? (
            <>
              <Text size="sm">{t('users.password_dialog.explain', { name: u.name })}</Text>
              <NewPasswordField label={t('users.new_password')} name="reset-password" user={u.name} rulesId="reset-password-rules" value={password} onChange={setPassword} error={message('password')} inputRef={ref('password')} autoFocus />
            </>
          ) : (
            <Text size="sm">{t('users.delete_dialog.explain')}</Text>
          )}
          <Group justify="flex-end" gap="sm">
            <Button variant="default" onClick={onClose} disabled={busy}>{t('users.cancel')}</Button>
            <Button type="submit" loading={busy} color={dialog.kind === 'delete' ? 'red.9' : undefined}>{t(submitLabel)}</Button>
          </Group>
        </Stack>
      </form>
    </Dialog>
  );
}

function UserCard({ u, me, onAction, onToggle, busy }: {
  u: ListedUser;
  me: string;
  onAction(kind: Dialog['kind']): void;
  onToggle(): void;
  busy: boolean;
}) {
  const { t } = useI18n();
  const can = actionsFor(u, me);
  const tags = [u.owner ? t('users.owner') : null, u.name === me ? t('users.you') : null].filter(Boolean).join(' · ');
  const any = can.role || can.password || can.disable || can.enable || can.delete;
  return (
    <Paper component="li" withBorder p="md" aria-labelledby={`user-${u.name}`} data-user={u.name}>
      <Stack gap="sm">
        <Group justify="space-between" wrap="nowrap" align="flex-start">
          <div>
            <Title order={3} size="h4" id={`user-${u.name}`}>{u.name}</Title>
            <Text size="sm" c="dimmed">{[t('users.role_label', { role: t(`role.${u.role}`) }), tags].filter(Boolean).join(' · ')}</Text>
          </div>
          <StatusBadge tone={u.state === 'active' ? 'ok' : 'neutral'}>{t(`users.state.${u.state}`)}</StatusBadge>
        </Group>
        {any ? (
          <Group gap="xs" role="group" aria-label={t('users.actions_for', { name: u.name })}>
            {can.role ? <Button size="xs" variant="default" onClick={() => onAction('role')}>{t('users.action.role')}</Button> : null}
            {can.password ? <Button size="xs" variant="default" onClick={() => onAction('password')}>{t('users.action.password')}</Button> : null}
            {can.disable ? <Button size="xs" variant="default" loading={busy} onClick={onToggle}>{t('users.action.disable')}</Button> : null}
            {can.enable ? <Button size="xs" variant="default" loading={busy} onClick={onToggle}>{t('users.action.enable')}</Button> : null}
            {can.delete ? <Button size="xs" variant="outline" color="var(--bk-bad-text)" onClick={() => onAction('delete')}>{t('users.action.delete')}</Button> : null}
          </Group>
        ) : null}
      </Stack>
    </Paper>
  );
}

export default function UsersPage() {
  const { t } = useI18n();
  const sudo = useSudo();
  const me = session.get()?.user.name ?? '';
  const [users, setUsers] = useState<ListedUser[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const [dialog, setDialog] = useState<Dialog | null>(null);
  const [toggling, setToggling] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const r = await api.hub.user_list({});
      setUsers(sortUsers(r.users));
      setLoadError(null);
    } catch (e) {
      setLoadError(e instanceof Error ? e.message : String(e));
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const done = (n: Notice) => {
    setDialog(null);
    setNotice(n);
    void load();
  };

  const toggle = async (u: ListedUser) => {
    setNotice(null);
    setToggling(u.name);
    try {
      const r = u.state === 'active' ? await api.hub.user_disable({ name: u.name }) : await api.hub.user_enable({ name: u.name });
      done({ tone: 'ok', key: r.state === 'disabled' ? 'users.disable.done' : 'users.enable.done', params: { name: r.name } });
    } catch (e) {
      const p = explainUserError(e, 'form');
      done({ tone: 'bad', key: p.key, params: p.params });
    } finally {
      setToggling(null);
    }
  };

  return (
    <Stack gap="xl" data-state={users ? 'ready' : 'loading'}>
      <div>
        <Title order={1}>{t('nav.users')}</Title>
        <Text c="dimmed">{t('users.intro')}</Text>
      </div>
      {notice ? (
        <Alert color={notice.tone === 'ok' ? 'teal' : 'red'} variant="light" role={notice.tone === 'ok' ? 'status' : 'alert'} withCloseButton closeButtonLabel={t('users.close')} onClose={() => setNotice(null)}>
          {t(notice.key, notice.params)}
        </Alert>
      ) : null}
      <CreateUser sudo={sudo} onStart={() => setNotice(null)} onCreated={(name, role) => done({ tone: 'ok', key: 'users.create.done', params: { name, role: t(`role.${role}`) } })} />
      <section aria-labelledby="users-title">
        <Title order={2} size="h3" id="users-title" mb="sm">{t('users.list.title')}</Title>
        {loadError ? <Alert color="red" variant="light" role="alert">{t('users.load_failed', { message: loadError })}</Alert> : null}
        {users === null ? (
          loadError ? null : <Skeleton height={96} />
        ) : users.length === 0 ? (
          <Text>{t('users.list.none')}</Text>
        ) : (
          <Stack gap="sm" component="ul" className="bk-plain-list">
            {users.map((u) => (
              <UserCard key={u.name} u={u} me={me} busy={toggling === u.name} onAction={(kind) => {
                setNotice(null);
                setDialog({ kind, user: u });
              }} onToggle={() => void toggle(u)} />
            ))}
          </Stack>
        )}
      </section>
      {dialog ? <UserDialog key={`${dialog.kind}-${dialog.user.name}`} dialog={dialog} sudo={sudo} onClose={() => setDialog(null)} onDone={done} /> : null}
      {sudo.prompt}
    </Stack>
  );
}
