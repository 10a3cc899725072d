// The logs page's messages, English and Chinese; i18n/en.ts and zh.ts merge every page's catalogue, and a key two
// catalogues share fails i18n.test.ts. Keys start with `logs.` (and `nav.logs` names the page).
export const en = {
  'nav.logs': 'Logs',
} as const;

export const zh: Record<keyof typeof en, string> = {
  'nav.logs': '日志',
};
