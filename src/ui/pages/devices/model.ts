// The devices page's rules without React: the enrolment offer's form (role, optional name, lifetime) checked as
// verify-hub checks it, the offer's countdown by the local clock, the QR code's modules, which devices may be removed,
// and what verify-hub's refusals mean to the person at the form (docs/devices.md).
import qrcode from 'qrcode-generator';
import { OFFER_TTL_SEC, verifyHubApi } from '../../../lib/api/verify-hub.ts';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import type { MessageKey } from '../../i18n/en.ts';
import type { Params } from '../../i18n/i18n.ts';

type OfferParams = typeof verifyHubApi.methods.device_offer.params.shape;
export type DeviceRole = (typeof DEVICE_ROLES)[number];
export const DEVICE_ROLES = verifyHubApi.methods.device_offer.params.shape.role.options;
const deviceNameSchema = (verifyHubApi.methods.device_offer.params.shape.name as OfferParams['name']).unwrap();
export const DEVICE_NAME_MAX = 32;

/** The lifetimes offered, in seconds; the default first. All within verify-hub's bounds (OFFER_TTL_SEC). */
export const OFFER_LIFETIMES = [OFFER_TTL_SEC.default, 3600, OFFER_TTL_SEC.max] as const;

export interface ZoneDevice {
  name: string;
  role: DeviceRole;
  did: string;
  state: 'online' | 'offline' | 'unknown';
  addresses: string[];
  last_seen: number | null;
  current: boolean;
}

export type Field = 'role' | 'name' | 'ttl' | 'form';
export type Problem = { field: Field; key: MessageKey; params?: Params };

export function checkOfferForm(form: { name: string; ttl: number }): Problem[] {
  const found: Problem[] = [];
  const name = form.name.trim();
  if (name.length > DEVICE_NAME_MAX) found.push({ field: 'name', key: 'device_page.name.too_long', params: { max: DEVICE_NAME_MAX } });
  else if (name !== '' && !deviceNameSchema.safeParse(name).success) found.push({ field: 'name', key: 'device_page.name.invalid' });
  if (!Number.isInteger(form.ttl) || form.ttl < OFFER_TTL_SEC.min || form.ttl > OFFER_TTL_SEC.max) found.push({ field: 'ttl', key: 'device_page.ttl.invalid' });
  return found;
}

/** Seconds left of an offer received at `receivedAt` (local ms) for `ttlSec`. The zone set its expiry `ttlSec` after
 * its own now, so counting from the local moment of receipt keeps a device clock that disagrees with the zone's out
 * of it (at the cost of the request's round trip, which only shortens what is shown). */
export function secondsLeft(receivedAt: number, ttlSec: number, now: number): number {
  return Math.max(0, Math.ceil((receivedAt + ttlSec * 1000 - now) / 1000));
}

/** 9:05, 1:00:00: a countdown reads better as a clock than as words. */
export function formatCountdown(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The dark modules of a QR code of `text`. Error correction L: the code is read off a screen, not a worn sticker,
 * and a join code is long, so the lowest level keeps the modules as large as they can be for a phone's camera. */
export function qrModules(text: string): { size: number; dark: (row: number, col: number) => boolean } {
  const qr = qrcode(0, 'L');
  try {
    qr.addData(text, 'Byte');
    qr.make();
  } catch (e) {
    throw new Error(`the join offer is too long for a QR code: ${String(e)}`);
  }
  return { size: qr.getModuleCount(), dark: (r, c) => qr.isDark(r, c) };
}

/** One SVG path drawing every dark module (a unit square each), with a quiet zone of `margin` modules. */
export function qrPath(text: string, margin = 4): { path: string; size: number } {
  const { size, dark } = qrModules(text);
  const parts: string[] = [];
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) if (dark(r, c)) parts.push(`M${c + margin} ${r + margin}h1v1h-1z`);
  }
  return { path: parts.join(''), size: size + margin * 2 };
}

/** The device answering the page is never removable through itself; every other one is, core ones only with force. */
export function removable(d: ZoneDevice): boolean {
  return !d.current;
}

/** This device first, then core devices, then by name. */
export function sortDevices<D extends ZoneDevice>(devices: readonly D[]): D[] {
  const rank = (d: ZoneDevice) => (d.current ? 0 : d.role === 'core' ? 1 : 2);
  return [...devices].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
}

/** What verify-hub's refusal of an offer or a removal means, and where to say it (docs/devices.md). */
export function explainDeviceError(e: unknown): Problem {
  if (!(e instanceof KrpcError)) return { field: 'form', key: 'device_page.failed', params: { message: e instanceof Error ? e.message : String(e) } };
  switch (e.code) {
    case 'ALREADY_EXISTS':
      return { field: 'name', key: 'device_page.name.taken' };
    case 'INVALID_PARAMS':
      return /name/.test(e.message) ? { field: 'name', key: 'device_page.name.invalid' } : { field: 'form', key: 'device_page.failed', params: { message: e.message } };
    case 'NOT_FOUND':
      return { field: 'form', key: 'device_page.gone' };
    case 'FAILED_PRECONDITION':
    case 'PERMISSION_DENIED':
      return { field: 'form', key: 'device_page.refused', params: { message: e.message } };
    case 'UNAVAILABLE':
      // verify-hub says so when no core device has reported an address a new device could reach yet.
      return /core device/.test(e.message) ? { field: 'form', key: 'device_page.no_peers' } : { field: 'form', key: 'device_page.unreachable' };
    case 'TIMEOUT':
      return { field: 'form', key: 'device_page.unreachable' };
    default:
      return { field: 'form', key: 'device_page.failed', params: { message: e.message } };
  }
}
