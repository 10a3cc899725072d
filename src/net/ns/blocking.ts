// Block lists and per-client policies. Lists are read in the formats people actually download: hosts files
// ("0.0.0.0 ads.example"), plain domain lists, wildcard domain lists ("*.ads.example") and the AdGuard/Adblock Plus
// DNS subset ("||ads.example^", "@@||ok.example^" exceptions). Matching runs on the hashes the query parse already
// computed, so a query that no rule mentions costs a few integer set lookups and never has its name built.
import { readFileSync } from 'node:fs';
import type { BlockAnswer, NsConfig } from './config.ts';
import { CidrMap } from './ip.ts';
import { domainProblem } from './records.ts';
import { hashName, normalizeName } from './wire.ts';

/** Rule bits per name. */
export const RULE = {
  /** This name only (hosts and plain domain lines). */
  EXACT: 1,
  /** This name and every name below it (`||name^`, configured deny). */
  TREE: 2,
  /** Names below this one, not itself (`*.name`). */
  BELOW: 4,
  /** Exception: this name and every name below it are never blocked (`@@||name^`, configured allow). */
  ALLOW: 8,
} as const;

/** Addresses a hosts-format block list points names at; any other address is a redirect, not a block. */
const NULL_ADDRESSES = new Set(['0.0.0.0', '127.0.0.1', '::', '::1', '0:0:0:0:0:0:0:0', '0:0:0:0:0:0:0:1']);
/** Names that hosts-format lists carry for the machine itself; blocking them would break the host. */
const BOILERPLATE = new Set([
  'localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback', 'ip6-localnet', 'ip6-mcastprefix',
  'ip6-allnodes', 'ip6-allrouters', 'ip6-allhosts', '0.0.0.0',
]);

export class RuleSet {
  private rules = new Map<string, number>();
  private hashes = new Set<number>();
  /** Lines that were not rules cyfs-ns can apply, "<label>:<line>: <reason>". */
  readonly problems: string[] = [];
  /** Boilerplate host names skipped (localhost and friends). */
  skipped = 0;

  constructor(readonly label: string) {}

  get size(): number {
    return this.rules.size;
  }

  add(name: string, bits: number): void {
    this.rules.set(name, (this.rules.get(name) ?? 0) | bits);
    this.hashes.add(hashName(name));
  }

  /** Bits for the name whose hash is `h`, or 0; `name` builds the name only when the hash is known here. */
  bitsFor(h: number, name: () => string): number {
    if (!this.hashes.has(h)) return 0;
    return this.rules.get(name()) ?? 0;
  }

  /** Parses list text, one rule per line, each line's format recognised on its own. */
  static parse(text: string, label: string): RuleSet {
    const set = new RuleSet(label);
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const problem = set.parseLine(lines[i].trim());
      if (problem) set.problems.push(`${label}:${i + 1}: ${problem}`);
    }
    return set;
  }

  private domain(text: string, bits: number): string | undefined {
    const why = domainProblem(text, false);
    if (why) return why;
    this.add(normalizeName(text), bits);
    return undefined;
  }

  private parseLine(line: string): string | undefined {
    if (line === '' || line.startsWith('#') || line.startsWith('!') || (line.startsWith('[') && line.endsWith(']'))) return undefined;
    if (line.startsWith('@@')) {
      const m = /^@@\|\|([^/^$|*]+)\^?\|?$/.exec(line);
      return m ? this.domain(m[1], RULE.ALLOW) : `exception "${line}" is not of the form @@||domain^`;
    }
    if (line.startsWith('||')) {
      const m = /^\|\|([^/^$|*]+)\^?\|?$/.exec(line);
      if (m) return this.domain(m[1], RULE.TREE);
      return line.includes('$') ? `rule "${line}" has modifiers ($...), which apply to browsers, not DNS` : `rule "${line}" is not of the form ||domain^`;
    }
    if (line.includes('##') || line.includes('#@#') || line.includes('#?#')) return 'cosmetic (element hiding) rules do not apply to DNS';
    if (line.startsWith('/') && line.endsWith('/') && line.length > 1) return 'regular-expression rules are not supported';
    const hash = line.indexOf('#');
    const fields = (hash >= 0 ? line.slice(0, hash) : line).trim().split(/\s+/);
    if (fields.length >= 2) {
      // hosts format
      if (!NULL_ADDRESSES.has(fields[0])) return `"${fields[0]}" points names at an address; only 0.0.0.0, 127.0.0.1, :: and ::1 lines block`;
      const problems: string[] = [];
      for (const n of fields.slice(1)) {
        if (BOILERPLATE.has(n.toLowerCase())) {
          this.skipped++;
          continue;
        }
        const p = this.domain(n, RULE.EXACT);
        if (p) problems.push(p);
      }
      return problems.length > 0 ? problems.join('; ') : undefined;
    }
    const word = fields[0];
    if (word.startsWith('*.')) return this.domain(word.slice(2), RULE.BELOW);
    return this.domain(word, RULE.EXACT);
  }
}

export interface Policy {
  name: string;
  /** Checked in order; the policy's own allow/deny come first. */
  sets: RuleSet[];
  answer: BlockAnswer;
  ttl: number;
}

/**
 * Whether a policy blocks a name. `suffixes` are its hashes longest first; `suffix(i)` builds the name from its i-th
 * label on, and is only called when some list has a rule with that suffix's hash. An exception anywhere wins.
 */
export function blocks(policy: Policy, suffixes: readonly number[], suffix: (i: number) => string): boolean {
  let blocked = false;
  for (const set of policy.sets) {
    for (let i = 0; i < suffixes.length; i++) {
      const bits = set.bitsFor(suffixes[i], () => suffix(i));
      if (bits === 0) continue;
      if (bits & RULE.ALLOW) return false;
      if (bits & RULE.TREE || (i === 0 && bits & RULE.EXACT) || (i > 0 && bits & RULE.BELOW)) blocked = true;
    }
  }
  return blocked;
}

/** Block lists, policies and the client map, built from configuration. */
export class Blocking {
  readonly lists = new Map<string, RuleSet>();
  private policies = new Map<string, Policy>();
  private clients = new CidrMap<Policy>();
  private byAddress = new Map<string, Policy>();
  readonly defaultPolicy: Policy;
  /** Whether any policy has any rule at all: when none does, queries skip blocking entirely. */
  readonly active: boolean;

  /** Reads the list files; throws when one cannot be read (a configured list that is missing is an error). */
  constructor(cfg: NsConfig['blocking']) {
    for (const l of cfg.lists) {
      let text: string;
      try {
        text = readFileSync(l.file, 'utf8');
      } catch (err) {
        throw new Error(`block list "${l.name}" (${l.file}): ${(err as Error).message}`);
      }
      this.lists.set(l.name, RuleSet.parse(text, l.file));
    }
    const own = (label: string, allow: readonly string[], deny: readonly string[]) => {
      const s = new RuleSet(label);
      for (const d of allow) s.add(d, RULE.ALLOW);
      for (const d of deny) s.add(d, RULE.TREE);
      return s;
    };
    const global = own('blocking', cfg.allow, cfg.deny);
    const make = (name: string, lists: readonly string[], allow: readonly string[], deny: readonly string[], answer: BlockAnswer): Policy => ({
      name,
      sets: [own(`policy ${name}`, allow, deny), global, ...lists.map((l) => this.lists.get(l)!)].filter((s) => s.size > 0),
      answer,
      ttl: cfg.ttl,
    });
    for (const p of cfg.policies) this.policies.set(p.name, make(p.name, p.lists, p.allow, p.deny, p.answer));
    this.defaultPolicy = this.policies.get('default') ?? make('default', cfg.lists.map((l) => l.name), [], [], cfg.answer);
    for (const c of cfg.clients) this.clients.add(c.cidr, c.policy === 'default' ? this.defaultPolicy : this.policies.get(c.policy)!);
    this.active = [this.defaultPolicy, ...this.policies.values()].some((p) => p.sets.length > 0);
  }

  /** The policy for a client address: the longest configured prefix containing it, else the default. */
  policyFor(address: string): Policy {
    if (this.clients.size === 0) return this.defaultPolicy;
    let p = this.byAddress.get(address);
    if (p === undefined) {
      // Clients are few on a home network; the bound only matters under a spoofed-source flood.
      if (this.byAddress.size >= 4096) this.byAddress.clear();
      p = this.clients.lookup(address) ?? this.defaultPolicy;
      this.byAddress.set(address, p);
    }
    return p;
  }

  /** Every list line that could not be used, for the log and statistics. */
  problems(): string[] {
    return [...this.lists.values()].flatMap((l) => l.problems);
  }
}
