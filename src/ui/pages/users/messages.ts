// The users page's messages, English and Chinese; i18n/en.ts and zh.ts merge every page's catalogue, and a key two
// catalogues share fails i18n.test.ts. Keys start with `users.` (and `nav.users` names the page).
export const en = {
  'nav.users': 'Users',
} as const;

export const zh: Record<keyof typeof en, string> = {
  'nav.users': '用户',
};
