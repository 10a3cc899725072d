// The hosts file format ("<address> <name> [<alias>...]", "#" comments). Lines that do not fit are returned as
// problems with their line numbers, for the caller to report: these files are often written by other programs, so
// one odd line must not stop the server, but it must not vanish silently either. Entries are handed over one by one,
// addresses packed (ip.ts packIP), so that a 100,000-line file never exists as 100,000 objects at once.
import { packIP } from './ip.ts';
import { domainProblem } from './records.ts';

/** Calls `onEntry` with each usable line's packed address and lower-case names; returns "<label>:<line>: <reason>"
 * for every line it could not use. */
export function readHosts(text: string, label: string, onEntry: (packed: string, names: string[]) => void): string[] {
  const problems: string[] = [];
  let line = 0;
  for (let start = 0; start < text.length; ) {
    const nl = text.indexOf('\n', start);
    const end = nl < 0 ? text.length : nl;
    line++;
    const raw = text.slice(start, end);
    start = end + 1;
    const hash = raw.indexOf('#');
    const fields = (hash >= 0 ? raw.slice(0, hash) : raw).trim().split(/\s+/);
    if (fields[0] === '') continue;
    const packed = packIP(fields[0]);
    if (packed === undefined) {
      problems.push(`${label}:${line}: "${fields[0]}" is not an IP address`);
      continue;
    }
    if (fields.length === 1) {
      problems.push(`${label}:${line}: an address with no names`);
      continue;
    }
    const names: string[] = [];
    for (let i = 1; i < fields.length; i++) {
      const why = domainProblem(fields[i], false);
      if (why) problems.push(`${label}:${line}: ${why}`);
      else names.push(fields[i].toLowerCase().replace(/\.$/, ''));
    }
    if (names.length > 0) onEntry(packed, names);
  }
  return problems;
}
