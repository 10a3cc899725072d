// Switches the UI language; on the login page and in the header, so nobody has to read a language they do not
// know to find it.
import { ActionIcon, Menu } from '@mantine/core';
import { useI18n } from '../i18n/context.tsx';
import { LANGS, type Lang } from '../i18n/i18n.ts';
import { LanguageIcon } from './icons.tsx';

/** The signed-in app's menu, on its own catalogue. */
export function LanguageMenu() {
  const { t, lang, setLang } = useI18n();
  return <LanguageMenuView label={t('lang.label')} lang={lang} setLang={setLang} name={(l) => t(`lang.${l}`)} />;
}

/** The menu itself, for a page with a catalogue of its own (the activation page). */
export function LanguageMenuView({ label, lang, setLang, name }: { label: string; lang: Lang; setLang(l: Lang): void; name(l: Lang): string }) {
  return (
    // No focus placeholder: the library's is a focusable element inside role=menu that is not a menu item, which
    // screen readers announce as a broken menu (axe: aria-required-children). Focus goes to the first item instead.
    <Menu position="bottom-end" withinPortal withInitialFocusPlaceholder={false}>
      <Menu.Target>
        <ActionIcon variant="subtle" color="gray" size="lg" aria-label={label}>
          <LanguageIcon />
        </ActionIcon>
      </Menu.Target>
      <Menu.Dropdown>
        {LANGS.map((l) => (
          <Menu.Item key={l} onClick={() => setLang(l)} aria-current={l === lang ? 'true' : undefined} fw={l === lang ? 700 : undefined} lang={l === 'zh' ? 'zh-CN' : 'en'}>
            {name(l)}
          </Menu.Item>
        ))}
      </Menu.Dropdown>
    </Menu>
  );
}
