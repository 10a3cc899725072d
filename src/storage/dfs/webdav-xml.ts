// A small, strict, namespace-aware XML parser for WebDAV request bodies (PROPFIND, PROPPATCH, LOCK), and the
// serializer that turns a property's content back into text. The project has no XML library; request bodies are
// small and need only elements, attributes, namespaces, text, CDATA and character references. Anything a WebDAV body
// never needs and that could be abused (DTDs, entity declarations, other encodings) is refused, and the parser is a
// loop with an explicit stack, so nesting depth is bounded by a limit rather than by the call stack.

export const DAV_NS = 'DAV:';
const XML_NS = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';

export interface XmlAttr {
  ns: string;
  local: string;
  prefix: string;
  value: string;
}

export interface XmlElement {
  kind: 'element';
  ns: string;
  local: string;
  prefix: string;
  attrs: XmlAttr[];
  children: XmlNode[];
}

export interface XmlText {
  kind: 'text';
  text: string;
}

export type XmlNode = XmlElement | XmlText;

export interface XmlLimits {
  /** Deepest element nesting accepted; the document element is depth 1. */
  maxDepth: number;
}

/** A body the parser refused; `status` is the HTTP status the handler answers with (400, or 415 for an encoding). */
export class XmlError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 413 | 415 = 400,
  ) {
    super(message);
    this.name = 'XmlError';
  }
}

// Approximates XML 1.0's NameStartChar / NameChar with Unicode classes; exact enough to refuse garbage.
const NCNAME = /^[\p{L}_][\p{L}\p{N}\p{Mn}\p{Mc}_.\-\u00B7]*$/u;
// Characters XML 1.0 forbids anywhere in a document (after line ends are normalised, \r cannot occur literally).
// With the u flag a surrogate range matches only a lone surrogate, never half of a pair.
const FORBIDDEN_CHAR = /[\x00-\x08\x0B\x0C\x0E-\x1F\uD800-\uDFFF\uFFFE\uFFFF]/u;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function validChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

function splitQName(qname: string): { prefix: string; local: string } {
  const colon = qname.indexOf(':');
  const prefix = colon < 0 ? '' : qname.slice(0, colon);
  const local = colon < 0 ? qname : qname.slice(colon + 1);
  if ((colon >= 0 && !NCNAME.test(prefix)) || !NCNAME.test(local)) throw new XmlError(`invalid XML name "${qname}"`);
  return { prefix, local };
}

interface Frame {
  el: XmlElement;
  qname: string;
  scope: Map<string, string>;
}

/** Parses a whole document into its root element, or throws an XmlError saying what is wrong. */
export function parseXml(input: string, limits: XmlLimits): XmlElement {
  let src = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  src = src.replace(/\r\n?/g, '\n');
  const bad = FORBIDDEN_CHAR.exec(src);
  if (bad) throw new XmlError(`character U+${bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} is not allowed in XML`);

  let pos = 0;
  const stack: Frame[] = [];
  let root: XmlElement | null = null;

  const fail = (what: string): never => {
    throw new XmlError(`malformed XML at offset ${pos}: ${what}`);
  };
  const skipSpace = () => {
    while (pos < src.length && ' \t\n'.includes(src[pos])) pos++;
  };
  const readName = (): string => {
    const m = /^[^\s/>=<"'!?&;]+/.exec(src.slice(pos, pos + 1024));
    if (!m) return fail('expected a name');
    pos += m[0].length;
    return m[0];
  };
  const decodeRefs = (raw: string, inAttr: boolean): string => {
    if (raw.includes('<')) fail(inAttr ? '"<" in an attribute value' : 'unexpected "<"');
    return raw.replace(/&([^;&\s]*);?/g, (whole, ref: string) => {
      if (!whole.endsWith(';')) fail(`unterminated reference "&${ref}"`);
      if (ref in PREDEFINED) return PREDEFINED[ref];
      const num = /^#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}))$/.exec(ref);
      if (!num) return fail(`unknown entity "&${ref};" (only the five predefined ones and character references are accepted)`);
      const cp = num[1] !== undefined ? parseInt(num[1], 16) : parseInt(num[2], 10);
      if (!validChar(cp)) fail(`character reference "&${ref};" is not an XML character`);
      return String.fromCodePoint(cp);
    });
  };
  const addText = (text: string) => {
    const top = stack[stack.length - 1];
    if (!top) {
      if (text.trim() !== '') fail('text outside the document element');
      return;
    }
    const last = top.el.children[top.el.children.length - 1];
    if (last?.kind === 'text') last.text += text;
    else if (text !== '') top.el.children.push({ kind: 'text', text });
  };

  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) fail('unterminated XML declaration');
    const decl = src.slice(5, end);
    if (!/^\s/.test(decl)) fail('malformed XML declaration');
    const enc = /\bencoding\s*=\s*["']([^"']*)["']/.exec(decl);
    if (enc && !/^(utf-8|us-ascii)$/i.test(enc[1])) throw new XmlError(`XML encoding "${enc[1]}" is not supported; send UTF-8`, 415);
    pos = end + 2;
  }

  while (pos < src.length) {
    const lt = src.indexOf('<', pos);
    if (lt < 0) {
      addText(decodeRefs(src.slice(pos), false));
      pos = src.length;
      break;
    }
    if (lt > pos) {
      const raw = src.slice(pos, lt);
      if (raw.includes(']]>')) fail('"]]>" in text');
      addText(decodeRefs(raw, false));
      pos = lt;
    }
    if (src.startsWith('<!--', pos)) {
      const end = src.indexOf('-->', pos + 4);
      if (end < 0) fail('unterminated comment');
      if (src.slice(pos + 4, end).includes('--')) fail('"--" inside a comment');
      pos = end + 3;
    } else if (src.startsWith('<![CDATA[', pos)) {
      if (stack.length === 0) fail('CDATA outside the document element');
      const end = src.indexOf(']]>', pos + 9);
      if (end < 0) fail('unterminated CDATA section');
      addText(src.slice(pos + 9, end));
      pos = end + 3;
    } else if (src.startsWith('<!DOCTYPE', pos) || src.startsWith('<!', pos)) {
      fail('document type declarations are not accepted');
    } else if (src.startsWith('<?', pos)) {
      const end = src.indexOf('?>', pos + 2);
      if (end < 0) fail('unterminated processing instruction');
      if (/^xml\b/i.test(src.slice(pos + 2, pos + 6))) fail('XML declaration not at the start');
      pos = end + 2;
    } else if (src.startsWith('</', pos)) {
      pos += 2;
      const name = readName();
      skipSpace();
      if (src[pos] !== '>') fail(`expected ">" to close </${name}`);
      pos++;
      const top = stack.pop();
      if (!top) return fail(`end tag </${name}> without a start tag`);
      if (top.qname !== name) fail(`end tag </${name}> does not match <${top.qname}>`);
    } else {
      if (root && stack.length === 0) fail('more than one document element');
      pos++;
      const qname = readName();
      const rawAttrs: Array<{ qname: string; value: string }> = [];
      let selfClosing = false;
      for (;;) {
        const before = pos;
        skipSpace();
        if (src.startsWith('/>', pos)) {
          selfClosing = true;
          pos += 2;
          break;
        }
        if (src[pos] === '>') {
          pos++;
          break;
        }
        if (pos >= src.length) fail(`unterminated start tag <${qname}`);
        if (pos === before) fail('attributes must be separated by white space');
        const aname = readName();
        skipSpace();
        if (src[pos] !== '=') fail(`expected "=" after attribute ${aname}`);
        pos++;
        skipSpace();
        const quote = src[pos];
        if (quote !== '"' && quote !== "'") fail(`attribute ${aname} needs a quoted value`);
        const end = src.indexOf(quote, pos + 1);
        if (end < 0) fail(`unterminated value of attribute ${aname}`);
        const value = decodeRefs(src.slice(pos + 1, end), true).replace(/[\t\n]/g, ' ');
        pos = end + 1;
        if (rawAttrs.some((a) => a.qname === aname)) fail(`attribute ${aname} given twice`);
        rawAttrs.push({ qname: aname, value });
      }

      const parentScope = stack[stack.length - 1]?.scope;
      const scope = new Map(parentScope ?? [['xml', XML_NS]]);
      for (const a of rawAttrs) {
        if (a.qname === 'xmlns') {
          if (a.value === XML_NS || a.value === XMLNS_NS) fail(`namespace "${a.value}" cannot be the default namespace`);
          scope.set('', a.value);
        } else if (a.qname.startsWith('xmlns:')) {
          const p = a.qname.slice(6);
          if (!NCNAME.test(p)) fail(`invalid namespace prefix "${p}"`);
          if (a.value === '') fail(`namespace prefix "${p}" declared with an empty name (Namespaces in XML 1.0 forbids this)`);
          if (p === 'xmlns' || (p === 'xml') !== (a.value === XML_NS) || a.value === XMLNS_NS) fail(`reserved namespace prefix or name in xmlns:${p}`);
          scope.set(p, a.value);
        }
      }
      const { prefix, local } = splitQName(qname);
      const ns = prefix === '' ? (scope.get('') ?? '') : scope.get(prefix);
      if (ns === undefined) return fail(`namespace prefix "${prefix}" is not declared`);
      const attrs: XmlAttr[] = [];
      for (const a of rawAttrs) {
        if (a.qname === 'xmlns' || a.qname.startsWith('xmlns:')) continue;
        const q = splitQName(a.qname);
        const ans = q.prefix === '' ? '' : scope.get(q.prefix);
        if (ans === undefined) return fail(`namespace prefix "${q.prefix}" is not declared`);
        if (attrs.some((x) => x.ns === ans && x.local === q.local)) fail(`attribute {${ans}}${q.local} given twice`);
        attrs.push({ ns: ans, local: q.local, prefix: q.prefix, value: a.value });
      }
      const el: XmlElement = { kind: 'element', ns, local, prefix, attrs, children: [] };
      const parent = stack[stack.length - 1];
      if (parent) parent.el.children.push(el);
      else root = el;
      if (stack.length + 1 > limits.maxDepth) throw new XmlError(`XML nested deeper than ${limits.maxDepth} elements`);
      if (!selfClosing) stack.push({ el, qname, scope });
    }
  }
  if (stack.length > 0) fail(`<${stack[stack.length - 1].qname}> is not closed`);
  if (!root) return fail('no document element');
  return root;
}

export function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');
}

export function escapeAttr(s: string): string {
  return escapeText(s).replace(/"/g, '&quot;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;');
}

/**
 * An element's content as text that stands on its own: every namespace a child element or attribute uses is declared
 * within the text, so it can be stored and later embedded under any other element (a property's value keeps its
 * meaning whatever prefixes the response that carries it uses).
 *
 * Every top-level element repeats the declarations it inherits, so a small body of many siblings under a long
 * namespace grows many times over when written out: past `maxBytes` (UTF-16 units) this throws an XmlError (413)
 * instead of building the rest.
 */
export function serializeContent(el: XmlElement, maxBytes = Infinity): string {
  let out = '';
  const walk = (nodes: XmlNode[], scope: Map<string, string>) => {
    for (const n of nodes) {
      if (out.length > maxBytes) throw new XmlError(`the XML content is longer than ${maxBytes} bytes once written out`, 413);
      if (n.kind === 'text') {
        out += escapeText(n.text);
        continue;
      }
      const inner = new Map(scope);
      let decls = '';
      const bind = (prefix: string, ns: string) => {
        if (prefix === 'xml' || (inner.get(prefix) ?? '') === ns) return;
        inner.set(prefix, ns);
        decls += prefix === '' ? ` xmlns="${escapeAttr(ns)}"` : ` xmlns:${prefix}="${escapeAttr(ns)}"`;
      };
      bind(n.prefix, n.ns);
      for (const a of n.attrs) if (a.prefix !== '') bind(a.prefix, a.ns);
      const name = n.prefix === '' ? n.local : `${n.prefix}:${n.local}`;
      const attrs = n.attrs.map((a) => ` ${a.prefix === '' ? a.local : `${a.prefix}:${a.local}`}="${escapeAttr(a.value)}"`).join('');
      if (n.children.length === 0) {
        out += `<${name}${decls}${attrs}/>`;
      } else {
        out += `<${name}${decls}${attrs}>`;
        walk(n.children, inner);
        out += `</${name}>`;
      }
    }
  };
  walk(el.children, new Map());
  if (out.length > maxBytes) throw new XmlError(`the XML content is longer than ${maxBytes} bytes once written out`, 413);
  return out;
}

/** Child elements only (text between them, white space in practice, is not structure). */
export function childElements(el: XmlElement): XmlElement[] {
  return el.children.filter((c): c is XmlElement => c.kind === 'element');
}

export function isDav(el: XmlElement, local: string): boolean {
  return el.ns === DAV_NS && el.local === local;
}
