// The logs page's rules, without React or the network: a search form -> klog query and tail parameters (or what is
// wrong with it), times typed in the zone's time zone -> instants, and the list that follow mode and "load older"
// add to.
import { LOG_LEVELS, type LogLevel, type LogRecordOut } from '../../../lib/api/klog.ts';

export const PAGE_SIZE = 50;
/** Entries kept on the page while following; beyond it the oldest go (they are still one search away). */
export const MAX_SHOWN = 1000;
/** The long poll's wait: under the gateway's keep-alive (30 s), with the client's own timeout above it. */
export const TAIL_WAIT_MS = 20_000;

/** A poll that fails for want of a connection (a device restarting, Wi-Fi dropping) is retried this many times in a
 * row, waiting followRetryDelayMs(n) before the n-th, before following stops and says why. */
export const FOLLOW_RETRIES = 3;
export const followRetryDelayMs = (attempt: number): number => 1000 * 2 ** attempt;

export const MAX_TEXT = 256;
export const MAX_SERVICE = 64;
export const MAX_NODE = 128;
export const MAX_TRACE = 64;

export const RANGES = ['any', '15m', '1h', '24h', '7d', 'custom'] as const;
export type Range = (typeof RANGES)[number];
const RANGE_MS: Record<Exclude<Range, 'any' | 'custom'>, number> = { '15m': 15 * 60_000, '1h': 3600_000, '24h': 24 * 3600_000, '7d': 7 * 24 * 3600_000 };

export interface LogFilters {
  text: string;
  service: string;
  node: string;
  level: LogLevel | '';
  range: Range;
  /** `YYYY-MM-DDTHH:mm` in the zone's time zone (a datetime-local field), for the custom range. */
  from: string;
  to: string;
  /** Set from an entry ("show this trace"), not typed. */
  trace: string;
}

export const EMPTY_FILTERS: LogFilters = { text: '', service: '', node: '', level: '', range: 'any', from: '', to: '', trace: '' };

export type FilterField = 'text' | 'service' | 'node' | 'from' | 'to';
export type FilterProblem = 'too_long' | 'bad_time' | 'from_after_to' | 'needs_time';

export interface QueryParams {
  text?: string;
  service?: string;
  node?: string;
  level_min?: LogLevel;
  trace?: string;
  since?: number;
  until?: number;
}

/** How far `timeZone`'s clocks are ahead of UTC at the instant `ms`, in milliseconds. */
function offsetAt(ms: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(ms);
  const get = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value);
  const seen = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return seen - (ms - (((ms % 1000) + 1000) % 1000));
}

const WALL = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/;

/** A wall-clock time as typed in a datetime-local field, read in `timeZone` (the browser's own when undefined), as
 * milliseconds since the epoch; null when it is not one. Around daylight saving it reads as clocks do: a time the
 * autumn repeats is its first occurrence, a time the spring skips is that long after (02:30 on the night clocks jump
 * from 02:00 to 03:00 is 03:30). */
export function wallTimeToEpoch(value: string, timeZone: string | undefined): number | null {
  const m = WALL.exec(value);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x))) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return null;
  const asUtc = Date.UTC(y, mo - 1, d, h, mi, s);
  if (new Date(asUtc).getUTCDate() !== d) return null;
  if (timeZone === undefined) return new Date(y, mo - 1, d, h, mi, s).getTime();
  // The offsets in force a day before and a day after: no zone changes its offset twice within two days.
  const before = offsetAt(asUtc - 86_400_000, timeZone);
  const after = offsetAt(asUtc + 86_400_000, timeZone);
  const fits = [before, after].map((o) => asUtc - o).filter((t) => asUtc - offsetAt(t, timeZone) === t);
  return fits.length > 0 ? Math.min(...fits) : asUtc - before;
}

/** The inverse, for filling a datetime-local field: `YYYY-MM-DDTHH:mm` as `ms` is seen in `timeZone`. */
export function epochToWallTime(ms: number, timeZone: string | undefined): string {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  }).formatToParts(ms);
  const get = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('year')}-${get('month')}-${get('day')}T${get('hour')}:${get('minute')}`;
}

/** The query for a search form, or what is wrong with each field. Lengths are klog's own bounds, checked here so the
 * message stands beside the field instead of coming back as a refused call. */
export function buildQuery(
  f: LogFilters,
  now: number,
  timeZone: string | undefined,
): { ok: true; params: QueryParams } | { ok: false; problems: Partial<Record<FilterField, FilterProblem>> } {
  const problems: Partial<Record<FilterField, FilterProblem>> = {};
  const text = f.text.trim();
  const service = f.service.trim();
  const node = f.node.trim();
  if (text.length > MAX_TEXT) problems.text = 'too_long';
  if (service.length > MAX_SERVICE) problems.service = 'too_long';
  if (node.length > MAX_NODE) problems.node = 'too_long';
  const params: QueryParams = {};
  if (text) params.text = text;
  if (service) params.service = service;
  if (node) params.node = node;
  if (f.level) params.level_min = f.level;
  if (f.trace) params.trace = f.trace.slice(0, MAX_TRACE);
  if (f.range === 'custom') {
    const since = f.from === '' ? undefined : wallTimeToEpoch(f.from, timeZone);
    const until = f.to === '' ? undefined : wallTimeToEpoch(f.to, timeZone);
    if (since === null) problems.from = 'bad_time';
    if (until === null) problems.to = 'bad_time';
    if (f.from === '' && f.to === '') problems.from = 'needs_time';
    if (typeof since === 'number' && typeof until === 'number' && since > until) problems.to = 'from_after_to';
    if (typeof since === 'number') params.since = since;
    // The field holds minutes: "to 10:15" includes everything stamped 10:15:59.
    if (typeof until === 'number') params.until = until + 59_999;
  } else if (f.range !== 'any') {
    params.since = now - RANGE_MS[f.range];
  }
  return Object.keys(problems).length > 0 ? { ok: false, problems } : { ok: true, params };
}

export type FollowBlock = 'until' | 'trace' | null;

/** Why a search cannot be followed: new entries are never before a fixed end, and klog's tail has no trace filter
 * (a trace is one request, over in moments). */
export function followBlocked(p: QueryParams): FollowBlock {
  if (p.until !== undefined) return 'until';
  if (p.trace !== undefined) return 'trace';
  return null;
}

/** The tail parameters that follow a search from `afterId` (the newest id already shown; omitted: from now). */
export function tailParams(p: QueryParams, afterId: number | undefined) {
  return {
    ...(afterId === undefined ? {} : { after_id: afterId }),
    ...(p.service ? { service: p.service } : {}),
    ...(p.node ? { node: p.node } : {}),
    ...(p.level_min ? { level_min: p.level_min } : {}),
    ...(p.text ? { text: p.text } : {}),
    timeout_ms: TAIL_WAIT_MS,
    limit: PAGE_SIZE * 4,
  };
}

export type Entry = LogRecordOut;

/** `shown` and `incoming` as one list, newest (highest id) first, each id once, at most `max` long (the oldest go). */
export function mergeEntries<T extends { id: number }>(shown: readonly T[], incoming: readonly T[], max = MAX_SHOWN): T[] {
  const byId = new Map<number, T>();
  for (const e of shown) byId.set(e.id, e);
  for (const e of incoming) byId.set(e.id, e);
  return [...byId.values()].sort((a, b) => b.id - a.id).slice(0, max);
}

export type Tone = 'ok' | 'warn' | 'bad' | 'neutral';

export function levelTone(level: LogLevel): Tone {
  if (level === 'error' || level === 'fatal') return 'bad';
  if (level === 'warn') return 'warn';
  return 'neutral';
}

/** Levels in order of severity, for the "at least" choice. */
export const LEVELS: readonly LogLevel[] = LOG_LEVELS;

/** Names under `<prefix><name>/...` in a listing (services/, devices/), sorted, for the fields' suggestions. */
export function namesUnder(keys: readonly string[], prefix: string): string[] {
  const out = new Set<string>();
  for (const k of keys) {
    if (!k.startsWith(prefix)) continue;
    const name = k.slice(prefix.length).split('/')[0];
    if (name) out.add(name);
  }
  return [...out].sort();
}

/** An entry's fields as readable text: indented JSON. */
export function fieldsText(fields: Record<string, unknown> | undefined): string {
  return fields === undefined || Object.keys(fields).length === 0 ? '' : JSON.stringify(fields, null, 2);
}
