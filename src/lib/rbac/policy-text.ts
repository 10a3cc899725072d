// Policy text: the CSV lines of the base policy and the generated tail, parsed and validated, and the rules a tail
// must keep. Apart from the enforcer because the scheduler, which writes the tail, must hold its lines to the same
// rules without loading casbin (about 10 MB in every process that imports it).
import { APP_ROLES, USER_ROLES } from './default-policy.ts';
import { compilePattern, isValidSubject, parseActions } from './model.ts';

export type PolicyType = 'p' | 'p2' | 'p3' | 'g' | 'g2' | 'g3';

export interface Rule {
  ptype: PolicyType;
  fields: readonly string[];
}

export interface PolicyRule extends Rule {
  /** 1-based line in the text it was parsed from. */
  line: number;
}

const FIELD_COUNT: Readonly<Record<PolicyType, number>> = { p: 3, p2: 3, p3: 3, g: 2, g2: 2, g3: 2 };

/** The device side's rule types: what a device may do by its role. Only the base policy has them. */
const DEVICE_SIDE: ReadonlySet<PolicyType> = new Set(['p3', 'g3']);

function isPolicyType(s: string): s is PolicyType {
  return Object.hasOwn(FIELD_COUNT, s);
}

/** Splits one CSV line. Fields may be double-quoted (with `""` for a quote) so that a resource path can hold a comma;
 * unquoted fields are trimmed. */
function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    if (line[i] === '"') {
      let field = '';
      let j = i + 1;
      for (;;) {
        if (j >= line.length) throw new Error('unterminated quote');
        if (line[j] === '"') {
          if (line[j + 1] !== '"') break;
          field += '"';
          j += 2;
        } else field += line[j++];
      }
      j++;
      while (line[j] === ' ' || line[j] === '\t') j++;
      if (j < line.length && line[j] !== ',') throw new Error('text after a closing quote');
      out.push(field);
      i = j;
    } else {
      const comma = line.indexOf(',', i);
      const end = comma === -1 ? line.length : comma;
      const field = line.slice(i, end).trim();
      if (field.includes('"')) throw new Error('quote inside an unquoted field');
      out.push(field);
      i = end;
    }
    if (i >= line.length) return out;
    i++;
  }
}

function quoteField(f: string): string {
  return /[",]|^\s|\s$/.test(f) ? `"${f.replaceAll('"', '""')}"` : f;
}

/** One rule as a canonical CSV line. */
export function ruleText(r: Rule): string {
  return [r.ptype, ...r.fields.map(quoteField)].join(', ');
}

/** Throws with the reason when `fields` do not make a valid rule of type `ptype`. */
export function validateRule(ptype: PolicyType, fields: readonly string[]): void {
  if (fields.length !== FIELD_COUNT[ptype]) {
    const names = ptype.startsWith('p') ? 'subject, resource, actions' : 'member, role';
    throw new Error(`"${ptype}" takes ${FIELD_COUNT[ptype]} fields (${names}), got ${fields.length}`);
  }
  const names = ptype.startsWith('p') ? fields.slice(0, 1) : fields;
  for (const n of names) {
    if (!isValidSubject(n)) throw new Error(`"${n}" is not a valid subject name (letters, digits, ".", "_", "-")`);
  }
  if (ptype.startsWith('p')) {
    try {
      compilePattern(fields[1]);
    } catch (e) {
      throw new Error(`bad resource pattern "${fields[1]}": ${(e as Error).message}`);
    }
    parseActions(fields[2]);
  } else if (fields[0] === fields[1]) {
    throw new Error(`"${fields[0]}" cannot be its own role`);
  }
}

/**
 * Parses and validates policy CSV: one rule a line (`p`/`p2`/`p3`: subject, resource pattern, actions; `g`/`g2`/`g3`:
 * member, role), blank lines and `#` comments ignored. A malformed line throws an Error that starts
 * `<source> line <n>: <reason>`, so a bad policy is rejected whole instead of loading with a rule silently missing.
 */
export function parsePolicyCsv(text: string, source = 'policy'): PolicyRule[] {
  const rules: PolicyRule[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const trimmed = lines[i].trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    try {
      const [ptype, ...fields] = splitCsvLine(trimmed);
      if (!isPolicyType(ptype)) throw new Error(`unknown rule type "${ptype}" (expected p, p2, p3, g, g2 or g3)`);
      validateRule(ptype, fields);
      rules.push({ ptype, fields, line: i + 1 });
    } catch (e) {
      throw new Error(`${source} line ${i + 1}: ${(e as Error).message}: ${trimmed}`);
    }
  }
  return rules;
}

/** Every name a policy uses, as a subject, a member or a role, on the user or the app side: the names a user or an
 * app may not take. The device side's names are device roles, a namespace of their own that no tail line reaches. */
export function policyNames(rules: readonly Rule[]): Set<string> {
  return new Set(rules.filter((r) => !DEVICE_SIDE.has(r.ptype)).flatMap((r) => (r.ptype.startsWith('p') ? [r.fields[0]] : r.fields)));
}

/**
 * Why a tail may not contain `r`, or null when it may. `reserved` is every name of the base policy: the tail adds
 * users, apps, their grants and tail-defined roles, and may not change what the base policy says. So it may not grant
 * to, or give a role to, a base name, and of the base roles it may assign only the user roles (`USER_ROLES`, with
 * `g`) and `app` (with `g2`): nothing in the tail can make a subject kernel, frame or a trusted UI. Nor may it say
 * anything on the device side (`p3`, `g3`), which bounds what a device's kernel may do by the device's role.
 */
export function tailViolation(r: Rule, reserved: ReadonlySet<string>): string | null {
  if (DEVICE_SIDE.has(r.ptype)) return `what a device may do by its role is the base policy's alone; the tail cannot hold ${r.ptype} lines`;
  if (r.ptype === 'p' || r.ptype === 'p2') {
    const sub = r.fields[0];
    return reserved.has(sub) ? `"${sub}" is defined by the base policy; the tail cannot grant it more` : null;
  }
  const [member, role] = r.fields;
  if (reserved.has(member)) return `"${member}" is defined by the base policy; the tail cannot give it roles`;
  const assignable: readonly string[] = r.ptype === 'g' ? USER_ROLES : APP_ROLES;
  if (reserved.has(role) && !assignable.includes(role)) {
    return `the tail cannot assign the base role "${role}" with ${r.ptype} (allowed: ${assignable.join(', ')})`;
  }
  return null;
}
