// The RBAC enforcer. The policy is the base policy (default-policy.ts) plus a generated tail, both casbin CSV for the
// model in model.ts. `check` does not run casbin's interpreter: casbin evaluates its matcher once per policy line,
// about 1.4 ms per side at 1,000 lines, and every kRPC call is checked. Instead each policy change compiles, for
// every subject, the list of grants it holds directly or through its roles, and a check scans only the requester's
// list. The meaning is casbin's: `casbinReference` runs the same model and policy through stock casbin, and the tests
// hold the two to the same answers.
import { EnforceContext, newEnforcer, newModelFromString, StringAdapter } from 'casbin';
import { DEFAULT_POLICY, USER_ROLES } from './default-policy.ts';
import { type PolicyType, type Rule, parsePolicyCsv, policyNames, ruleText, tailViolation } from './policy-text.ts';
import {
  RBAC_MODEL,
  type AccessRequest,
  actMatch,
  actionBit,
  compilePattern,
  isValidSubject,
  matchPattern,
  matchesAllBelow,
  matchesSomeBelow,
  objMatch,
  parseActions,
  splitResource,
  type CompiledPattern,
} from './model.ts';

export { parsePolicyCsv, ruleText, type PolicyRule, type PolicyType, type Rule } from './policy-text.ts';
export { accessRequest, requesterText, type AccessRequest, type RequestDevice } from './model.ts';

/** Which rule allowed each side of a request (as its CSV line), or null where no rule did. `deviceRule` is
 * undefined for a request without a device, which the device side does not bound. */
export interface AccessDecision {
  allowed: boolean;
  userRule: string | null;
  appRule: string | null;
  deviceRule?: string | null;
}

/**
 * The stock casbin evaluation of `RBAC_MODEL` over `policyCsv` (user side AND app side, AND the device side for a
 * request with a device; `enforceSync` each). It is the executable statement of what a policy means; `Rbac.check`
 * must agree with it on every request.
 */
export async function casbinReference(policyCsv: string): Promise<(req: AccessRequest) => boolean> {
  const rules = parsePolicyCsv(policyCsv);
  const e = await newEnforcer(newModelFromString(RBAC_MODEL), new StringAdapter(rules.map(ruleText).join('\n')));
  await e.addFunction('objMatch', objMatch);
  await e.addFunction('actMatch', actMatch);
  const appSide = new EnforceContext('r', 'p2', 'e', 'm2');
  const deviceSide = new EnforceContext('r', 'p3', 'e', 'm3');
  return (req) => {
    const r = [req.user, req.app, req.device?.name ?? '', req.device?.role ?? '', req.resource, req.action];
    return e.enforceSync(...r) && e.enforceSync(appSide, ...r) && (req.device === undefined || e.enforceSync(deviceSide, ...r));
  };
}

interface Grant {
  text: string;
  actions: number;
  pattern: CompiledPattern;
}

/** Subject → every grant it holds, its own first, then its roles' in breadth-first order. */
type SideIndex = ReadonlyMap<string, readonly Grant[]>;

interface Compiled {
  user: SideIndex;
  app: SideIndex;
  device: SideIndex;
  /** Compiled patterns of this policy, reused by the next compile for the lines it keeps. */
  patterns: ReadonlyMap<string, CompiledPattern>;
}

function compilePolicy(rules: readonly Rule[], previous: ReadonlyMap<string, CompiledPattern>): Compiled {
  const patterns = new Map<string, CompiledPattern>();
  const pattern = (text: string) => {
    const p = patterns.get(text) ?? previous.get(text) ?? compilePattern(text);
    patterns.set(text, p);
    return p;
  };
  return {
    user: compileSide(rules, 'p', 'g', pattern),
    app: compileSide(rules, 'p2', 'g2', pattern),
    device: compileSide(rules, 'p3', 'g3', pattern),
    patterns,
  };
}

function compileSide(
  rules: readonly Rule[],
  ptype: PolicyType,
  gtype: PolicyType,
  pattern: (text: string) => CompiledPattern,
): SideIndex {
  const direct = new Map<string, Grant[]>();
  const roles = new Map<string, string[]>();
  const push = <T>(m: Map<string, T[]>, k: string, v: T) => {
    const list = m.get(k);
    if (list === undefined) m.set(k, [v]);
    else list.push(v);
  };
  for (const r of rules) {
    if (r.ptype === ptype) {
      push(direct, r.fields[0], { text: ruleText(r), actions: parseActions(r.fields[2]), pattern: pattern(r.fields[1]) });
    } else if (r.ptype === gtype) {
      push(roles, r.fields[0], r.fields[1]);
    }
  }
  const index = new Map<string, Grant[]>();
  for (const name of new Set([...direct.keys(), ...roles.keys()])) {
    const order = [name];
    const seen = new Set(order);
    for (let i = 0; i < order.length; i++) {
      for (const role of roles.get(order[i]) ?? []) {
        if (!seen.has(role)) {
          seen.add(role);
          order.push(role);
        }
      }
    }
    const grants = order.flatMap((n) => direct.get(n) ?? []);
    if (grants.length > 0) index.set(name, grants);
  }
  return index;
}

/** The first of `name`'s grants that has the action and whose pattern `match`es: `matchPattern` for the resource
 * itself, `matchesAllBelow` for everything under it, `matchesSomeBelow` for something under it. */
function findGrant(
  side: SideIndex,
  name: string,
  segs: string[],
  bit: number,
  req: AccessRequest,
  match: typeof matchPattern = matchPattern,
): Grant | null {
  const grants = side.get(name);
  if (grants === undefined) return null;
  const device = req.device?.name ?? '';
  for (const g of grants) {
    if ((g.actions & bit) !== 0 && match(g.pattern, segs, req.user, req.app, device)) return g;
  }
  return null;
}

/** The user whose own resources a pattern names (`config/users/<u>/…`, `dfs/<volume>/home/<u>/…`, `user/<u>/…`),
 * if it names one literally. */
function ownerOf(pattern: CompiledPattern): string | null {
  const s = pattern.segments;
  const owner =
    s[0] === 'config' && s[1] === 'users' ? s[2] : s[0] === 'dfs' && s[2] === 'home' ? s[3] : s[0] === 'user' ? s[1] : null;
  return typeof owner === 'string' ? owner : null;
}

/** Whether a tail rule grants one of `users` anything, or grants anyone something on their own resources. */
function concernsRemoved(r: Rule, users: ReadonlySet<string>): boolean {
  if (users.size === 0) return false;
  if (r.ptype === 'g') return users.has(r.fields[0]) || users.has(r.fields[1]);
  if (r.ptype === 'g2') return false;
  if (r.ptype === 'p' && users.has(r.fields[0])) return true;
  const owner = ownerOf(compilePattern(r.fields[1]));
  return owner !== null && users.has(owner);
}

/** The tail in force: without what the user records remove or override, followed by the user records' roles. */
function effectiveTail(tail: readonly Rule[], roles: ReadonlyMap<string, string>, removed: ReadonlySet<string>): Rule[] {
  const userRoles: readonly string[] = USER_ROLES;
  const kept = tail.filter(
    (r) => !concernsRemoved(r, removed) && !(r.ptype === 'g' && roles.has(r.fields[0]) && userRoles.includes(r.fields[1])),
  );
  return [...kept, ...[...roles].map(([user, role]): Rule => ({ ptype: 'g', fields: [user, role] }))];
}

/**
 * The enforcer. The policy in force is the base policy, then the generated tail (`loadTail`), then the user records
 * (`setUserRole`, `removeUser`), which override the tail for the users they name. System-config feeds it from two
 * watches, `system/rbac/policy` and `users/<u>/settings`, that can arrive in either order; because the user records
 * are kept apart from the tail, a tail generated before a role change or a deletion cannot undo it.
 */
export class Rbac {
  readonly #base: readonly Rule[];
  /** Every name the base policy uses, as subject, member or role, on the user or the app side. */
  readonly #reserved: ReadonlySet<string>;
  #tail: readonly Rule[] = [];
  #roles: ReadonlyMap<string, string> = new Map();
  #removed: ReadonlySet<string> = new Set();
  #state: Compiled;

  private constructor(base: readonly Rule[]) {
    this.#base = base;
    this.#reserved = policyNames(base);
    this.#state = compilePolicy(base, new Map());
  }

  /** The base policy plus `extraPolicyCsv` as the tail (see `loadTail` for what a tail may contain). */
  static async create(extraPolicyCsv?: string): Promise<Rbac> {
    const rbac = new Rbac(parsePolicyCsv(DEFAULT_POLICY, 'base policy'));
    if (extraPolicyCsv !== undefined) rbac.loadTail(extraPolicyCsv);
    return rbac;
  }

  /** Whether the user AND the app (AND, for a kernel service token, its device) may perform `action` on `resource`.
   * Synchronous and allocation-light; an unknown action, a non-canonical resource or an unknown subject is simply
   * denied. */
  check(req: AccessRequest): boolean {
    return this.#everySide(req, matchPattern);
  }

  /** Whether the user side, the app side and (for a request with a device) the device side each hold a grant of the
   * action whose pattern `match`es the resource. */
  #everySide(req: AccessRequest, match: typeof matchPattern): boolean {
    const bit = actionBit(req.action);
    const segs = bit === 0 ? null : splitResource(req.resource);
    if (segs === null) return false;
    const s = this.#state;
    return (
      findGrant(s.user, req.user, segs, bit, req, match) !== null &&
      findGrant(s.app, req.app, segs, bit, req, match) !== null &&
      (req.device === undefined || findGrant(s.device, req.device.role, segs, bit, req, match) !== null)
    );
  }

  /**
   * Whether the user AND the app (AND a kernel service's device) may perform `action` on every resource strictly below
   * `resource`, at any depth and under any name, answered from the policy alone: each side must hold one grant that
   * covers the whole subtree, a pattern ending in `**` whose segments before it match `resource` or one of its
   * ancestors, or `resource` and a `*`.
   * It never says yes where `check` would refuse some resource below. It may say no where every resource below is in
   * fact allowed, by grants that cover the subtree only together or that stop at a depth (a pattern ending in `*`):
   * a caller that gets false checks the resources that exist, one by one.
   */
  checkBelow(req: AccessRequest): boolean {
    return this.#everySide(req, matchesAllBelow);
  }

  /**
   * Whether the user AND the app (AND a kernel service's device) each hold a grant of `action` on some resource
   * strictly below `resource`, answered from the policy alone: what lets a caller see the folders on the way to what
   * they were granted (a WebDAV client mounts a volume's root and lists it before it goes to the user's home). It says
   * nothing of whether anything there exists.
   */
  checkSomeBelow(req: AccessRequest): boolean {
    return this.#everySide(req, matchesSomeBelow);
  }

  /** `check`, with the rule that allowed each side: for audit records and for telling a user which side refused. */
  explain(req: AccessRequest): AccessDecision {
    const bit = actionBit(req.action);
    const segs = bit === 0 ? null : splitResource(req.resource);
    const bounded = req.device !== undefined;
    if (segs === null) return { allowed: false, userRule: null, appRule: null, ...(bounded ? { deviceRule: null } : {}) };
    const s = this.#state;
    const u = findGrant(s.user, req.user, segs, bit, req);
    const a = findGrant(s.app, req.app, segs, bit, req);
    const d = bounded ? findGrant(s.device, req.device!.role, segs, bit, req) : null;
    return {
      allowed: u !== null && a !== null && (!bounded || d !== null),
      userRule: u?.text ?? null,
      appRule: a?.text ?? null,
      ...(bounded ? { deviceRule: d?.text ?? null } : {}),
    };
  }

  /**
   * Replaces the generated tail, atomically: on any error nothing changes. The tail adds users, apps, their grants
   * and tail-defined roles; it may not change what the base policy says. So it may not grant to, or give a role to,
   * any name the base policy uses, and of the base roles it may assign only the user roles (`USER_ROLES`, with `g`)
   * and `app` (with `g2`): nothing in the tail can make a subject kernel, frame or a trusted UI.
   */
  loadTail(csv: string): void {
    const rules = parsePolicyCsv(csv, 'tail');
    for (const r of rules) {
      const why = tailViolation(r, this.#reserved);
      if (why !== null) throw new Error(`tail line ${r.line}: ${why}: ${ruleText(r)}`);
    }
    this.#commit(
      rules.map(({ ptype, fields }) => ({ ptype, fields })),
      this.#roles,
      this.#removed,
    );
  }

  /**
   * Gives a user exactly one user role (`USER_ROLES`), in force before it returns. It overrides any user role the
   * tail gives them (tail-defined roles are kept) and undoes an earlier `removeUser`. Takes a string because roles
   * arrive from stored JSON; a name of the base policy or an unknown role throws and changes nothing.
   */
  setUserRole(user: string, role: string): void {
    if (!isValidSubject(user)) throw new Error(`"${user}" is not a valid user id`);
    if (this.#reserved.has(user)) throw new Error(`"${user}" is a name of the base policy, not a user`);
    if (!(USER_ROLES as readonly string[]).includes(role)) {
      throw new Error(`"${role}" is not a user role (expected ${USER_ROLES.join(', ')})`);
    }
    const removed = new Set(this.#removed);
    removed.delete(user);
    this.#commit(this.#tail, new Map(this.#roles).set(user, role), removed);
  }

  /**
   * Takes every grant away from a user, in force before it returns: their role, every tail rule that grants them
   * anything (`p` lines with them as subject, `g` lines with them as member or role), and every tail grant, to
   * anyone, on their own resources (`config/users/<user>/…`, `dfs/<volume>/home/<user>/…`, `user/<user>/…`), so a
   * user created later under the same name inherits nothing. The user stays removed, whatever later tails say,
   * until `setUserRole` names them again. Never throws: a name that cannot be a user holds nothing to remove, and a
   * caller cleaning up after a deleted record need not guard the call.
   */
  removeUser(user: string): void {
    if (!isValidSubject(user) || this.#reserved.has(user)) return;
    const gone = new Set([user]);
    const roles = new Map(this.#roles);
    roles.delete(user);
    this.#commit(
      this.#tail.filter((r) => !concernsRemoved(r, gone)),
      roles,
      new Set(this.#removed).add(user),
    );
  }

  /** The whole policy in force: the base policy, then the tail as it stands after the user records, as CSV. */
  policyText(): string {
    const tail = effectiveTail(this.#tail, this.#roles, this.#removed);
    return `${DEFAULT_POLICY}\n# Generated tail and user roles\n${tail.map((r) => `${ruleText(r)}\n`).join('')}`;
  }

  #commit(tail: readonly Rule[], roles: ReadonlyMap<string, string>, removed: ReadonlySet<string>): void {
    const state = compilePolicy([...this.#base, ...effectiveTail(tail, roles, removed)], this.#state.patterns);
    this.#tail = tail;
    this.#roles = roles;
    this.#removed = removed;
    this.#state = state;
  }
}
