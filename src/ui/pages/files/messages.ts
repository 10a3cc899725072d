// The files page's messages, English and Chinese; i18n/en.ts and zh.ts merge every page's catalogue, and a key two
// catalogues share fails i18n.test.ts. Keys start with `files.` (and `nav.files` names the page).
export const en = {
  'nav.files': 'Files',
} as const;

export const zh: Record<keyof typeof en, string> = {
  'nav.files': '文件',
};
