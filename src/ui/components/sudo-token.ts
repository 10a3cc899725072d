// The rules of the sudo prompt without React (components/sudo.tsx): how long a sudo token may be reused, and what a
// refused password check means to the person at the prompt. A sudo token (verify-hub.sudo) lives 5 minutes and is
// bound to the session it came from; it is kept in memory only, never stored, so a reload asks again.
import { jwtPayload } from '../../lib/identity/base64url.ts';
import { KrpcError } from '../../lib/krpc/errors.ts';
import type { MessageKey } from '../i18n/en.ts';
import type { Params } from '../i18n/i18n.ts';

/** Stop reusing a token this long before it dies, so an action started just in time does not arrive late. */
export const SUDO_MARGIN_MS = 30_000;

export interface HeldSudo {
  token: string;
  /** The session it was issued for: a new sign-in never inherits it. */
  sid: string;
  /** Local clock, milliseconds: reuse it until then. The lifetime comes from the token itself (exp - iat), so a
   * device clock that disagrees with the zone's does not matter. */
  until: number;
}

function lifetimeMs(jwt: string): number {
  try {
    const c = jwtPayload(jwt) as { iat?: unknown; exp?: unknown };
    if (typeof c.iat === 'number' && typeof c.exp === 'number') return Math.max(0, (c.exp - c.iat) * 1000);
  } catch {
    // An unreadable token is used once and not kept.
  }
  return 0;
}

export function holdSudo(token: string, sid: string, now: number): HeldSudo {
  return { token, sid, until: now + lifetimeMs(token) - SUDO_MARGIN_MS };
}

/** The one sudo token of this tab. */
export class SudoCache {
  private held: HeldSudo | null = null;

  /** The token to use now for session `sid`, or null when the password must be asked again. */
  get(sid: string | null, now: number): HeldSudo | null {
    if (this.held && (this.held.sid !== sid || this.held.until <= now)) this.held = null;
    return this.held;
  }

  set(h: HeldSudo): void {
    this.held = h;
  }

  /** Drops `h` if it is still the one held (a token the zone refused as expired). */
  forget(h?: HeldSudo): void {
    if (!h || this.held === h) this.held = null;
  }
}

export type SudoProblem = { key: MessageKey; params?: Params };

/** What verify-hub's answer to `sudo` means, shown beside the password field (docs/verify-hub.md §2, §4). */
export function explainSudoError(e: unknown): SudoProblem {
  if (!(e instanceof KrpcError)) return { key: 'sudo.failed', params: { message: e instanceof Error ? e.message : String(e) } };
  switch (e.code) {
    case 'UNAUTHENTICATED':
      return { key: 'sudo.wrong' };
    case 'RATE_LIMITED': {
      const d = (e.data ?? {}) as { locked_until?: unknown; retry_after_ms?: unknown };
      if (typeof d.locked_until === 'number') return { key: 'sudo.locked', params: { time: d.locked_until * 1000 } };
      const ms = typeof d.retry_after_ms === 'number' ? d.retry_after_ms : 1000;
      return { key: 'sudo.rate_limited', params: { seconds: Math.max(1, Math.ceil(ms / 1000)) } };
    }
    // Only the password is a parameter, and one the schema refuses (longer than any password) is not theirs.
    case 'INVALID_PARAMS':
      return { key: 'sudo.wrong' };
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return { key: 'sudo.unreachable' };
    default:
      return { key: 'sudo.failed', params: { message: e.message } };
  }
}
