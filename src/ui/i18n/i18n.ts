// Language choice and message lookup, without React: which language a browser gets, and filling a message's
// {placeholders}. The React binding is in context.tsx.
import { type MessageKey, type Messages, en } from './en.ts';
import { zh } from './zh.ts';

export const LANGS = ['en', 'zh'] as const;
export type Lang = (typeof LANGS)[number];

export const CATALOGUES: Record<Lang, Messages> = { en, zh };

/** The BCP 47 tag for `lang`: the document's lang attribute and the locale for numbers and dates. */
export const LOCALES: Record<Lang, string> = { en: 'en', zh: 'zh-CN' };

/** Where a person's explicit choice is kept (not sensitive, so it outlives the session). */
export const LANG_STORAGE_KEY = 'buckyos.lang';

/** A stored choice wins; else the browser's first preference we have a catalogue for; else English. */
export function detectLang(stored: string | null, preferred: readonly string[]): Lang {
  if (stored && (LANGS as readonly string[]).includes(stored)) return stored as Lang;
  for (const tag of preferred) {
    const base = tag.toLowerCase().split('-')[0];
    if (base && (LANGS as readonly string[]).includes(base)) return base as Lang;
  }
  return 'en';
}

export type Params = Record<string, string | number>;

/** A placeholder without a value stays visible as {name}, so a missing parameter shows instead of vanishing. */
export function fill(template: string, params?: Params): string {
  if (!params) return template;
  return template.replace(/\{([a-z_]+)\}/g, (whole, name: string) => (Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole));
}

export type Translate = (key: MessageKey, params?: Params) => string;

export function translator(lang: Lang): Translate {
  const catalogue = CATALOGUES[lang];
  return (key, params) => fill(catalogue[key], params);
}
