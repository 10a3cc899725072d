// The language as React state: every component reads t() and the locale from here, and a switch re-renders them.
import { type ReactNode, createContext, use, useEffect, useMemo, useState } from 'react';
import { LANG_STORAGE_KEY, LOCALES, type Lang, type Translate, detectLang, translator } from './i18n.ts';

export interface I18n {
  lang: Lang;
  locale: string;
  t: Translate;
  setLang(lang: Lang): void;
}

const I18nContext = createContext<I18n | null>(null);

function storedLang(): string | null {
  try {
    return localStorage.getItem(LANG_STORAGE_KEY);
  } catch {
    return null;
  }
}

export function I18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(() => detectLang(storedLang(), navigator.languages));
  useEffect(() => {
    document.documentElement.lang = LOCALES[lang];
  }, [lang]);
  const value = useMemo<I18n>(
    () => ({
      lang,
      locale: LOCALES[lang],
      t: translator(lang),
      setLang: (next) => {
        try {
          localStorage.setItem(LANG_STORAGE_KEY, next);
        } catch {
          // Storage refused (private mode): the choice lasts until the page is closed.
        }
        setLangState(next);
      },
    }),
    [lang],
  );
  return <I18nContext value={value}>{children}</I18nContext>;
}

export function useI18n(): I18n {
  const ctx = use(I18nContext);
  if (!ctx) throw new Error('useI18n outside I18nProvider');
  return ctx;
}
