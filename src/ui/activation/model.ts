// The activation page's rules, without React: which words to ask back, what the owner typed wrong and where, what
// the device's refusals mean to a person, and where an address typed by hand leads.
import { type ActivationField, activationFieldProblems } from '../../lib/identity/activation-docs.ts';
import type { GatewayMode } from '../../lib/identity/doc-schemas.ts';
import { MnemonicError, WORDLIST, checkMnemonic } from '../../lib/identity/recovery-phrase.ts';
import { KrpcError } from '../../lib/krpc/errors.ts';
import type { MessageKey } from './messages.ts';

export type Params = Record<string, string | number>;
export type FormField = ActivationField | 'password2' | 'gatewayHost' | 'form';
/** A message by key, so it follows a language switch made while it is shown. */
export interface Problem {
  field: FormField;
  key: MessageKey;
  params?: Params;
}

export const CONFIRM_COUNT = 3;

/** Three distinct word positions (1-12), in order, to ask back. */
export function pickConfirmPositions(random: () => number = () => crypto.getRandomValues(new Uint32Array(1))[0]! / 2 ** 32): number[] {
  const pool = Array.from({ length: 12 }, (_, i) => i + 1);
  const out: number[] = [];
  while (out.length < CONFIRM_COUNT) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]!);
  return out.sort((a, b) => a - b);
}

/** The problems with the words typed back, one per position asked. */
export function confirmationProblems(words: readonly string[], answers: Record<number, string>): Problem[] {
  const out: Problem[] = [];
  for (const [pos, typed] of Object.entries(answers)) {
    const n = Number(pos);
    const t = typed.trim().toLowerCase();
    if (t === '') out.push({ field: 'form', key: 'confirm.empty', params: { n } });
    else if (t !== words[n - 1]) out.push({ field: 'form', key: 'confirm.wrong', params: { n } });
  }
  return out;
}

/** Why typed recovery words are not a recovery phrase, or null with the normalised phrase. */
export function wordsProblem(text: string): { problem: Omit<Problem, 'field'> | null; phrase?: string } {
  if (text.trim() === '') return { problem: { key: 'words.empty' } };
  try {
    return { problem: null, phrase: checkMnemonic(text) };
  } catch (e) {
    if (!(e instanceof MnemonicError)) throw e;
    if (e.reason === 'word-count') return { problem: { key: 'words.count', params: { count: text.trim().split(/\s+/).length } } };
    if (e.reason === 'unknown-word') {
      const word = e.word ?? '';
      const guess = word.length >= 4 ? WORDLIST.find((c) => c.startsWith(word.slice(0, 4))) : undefined;
      const params = { n: e.position ?? 0, word };
      return { problem: guess ? { key: 'words.unknown_hint', params: { ...params, guess } } : { key: 'words.unknown', params } };
    }
    return { problem: { key: 'words.checksum' } };
  }
}

export interface ZoneForm {
  zone: string;
  owner: string;
  deviceName: string;
  gateway: GatewayMode;
  gatewayHost: string;
  password: string;
  password2: string;
}

const EMPTY_KEYS: Partial<Record<FormField, MessageKey>> = {
  zone: 'zone.name_empty',
  owner: 'zone.owner_empty',
  deviceName: 'zone.device_empty',
  password: 'zone.password_empty',
};
const INVALID_KEYS: Partial<Record<FormField, MessageKey>> = {
  zone: 'zone.name_invalid',
  owner: 'zone.owner_invalid',
  deviceName: 'zone.device_invalid',
  gateway: 'zone.gateway_host_invalid',
};

/** The password rule a device sentence names (adminPasswordProblem), for the message beside the field. */
function passwordRuleKey(sentence: string): MessageKey {
  if (/too short/.test(sentence)) return 'weak.length';
  if (/one kind/.test(sentence)) return 'weak.kinds';
  if (/user name/.test(sentence)) return 'weak.no_user';
  if (/zone name/.test(sentence)) return 'weak.no_zone';
  return 'weak.not_common';
}

/** Everything wrong with the zone form, field by field, in the order of the form; empty when it can be sent. */
export function zoneFormProblems(f: ZoneForm): Problem[] {
  const out: Problem[] = [];
  const fields = { zone: f.zone.trim(), owner: f.owner.trim(), deviceName: f.deviceName.trim() };
  const found = activationFieldProblems({
    ...fields,
    password: f.password,
    gateway: f.gateway === 'lan' ? { mode: 'lan' } : { mode: f.gateway, ...(f.gatewayHost.trim() ? { host: f.gatewayHost.trim() } : {}) },
  });
  for (const field of ['zone', 'owner', 'deviceName'] as const) {
    if (fields[field] === '') out.push({ field, key: EMPTY_KEYS[field]! });
    else if (found[field]) out.push({ field, key: INVALID_KEYS[field]! });
  }
  if (found.gateway) out.push({ field: 'gatewayHost', key: 'zone.gateway_host_invalid' });
  if (f.password === '') out.push({ field: 'password', key: 'zone.password_empty' });
  else if (found.password) out.push({ field: 'password', key: passwordRuleKey(found.password) });
  else if (f.password !== f.password2) out.push({ field: 'password2', key: 'zone.password2_mismatch' });
  return out;
}

/** What a refusal from the device (or no answer) means to the person at the form, and which field it concerns. */
export function explainActivationError(e: unknown): Problem {
  if (!(e instanceof KrpcError)) return { field: 'form', key: 'err.failed', params: { message: e instanceof Error ? e.message : String(e) } };
  switch (e.code) {
    case 'FAILED_PRECONDITION':
      return /already activated/.test(e.message) ? { field: 'form', key: 'err.already_activated' } : { field: 'form', key: 'err.attempt' };
    case 'RATE_LIMITED': {
      const s = (e.data as { retry_after_sec?: unknown } | undefined)?.retry_after_sec;
      return { field: 'form', key: 'err.rate_limited', params: { seconds: typeof s === 'number' ? Math.max(1, s) : 60 } };
    }
    case 'INVALID_PARAMS': {
      const m = e.message;
      if (/admin password/.test(m)) return { field: 'password', key: passwordRuleKey(m) };
      if (/zone name|zone:|\bzone\b.*host/.test(m)) return { field: 'zone', key: 'zone.name_invalid' };
      if (/user name|owner/.test(m)) return { field: 'owner', key: 'zone.owner_invalid' };
      if (/device name|device_name/.test(m)) return { field: 'deviceName', key: 'zone.device_invalid' };
      return { field: 'form', key: 'err.failed', params: { message: m } };
    }
    case 'UNAUTHENTICATED':
      return { field: 'form', key: 'err.signature', params: { message: e.message } };
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return { field: 'form', key: 'err.unreachable' };
    default:
      return { field: 'form', key: 'err.failed', params: { message: e.message } };
  }
}

const HOST = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;

/** The activation page of a device typed by address (`host`, `host:port`, or a URL); null when it is no address. */
export function deviceAddressUrl(input: string, defaultPort: number): string | null {
  let text = input.trim();
  if (text === '') return null;
  text = text.replace(/^https?:\/\//i, '').replace(/\/.*$/, '');
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(text);
  if (!m) return null;
  const host = m[1]!;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!HOST.test(host) || port < 1 || port > 65535) return null;
  // A bare IPv6 address has colons of its own: it needs brackets.
  return `http://${host}:${port}/`;
}
