// litmus (the Debian package), the WebDAV server test suite: running it and reading its report, for the tests that
// put a WebDAV endpoint through it.
import { execFile } from 'node:child_process';

export interface LitmusTest {
  num: number;
  name: string;
  result: string;
  detail: string;
  warnings: string[];
}

export interface LitmusGroup {
  tests: LitmusTest[];
  summary: { run: number; passed: number; failed: number } | null;
}

/**
 * litmus's report, per group. It writes each test's name, then "\r", the name again and the result; a warning
 * interrupts the line and the result follows on a line of dots; a failure's explanation may run over several lines.
 */
export function parseLitmus(output: string): Map<string, LitmusGroup> {
  const groups = new Map<string, LitmusGroup>();
  let group: LitmusGroup | null = null;
  let test: LitmusTest | null = null;
  let tail: 'detail' | 'warning' | null = null;
  for (const raw of output.split('\n')) {
    const line = raw.slice(raw.lastIndexOf('\r') + 1);
    const running = /^-> running `(\w+)':/.exec(line);
    const summary = /^<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed/.exec(line);
    const start = /^\s*(\d+)\.\s(\w+)\.*\s?(.*)$/.exec(line);
    const after = /^\s+\.+\s(.*)$/.exec(line);
    if (running) {
      group = { tests: [], summary: null };
      groups.set(running[1], group);
      test = null;
    } else if (summary && group) {
      group.summary = { run: Number(summary[2]), passed: Number(summary[3]), failed: Number(summary[4]) };
      test = null;
    } else if (start && group) {
      test = { num: Number(start[1]), name: start[2], result: '', detail: '', warnings: [] };
      group.tests.push(test);
      tail = null;
      take(start[3]);
    } else if (after && test) {
      take(after[1]);
    } else if (test && tail === 'detail') {
      test.detail += `\n${line}`;
    } else if (test && tail === 'warning') {
      test.warnings[test.warnings.length - 1] += `\n${line}`;
    }
  }
  return groups;

  function take(rest: string): void {
    if (!test || rest === '') return;
    const warning = /^WARNING: (.*)$/.exec(rest);
    if (warning) {
      test.warnings.push(warning[1]);
      tail = 'warning';
      return;
    }
    const result = /^(pass|FAIL|SKIPPED|XFAIL|OOPS)\b\s*(.*)$/.exec(rest);
    if (result) {
      test.result = result[1];
      test.detail = result[2];
      tail = 'detail';
    }
  }
}

/** Runs litmus's `groups` against `url` (with Basic credentials when given), in `cwd` (where it writes its logs). */
export function runLitmus(url: string, cwd: string, groups: readonly string[], credentials?: { user: string; password: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const args = ['-k', url, ...(credentials ? [credentials.user, credentials.password] : [])];
    execFile('litmus', args, { cwd, env: { ...process.env, TESTS: groups.join(' ') }, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(new Error('litmus is not installed (Debian/Ubuntu: apt-get install litmus)'));
      else if (stdout === '') reject(new Error(`litmus printed nothing: ${err?.message ?? ''} ${stderr}`));
      else resolve(stdout);
    });
  });
}


/** Every test of `name` that did not pass cleanly, in litmus's words; empty when the group passed. */
export function litmusProblems(groups: Map<string, LitmusGroup>, name: string, output: string): string[] {
  const group = groups.get(name);
  if (!group) return [`litmus did not run the ${name} group:\n${output}`];
  const problems = group.tests
    .filter((t) => t.result !== 'pass' || t.warnings.length > 0)
    .map((t) => `${t.num}. ${t.name}: ${t.result || 'no result'} ${t.detail}${t.warnings.map((w) => `\n   WARNING: ${w}`).join('')}`);
  if (!group.summary) problems.push(`no summary for ${name}`);
  else if (group.summary.failed !== 0 || group.summary.run !== group.tests.length) problems.push(`summary: ${JSON.stringify(group.summary)}, parsed ${group.tests.length} tests`);
  if (group.tests.length <= 3) problems.push(`${name} ran only ${group.tests.length} tests`);
  return problems;
}
