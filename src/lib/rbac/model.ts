// The RBAC model: the casbin model text, the vocabulary it uses (actions, resource kinds, subject names), the two
// matcher functions it calls and how a request is made from a caller's principal. The same functions back both stock
// casbin (the reference, see enforcer.ts) and the compiled fast path, so the two can only differ in how rules are
// found, never in what a rule means.
import type { Principal } from '../krpc/context.ts';

/** Every action a policy line may grant. `create` and `delete` are separate from `write` so that a rule can allow
 * appending (a log record, a new file) without allowing rewriting or removal. `exec` is operating something (running
 * an app, rebooting a node) rather than changing stored state. */
export const ACTIONS = ['read', 'write', 'create', 'delete', 'exec'] as const;

/** The first path segment of every resource URI `obj://<kind>/...`. A pattern naming another kind is a typo, and is
 * rejected at load instead of silently granting nothing. */
export const RESOURCE_KINDS = ['config', 'dfs', 'app', 'user', 'system', 'log'] as const;

/**
 * The casbin model. A request is `(user, app, dev, dev_role, obj, act)`; it is allowed only if every matcher that
 * applies finds a rule:
 *
 * - `m` (policy `p`, roles `g`) asks whether the user may do it;
 * - `m2` (policy `p2`, roles `g2`) asks whether the app may do it;
 * - `m3` (policy `p3`, roles `g3`), for a request made with a kernel service token, asks whether the device that
 *   signed the token may do it: `dev` is its name, `dev_role` its role from its signed document (`core`, `storage`,
 *   ...). A user's token is signed by verify-hub, not by a device, so its requests have no device and skip `m3`.
 *
 * Users, apps and device roles live in separate namespaces (`g`/`p`, `g2`/`p2`, `g3`/`p3`): a user who happens to
 * share a name with an app or a device role gets nothing from it. Every matcher sees the whole request, so a pattern's
 * `{user}` always means the requesting user, `{app}` the requesting app and `{device}` the signing device, on any side.
 *
 * `objMatch` is a segment matcher rather than casbin's keyMatch family because there `*` also matches `/`, so a
 * wildcard meant for one user id would also match `alice/apps/other`; see `compilePattern` for the syntax.
 */
export const RBAC_MODEL = `[request_definition]
r = user, app, dev, dev_role, obj, act

[policy_definition]
p = sub, obj, act
p2 = sub, obj, act
p3 = sub, obj, act

[role_definition]
g = _, _
g2 = _, _
g3 = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.user, p.sub) && actMatch(r.act, p.act) && objMatch(r.obj, p.obj, r.user, r.app, r.dev)
m2 = g2(r.app, p2.sub) && actMatch(r.act, p2.act) && objMatch(r.obj, p2.obj, r.user, r.app, r.dev)
m3 = g3(r.dev_role, p3.sub) && actMatch(r.act, p3.act) && objMatch(r.obj, p3.obj, r.user, r.app, r.dev)
`;

/** The device that signed a kernel service's token: its name, and its role from its signed document. */
export interface RequestDevice {
  name: string;
  role: string;
}

export interface AccessRequest {
  user: string;
  app: string;
  /** Set for a request made with a kernel service token, whose signing device bounds it (the device side); absent
   * for a user's token. */
  device?: RequestDevice;
  resource: string;
  action: string;
}

/**
 * The request a caller makes: its user and app, and, for a kernel service token, the device that signed it. A service
 * principal whose device is not known (no signing device, or one whose document could not be read) gets a device
 * with no name and no role, which the device side grants nothing: it fails closed rather than acting as the kernel.
 */
type Requester = Pick<Principal, 'userId' | 'appId' | 'kind' | 'deviceName' | 'deviceRole'>;

export function accessRequest(p: Requester, resource: string, action: string): AccessRequest {
  const req: AccessRequest = { user: p.userId, app: p.appId, resource, action };
  if (p.kind === 'service') req.device = { name: p.deviceName ?? '', role: p.deviceRole ?? '' };
  return req;
}

/** How a refusal names the caller: `alice (app control-panel)`, and for a kernel service also the device that bounds
 * it, `dfs (app dfs) on storage device nas1`, so a refusal by the device side says why. */
export function requesterText(p: Requester): string {
  const who = `${p.userId} (app ${p.appId})`;
  if (p.kind !== 'service') return who;
  return p.deviceName && p.deviceRole ? `${who} on ${p.deviceRole} device ${p.deviceName}` : `${who} on a device whose role is unknown`;
}

const SUBJECT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** User ids, app ids, service ids and role names share one syntax. It keeps out every character that means something
 * in a pattern (`/`, `*`, `{`, `}`) or in the CSV (`,`, `"`, `#`), so `{user}` can be replaced by a name without the
 * name changing the pattern's shape. */
export function isValidSubject(name: string): boolean {
  return SUBJECT_RE.test(name);
}

const ACTION_BITS: Readonly<Record<string, number>> = Object.fromEntries(ACTIONS.map((a, i) => [a, 1 << i]));
const ALL_ACTIONS = (1 << ACTIONS.length) - 1;

/** The bit of one requested action, or 0 for a string that is not an action (which nothing grants). */
export function actionBit(action: string): number {
  return Object.hasOwn(ACTION_BITS, action) ? ACTION_BITS[action] : 0;
}

/** Parses a policy's action field, `read|write` or `*`, into a bit set. Throws with the reason. */
export function parseActions(field: string): number {
  if (field === '*') return ALL_ACTIONS;
  let bits = 0;
  for (const a of field.split('|')) {
    const bit = actionBit(a.trim());
    if (bit === 0) throw new Error(`unknown action "${a.trim()}" (expected ${ACTIONS.join(', ')} or *)`);
    bits |= bit;
  }
  return bits;
}

/** The canonical spelling of an action set (`*`, or names in ACTIONS order joined by `|`): what generated policy
 * text is written with, so no caller's spacing or line breaks reach the policy. */
export function formatActions(bits: number): string {
  if (bits === ALL_ACTIONS) return '*';
  return ACTIONS.filter((_, i) => bits & (1 << i)).join('|');
}

const STAR = 0;
const SELF_USER = 1;
const SELF_APP = 2;
const SELF_DEVICE = 3;
/** One pattern segment: a literal, or one of the markers above. */
type Segment = string | typeof STAR | typeof SELF_USER | typeof SELF_APP | typeof SELF_DEVICE;

export interface CompiledPattern {
  /** Segments after `obj://`, without a trailing `**`. */
  segments: readonly Segment[];
  /** Whether the pattern ended in `**`, which matches zero or more further segments. */
  rest: boolean;
}

const PREFIX = 'obj://';

/**
 * Compiles a resource pattern. Syntax, segment by segment after `obj://`:
 * a literal matches itself; `*` matches exactly one segment; `{user}` / `{app}` / `{device}` match exactly the
 * request's user id / app id / signing device's name (a request without a device matches no `{device}`); `**`, only
 * as the last segment, matches zero or more segments, so `users/{user}/**` covers the key
 * `users/alice` and everything below it. Wildcards never sit inside a segment (`*.jpg` is rejected) so what a
 * pattern covers is always visible in its shape. Throws with the reason.
 */
export function compilePattern(pattern: string): CompiledPattern {
  if (!pattern.startsWith(PREFIX)) throw new Error(`resource pattern must start with ${PREFIX}`);
  const parts = pattern.slice(PREFIX.length).split('/');
  const rest = parts[parts.length - 1] === '**';
  if (rest) parts.pop();
  const segments: Segment[] = [];
  for (const part of parts) {
    if (part === '*') segments.push(STAR);
    else if (part === '{user}') segments.push(SELF_USER);
    else if (part === '{app}') segments.push(SELF_APP);
    else if (part === '{device}') segments.push(SELF_DEVICE);
    else if (part === '**') throw new Error('** may only be the last segment');
    else if (part === '') throw new Error('empty path segment');
    else if (part === '.' || part === '..') throw new Error(`"${part}" segment`);
    else if (/[*{}]/.test(part)) throw new Error(`wildcards and placeholders must be a whole segment, not "${part}"`);
    else if (/[\u0000-\u001f\u007f]/.test(part)) throw new Error('control character in path');
    else segments.push(part);
  }
  const kind = segments[0];
  if (typeof kind === 'string' && !(RESOURCE_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`unknown resource kind "${kind}" (expected ${RESOURCE_KINDS.join(', ')})`);
  }
  if (kind === SELF_USER || kind === SELF_APP || kind === SELF_DEVICE) throw new Error('the resource kind cannot be a placeholder');
  return { segments, rest };
}

/**
 * Splits a requested resource into its segments, or returns null when it is not canonical: not `obj://`, empty
 * segments (`a//b`, a trailing `/`), or `.`/`..` segments. Those are denied outright, because the service behind the
 * check may normalise the path and reach a resource other than the one that was checked.
 */
export function splitResource(resource: string): string[] | null {
  if (!resource.startsWith(PREFIX)) return null;
  const segs = resource.slice(PREFIX.length).split('/');
  for (const s of segs) {
    if (s === '' || s === '.' || s === '..') return null;
  }
  return segs;
}

/** Whether the first `n` segments of `p` match the first `n` of `segs`. `device` is '' for a request without one,
 * which no segment of a canonical resource equals. */
function matchPrefix(p: CompiledPattern, segs: readonly string[], n: number, user: string, app: string, device: string): boolean {
  for (let i = 0; i < n; i++) {
    const s = p.segments[i];
    if (s === STAR) continue;
    if (s === SELF_USER) {
      if (segs[i] !== user) return false;
    } else if (s === SELF_APP) {
      if (segs[i] !== app) return false;
    } else if (s === SELF_DEVICE) {
      if (segs[i] !== device) return false;
    } else if (s !== segs[i]) return false;
  }
  return true;
}

export function matchPattern(p: CompiledPattern, segs: readonly string[], user: string, app: string, device: string): boolean {
  const n = p.segments.length;
  if (p.rest ? segs.length < n : segs.length !== n) return false;
  return matchPrefix(p, segs, n, user, app, device);
}

/**
 * Whether `p` matches every resource strictly below `segs`, whatever names and depth it has: only a pattern ending in
 * `**` can, when its segments before the `**` match a prefix of `segs`, or match all of `segs` and then one `*` (which
 * takes any first name below). Any other pattern leaves out some name or some depth below.
 */
export function matchesAllBelow(p: CompiledPattern, segs: readonly string[], user: string, app: string, device: string): boolean {
  const n = p.segments.length;
  const m = segs.length;
  if (!p.rest || n > m + 1) return false;
  if (n === m + 1 && p.segments[m] !== STAR) return false;
  return matchPrefix(p, segs, Math.min(n, m), user, app, device);
}

/**
 * Whether `p` matches some resource strictly below `segs`: its segments match all of `segs` and it goes deeper (more
 * segments, or a `**`), or its `**` starts above them. Names below can be anything, so the pattern's remaining
 * segments can always be met.
 */
export function matchesSomeBelow(p: CompiledPattern, segs: readonly string[], user: string, app: string, device: string): boolean {
  const n = p.segments.length;
  const m = segs.length;
  if (!p.rest && n <= m) return false;
  return matchPrefix(p, segs, Math.min(n, m), user, app, device);
}

/** The casbin matcher function `objMatch(r.obj, p.obj, r.user, r.app, r.dev)`. It compiles the pattern on every call:
 * it serves the reference evaluation, where clarity matters more than speed. */
export function objMatch(resource: string, pattern: string, user: string, app: string, device: string): boolean {
  const segs = splitResource(resource);
  return segs !== null && matchPattern(compilePattern(pattern), segs, user, app, device);
}

/** The casbin matcher function `actMatch(r.act, p.act)`. */
export function actMatch(action: string, field: string): boolean {
  return (actionBit(action) & parseActions(field)) !== 0;
}
