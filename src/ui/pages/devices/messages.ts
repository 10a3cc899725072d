// The devices page's messages, English and Chinese; i18n/en.ts and zh.ts merge every page's catalogue, and a key two
// catalogues share fails i18n.test.ts. Keys start with `device_page.` (the dashboard owns `devices.`), and `nav.devices` names the page.
export const en = {
  'nav.devices': 'Devices',
} as const;

export const zh: Record<keyof typeof en, string> = {
  'nav.devices': '设备',
};
