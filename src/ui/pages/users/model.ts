// The users page's rules without React: what a user name and a new password must be (the same rules verify-hub
// applies, checked here first so a mistake is said beside the field before anything is sent), which actions the
// page offers on each account, and what verify-hub's refusals mean to the person at the form.
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, type UserRole, passwordStrength, userRole, verifyHubApi } from '../../../lib/api/verify-hub.ts';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import type { MessageKey } from '../../i18n/en.ts';
import type { Params } from '../../i18n/i18n.ts';

export const USER_ROLES: readonly UserRole[] = userRole.options;
const userNameSchema = verifyHubApi.methods.user_create.params.shape.name;
export const NAME_MAX = 32;

export type PasswordRule = 'length' | 'kinds' | 'no_name';

/** Each strength rule and whether `password` meets it, in the order shown under the field. */
export function passwordRules(password: string, user: string): { rule: PasswordRule; ok: boolean }[] {
  const kept = passwordStrength(password, user);
  return [
    { rule: 'length', ok: kept.length },
    { rule: 'kinds', ok: kept.kinds },
    { rule: 'no_name', ok: kept.no_user },
  ];
}

export type Field = 'name' | 'role' | 'password' | 'form';
/** A message by key, so it follows a language switch made while it is shown. */
export type Problem = { field: Field; key: MessageKey; params?: Params };

export function checkName(raw: string): Problem | null {
  const name = raw.trim();
  if (name === '') return { field: 'name', key: 'users.name.empty' };
  if (name.length > NAME_MAX) return { field: 'name', key: 'users.name.too_long', params: { max: NAME_MAX } };
  if (!userNameSchema.safeParse(name).success) return { field: 'name', key: 'users.name.invalid' };
  return null;
}

const RULE_MESSAGE: Record<PasswordRule, MessageKey> = {
  length: 'users.password.short',
  kinds: 'users.password.kinds',
  no_name: 'users.password.has_name',
};

export function checkNewPassword(password: string, user: string): Problem | null {
  if (password === '') return { field: 'password', key: 'users.password.empty' };
  if (password.length > MAX_PASSWORD_LENGTH) return { field: 'password', key: 'users.password.too_long', params: { max: MAX_PASSWORD_LENGTH } };
  const broken = passwordRules(password, user).find((r) => !r.ok);
  return broken ? { field: 'password', key: RULE_MESSAGE[broken.rule], params: { min: MIN_PASSWORD_LENGTH } } : null;
}

/** Everything wrong with a new account's form, in field order; empty when it may be sent. */
export function checkNewUser(form: { name: string; password: string }): Problem[] {
  const found: Problem[] = [];
  const name = checkName(form.name);
  if (name) found.push(name);
  const password = checkNewPassword(form.password, form.name.trim());
  if (password) found.push(password);
  return found;
}

function issuePaths(e: KrpcError): string[] {
  const issues = (e.data as { issues?: { path?: unknown }[] } | undefined)?.issues;
  return Array.isArray(issues) ? issues.map((i) => String(i.path ?? '')) : [];
}

/** What verify-hub's refusal of a user action means, and beside which field to say it (docs/verify-hub.md §7). */
export function explainUserError(e: unknown, passwordField: 'password' | 'form' = 'password'): Problem {
  if (!(e instanceof KrpcError)) return { field: 'form', key: 'users.failed', params: { message: e instanceof Error ? e.message : String(e) } };
  switch (e.code) {
    case 'ALREADY_EXISTS':
      return { field: 'name', key: 'users.name.taken' };
    case 'INVALID_PARAMS': {
      if (/reserved/.test(e.message)) return { field: 'name', key: 'users.name.reserved' };
      const paths = issuePaths(e);
      if (paths.some((p) => p.includes('password'))) return { field: passwordField, key: 'users.password.rejected', params: { message: e.message } };
      if (paths.some((p) => p.endsWith('.name'))) return { field: 'name', key: 'users.name.invalid' };
      return { field: 'form', key: 'users.failed', params: { message: e.message } };
    }
    case 'NOT_FOUND':
      return { field: 'form', key: 'users.gone' };
    case 'PERMISSION_DENIED':
    case 'FAILED_PRECONDITION':
      return { field: 'form', key: 'users.refused', params: { message: e.message } };
    case 'RATE_LIMITED':
      return { field: 'form', key: 'users.rate_limited' };
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return { field: 'form', key: 'users.unreachable' };
    default:
      return { field: 'form', key: 'users.failed', params: { message: e.message } };
  }
}

export interface ListedUser {
  name: string;
  role: UserRole;
  state: 'active' | 'disabled';
  owner: boolean;
}

export interface UserActions {
  role: boolean;
  password: boolean;
  disable: boolean;
  enable: boolean;
  delete: boolean;
}

/**
 * What the page offers on `u` when `me` is signed in: what verify-hub would refuse is not offered. The owner's role,
 * state and existence never change and only the owner sets their password (from their own settings, with the old
 * one); nobody disables or deletes themselves, and an admin does not demote themselves from here (they would lose
 * this page mid-action).
 */
export function actionsFor(u: ListedUser, me: string): UserActions {
  const self = u.name === me;
  if (u.owner) return { role: false, password: false, disable: false, enable: false, delete: false };
  return {
    role: !self,
    password: !self,
    disable: !self && u.state === 'active',
    enable: !self && u.state === 'disabled',
    delete: !self,
  };
}

/** Creating an admin is a sudo action; any other role is not (docs/verify-hub.md §7). */
export const createNeedsSudo = (role: UserRole): boolean => role === 'admin';

/** Owner first, then admins, then by name: the accounts that matter most stay on top. */
export function sortUsers<U extends ListedUser>(users: readonly U[]): U[] {
  const rank = (u: ListedUser) => (u.owner ? 0 : u.role === 'admin' ? 1 : 2);
  return [...users].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
}
