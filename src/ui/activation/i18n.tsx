// The activation page's language: the signed-in app's detection (a stored choice, then the browser's languages), its
// own catalogue.
import { type ReactNode, createContext, use, useEffect, useMemo, useState } from 'react';
import { LANG_STORAGE_KEY, LOCALES, type Lang, detectLang, fill } from '../i18n/i18n.ts';
import { type MessageKey, en, zh } from './messages.ts';
import type { Params } from './model.ts';

export interface ActivationI18n {
  lang: Lang;
  locale: string;
  t: (key: MessageKey, params?: Params) => string;
  setLang(lang: Lang): void;
}

const Ctx = createContext<ActivationI18n | null>(null);

function stored(): string | null {
  try {
    return localStorage.getItem(LANG_STORAGE_KEY);
  } catch {
    return null;
  }
}

export function ActivationI18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(() => detectLang(stored(), navigator.languages));
  useEffect(() => {
    document.documentElement.lang = LOCALES[lang];
  }, [lang]);
  const value = useMemo<ActivationI18n>(() => {
    const catalogue = lang === 'zh' ? zh : en;
    return {
      lang,
      locale: LOCALES[lang],
      t: (key, params) => fill(catalogue[key], params),
      setLang: (next) => {
        try {
          localStorage.setItem(LANG_STORAGE_KEY, next);
        } catch {
          // Storage refused (private mode): the choice lasts until the page is closed.
        }
        setLangState(next);
      },
    };
  }, [lang]);
  return <Ctx value={value}>{children}</Ctx>;
}

export function useT(): ActivationI18n {
  const ctx = use(Ctx);
  if (!ctx) throw new Error('useT outside ActivationI18nProvider');
  return ctx;
}
