// "This action needs your password again": dangerous actions (verify-hub's sudo list: deleting a user, changing a
// role, resetting someone's password, creating an admin, device offers and removal) must be called with a sudo
// token. A page wraps such a call in `sudo.run(g => g.hub.user_delete(...))` and renders `sudo.prompt`; run() asks for
// the password when this tab holds no live token, trades it at verify-hub.sudo, and calls the action with clients
// that carry the sudo token. The token is reused for its 5 minutes (less a margin), in memory only, and forgotten
// when the session changes. A wrong password is said beside the field and the prompt stays; Cancel rejects run()
// with SudoCancelled, which a page simply ignores.
import { Button, Group, PasswordInput, Stack, Text } from '@mantine/core';
import { type FormEvent, type ReactNode, useCallback, useMemo, useRef, useState } from 'react';
import { MAX_PASSWORD_LENGTH, verifyHubApi } from '../../lib/api/verify-hub.ts';
import type { Client } from '../../lib/krpc/call.ts';
import { KrpcError } from '../../lib/krpc/errors.ts';
import { createFetchClient } from '../../lib/krpc/fetch-client.ts';
import type { MethodMap, ServiceDef } from '../../lib/krpc/service.ts';
import { api, session } from '../api.ts';
import { formatTime } from '../format.ts';
import { useI18n } from '../i18n/context.tsx';
import { Dialog } from './dialog.tsx';
import { type HeldSudo, SudoCache, type SudoProblem, explainSudoError, holdSudo } from './sudo-token.ts';

/** The clients an action gets: the same declarations as `api`, carrying the sudo token. */
export interface SudoGrant {
  hub: Client<typeof verifyHubApi.methods>;
  client<M extends MethodMap>(def: ServiceDef<M>): Client<M>;
}

/** run() ends this way when the person cancels the prompt. */
export class SudoCancelled extends Error {
  constructor() {
    super('the password prompt was cancelled');
    this.name = 'SudoCancelled';
  }
}

export interface Sudo {
  run<T>(action: (grant: SudoGrant) => Promise<T>): Promise<T>;
  /** The prompt; render it once in the page that uses run(). */
  prompt: ReactNode;
  /** The prompt is showing: a dialog that started run() hides meanwhile, so that only one modal traps focus. */
  asking: boolean;
}

const cache = new SudoCache();
// Signing out or in drops the token at once rather than at its next use.
session.subscribe(() => cache.get(session.get()?.sid ?? null, Date.now()));

function grant(h: HeldSudo): SudoGrant {
  const client = <M extends MethodMap>(def: ServiceDef<M>): Client<M> => {
    const raw = createFetchClient(def, { token: h.token }) as Record<string, (p: unknown, o?: { timeoutMs?: number }) => Promise<unknown>>;
    const out: Record<string, unknown> = {};
    for (const name of Object.keys(def.methods)) {
      out[name] = async (params: unknown, opts?: { timeoutMs?: number }) => {
        try {
          return await raw[name]!(params, opts);
        } catch (e) {
          // A sudo token is refused this way only when its session is over (revoked, user disabled or deleted).
          if (e instanceof KrpcError && e.code === 'UNAUTHENTICATED') session.expire();
          throw e;
        }
      };
    }
    return out as Client<M>;
  };
  return { hub: client(verifyHubApi), client };
}

interface Asking {
  resolve(h: HeldSudo): void;
  reject(e: Error): void;
}

export function useSudo(): Sudo {
  const [asking, setAsking] = useState<Asking | null>(null);
  const pending = useRef<Promise<HeldSudo> | null>(null);

  // Two actions needing the password at once share one prompt.
  const ask = useCallback((): Promise<HeldSudo> => {
    pending.current ??= new Promise<HeldSudo>((resolve, reject) => setAsking({ resolve, reject })).finally(() => {
      pending.current = null;
    });
    return pending.current;
  }, []);

  const run = useCallback(
    async <T,>(action: (g: SudoGrant) => Promise<T>): Promise<T> => {
      for (let attempt = 0; ; attempt++) {
        const h = cache.get(session.get()?.sid ?? null, Date.now()) ?? (await ask());
        try {
          return await action(grant(h));
        } catch (e) {
          // The zone's clock ran ahead of ours: ask again, once.
          if (attempt === 0 && e instanceof KrpcError && e.code === 'TOKEN_EXPIRED') {
            cache.forget(h);
            continue;
          }
          throw e;
        }
      }
    },
    [ask],
  );

  const settled = useCallback(() => setAsking(null), []);
  return useMemo(() => ({ run, prompt: <SudoPrompt asking={asking} onSettled={settled} />, asking: asking !== null }), [run, asking, settled]);
}

function SudoPrompt({ asking, onSettled }: { asking: Asking | null; onSettled(): void }) {
  const { t, locale, timeZone } = useI18n();
  const [password, setPassword] = useState('');
  const [problem, setProblem] = useState<SudoProblem | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  const settle = () => {
    setPassword('');
    setProblem(null);
    onSettled();
  };
  const cancel = () => {
    if (busy) return;
    asking?.reject(new SudoCancelled());
    settle();
  };
  const refuse = (p: SudoProblem) => {
    setPassword('');
    setProblem(p);
    input.current?.focus();
  };

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    if (!asking) return;
    if (password === '') return refuse({ key: 'sudo.empty' });
    if (password.length > MAX_PASSWORD_LENGTH) return refuse({ key: 'sudo.wrong' });
    const sid = session.get()?.sid;
    if (!sid) {
      cancel();
      return;
    }
    setBusy(true);
    try {
      const r = await api.hub.sudo({ password });
      const h = holdSudo(r.sudo_token, sid, Date.now());
      cache.set(h);
      asking.resolve(h);
      settle();
    } catch (e) {
      refuse(explainSudoError(e));
    } finally {
      setBusy(false);
    }
  };

  const message = problem
    ? t(problem.key, problem.key === 'sudo.locked' && problem.params ? { time: formatTime(Number(problem.params.time), locale, timeZone) } : problem.params)
    : undefined;

  return (
    <Dialog opened={asking !== null} onClose={cancel} title={t('sudo.title')} closeLabel={t('sudo.close')}>
      <form onSubmit={(e) => void submit(e)} noValidate>
        <Stack gap="md">
          <Text size="sm">{t('sudo.explain')}</Text>
          <PasswordInput
            ref={input}
            data-autofocus
            label={t('sudo.password')}
            name="sudo-password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.currentTarget.value)}
            error={message}
            aria-invalid={message ? true : undefined}
            visibilityToggleButtonProps={{ 'aria-label': t('sudo.show_password') }}
          />
          <Group justify="flex-end" gap="sm">
            <Button variant="default" onClick={cancel} disabled={busy}>{t('sudo.cancel')}</Button>
            <Button type="submit" loading={busy}>{t('sudo.confirm')}</Button>
          </Group>
        </Stack>
      </form>
    </Dialog>
  );
}

/** True for the end of a run() the person cancelled: nothing to report. */
export function isSudoCancelled(e: unknown): boolean {
  return e instanceof SudoCancelled;
}
