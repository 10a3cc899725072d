// The YAML reader every cyfs-ns configuration section is parsed with: typed values out of the YAML tree, each problem
// recorded with its line and key path, so one load reports every mistake at once.
import { LineCounter, isMap, isScalar, isSeq, type Node as YamlNode, type Pair } from 'yaml';

export type { YamlNode };

/** Reads typed values out of the YAML tree, recording every problem with its line. */
export class Reader {
  private readonly found: { line: number; text: string }[] = [];

  constructor(private readonly file: string, private readonly lines: LineCounter) {}

  /** Every problem, in file order. */
  get problems(): string[] {
    return [...this.found].sort((a, b) => a.line - b.line).map((p) => p.text);
  }

  line(node: YamlNode | Pair | null | undefined): number {
    const range = node && 'range' in node ? node.range : node && 'key' in node ? (node.key as YamlNode | null)?.range : undefined;
    return range ? this.lines.linePos(range[0]).line : 0;
  }

  err(node: YamlNode | null | undefined, path: string, why: string): void {
    const line = this.line(node);
    this.found.push({ line, text: `${this.file}${line ? `:${line}` : ''}: ${path}: ${why}` });
  }

  /** The pairs of a mapping, checking every key against `allowed`; undefined (with an error) when not a mapping. */
  map(node: YamlNode | null | undefined, path: string, allowed: readonly string[]): Map<string, YamlNode | null> | undefined {
    if (!isMap(node)) {
      this.err(node, path, 'must be a mapping of keys to values');
      return undefined;
    }
    const out = new Map<string, YamlNode | null>();
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (key === undefined) {
        this.err(pair.key as YamlNode, path, 'keys must be plain names');
        continue;
      }
      if (!allowed.includes(key)) {
        this.err(pair.key as YamlNode, path ? `${path}.${key}` : key, `unknown key (known here: ${allowed.join(', ')})`);
        continue;
      }
      out.set(key, (pair.value as YamlNode | null) ?? null);
    }
    return out;
  }

  seq(node: YamlNode | null | undefined, path: string): (YamlNode | null)[] | undefined {
    if (!isSeq(node)) {
      this.err(node, path, 'must be a list');
      return undefined;
    }
    return node.items as (YamlNode | null)[];
  }

  scalar(node: YamlNode | null | undefined): unknown {
    return isScalar(node) ? node.value : undefined;
  }

  str(node: YamlNode | null | undefined, path: string): string | undefined {
    const v = this.scalar(node);
    if (typeof v !== 'string' || v === '') {
      this.err(node, path, typeof v === 'number' ? 'must be text (quote it)' : 'must be non-empty text');
      return undefined;
    }
    return v;
  }

  int(node: YamlNode | null | undefined, path: string, min: number, max: number): number | undefined {
    const v = this.scalar(node);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.err(node, path, `must be a whole number from ${min} to ${max}`);
      return undefined;
    }
    return v;
  }

  num(node: YamlNode | null | undefined, path: string, min: number, max: number): number | undefined {
    const v = this.scalar(node);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      this.err(node, path, `must be a number from ${min} to ${max}`);
      return undefined;
    }
    return v;
  }

  bool(node: YamlNode | null | undefined, path: string): boolean | undefined {
    const v = this.scalar(node);
    if (typeof v !== 'boolean') {
      this.err(node, path, 'must be true or false');
      return undefined;
    }
    return v;
  }

  oneOf<T extends string>(node: YamlNode | null | undefined, path: string, options: readonly T[]): T | undefined {
    const v = this.scalar(node);
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
      this.err(node, path, `must be one of ${options.join(', ')}`);
      return undefined;
    }
    return v as T;
  }

  strList(node: YamlNode | null | undefined, path: string): string[] {
    const items = this.seq(node, path);
    if (!items) return [];
    const out: string[] = [];
    items.forEach((item, i) => {
      const s = this.str(item, `${path}[${i}]`);
      if (s !== undefined) out.push(s);
    });
    return out;
  }
}
