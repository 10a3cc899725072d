// The language and time zone as React state: every component reads t(), the locale and the time zone from here, and a
// switch re-renders them. While someone is signed in it also follows their session: the zone's time zone and the
// language kept with their account (Settings) are applied when a session starts, and a language chosen then is kept
// with the account too.
import { type ReactNode, createContext, use, useEffect, useMemo, useRef, useState } from 'react';
import { session } from '../api.ts';
import { loadPreferences, saveLanguage } from '../settings-store.ts';
import { LANG_STORAGE_KEY, LOCALES, type Lang, type Translate, detectLang, translator } from './i18n.ts';

export interface I18n {
  lang: Lang;
  locale: string;
  t: Translate;
  setLang(lang: Lang): void;
  /** The zone's time zone (an IANA name), in which every absolute time is shown; undefined: the browser's own. */
  timeZone: string | undefined;
  setTimeZone(timeZone: string | undefined): void;
}

const I18nContext = createContext<I18n | null>(null);

function storedLang(): string | null {
  try {
    return localStorage.getItem(LANG_STORAGE_KEY);
  } catch {
    return null;
  }
}

function keepLocally(lang: Lang): void {
  try {
    localStorage.setItem(LANG_STORAGE_KEY, lang);
  } catch {
    // Storage refused (private mode): the choice lasts until the page is closed.
  }
}

export function I18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(() => detectLang(storedLang(), navigator.languages));
  const [timeZone, setTimeZone] = useState<string | undefined>(undefined);
  /** The session whose preferences are applied; a refreshed token keeps its sid, so only a new sign-in reloads. */
  const applied = useRef<string | null>(null);

  useEffect(() => {
    document.documentElement.lang = LOCALES[lang];
  }, [lang]);

  useEffect(() => {
    const follow = () => {
      const s = session.get();
      const sid = s?.sid ?? null;
      if (sid === applied.current) return;
      applied.current = sid;
      if (!s) {
        setTimeZone(undefined);
        return;
      }
      loadPreferences(s.user).then(
        (p) => {
          if (applied.current !== sid) return;
          setTimeZone(p.timeZone);
          if (p.lang) {
            keepLocally(p.lang);
            setLangState(p.lang);
          }
        },
        // Unreachable for now: times stay in the browser's zone and the language as chosen here; the next sign-in
        // tries again.
        () => undefined,
      );
    };
    follow();
    return session.subscribe(follow);
  }, []);

  const value = useMemo<I18n>(
    () => ({
      lang,
      locale: LOCALES[lang],
      t: translator(lang),
      setLang: (next) => {
        keepLocally(next);
        setLangState(next);
        const s = session.get();
        // Best effort: the choice already applies here; failing to keep it with the account costs only the next
        // device's default.
        if (s) saveLanguage(s.user, next).catch(() => undefined);
      },
      timeZone,
      setTimeZone,
    }),
    [lang, timeZone],
  );
  return <I18nContext value={value}>{children}</I18nContext>;
}

export function useI18n(): I18n {
  const ctx = use(I18nContext);
  if (!ctx) throw new Error('useI18n outside I18nProvider');
  return ctx;
}
