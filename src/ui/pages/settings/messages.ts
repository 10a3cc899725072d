// The settings page's messages, English and Chinese; i18n/en.ts and zh.ts merge every page's catalogue, and a key two
// catalogues share fails i18n.test.ts. Keys start with `settings.` (and `nav.settings` names the page).
export const en = {
  'nav.settings': 'Settings',
} as const;

export const zh: Record<keyof typeof en, string> = {
  'nav.settings': '设置',
};
