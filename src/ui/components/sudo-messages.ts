// The sudo prompt's messages (components/sudo.tsx), English and Chinese; merged into i18n/en.ts and zh.ts like a
// page's catalogue. Keys start with `sudo.`.
export const en = {
  'sudo.title': 'Confirm it is you',
  'sudo.explain': 'This action needs your password again. You will not be asked again for the next few minutes.',
  'sudo.password': 'Your password',
  'sudo.show_password': 'Show or hide the password',
  'sudo.confirm': 'Confirm',
  'sudo.cancel': 'Cancel',
  'sudo.close': 'Close',
  'sudo.empty': 'Enter your password.',
  'sudo.wrong': 'Wrong password.',
  'sudo.locked': 'Your account is locked after too many wrong passwords, until {time}.',
  'sudo.rate_limited': 'Too many attempts. Try again in {seconds} s.',
  'sudo.unreachable': 'Cannot reach this device. Check the network and try again.',
  'sudo.failed': 'Could not check the password: {message}',
} as const;

export const zh: Record<keyof typeof en, string> = {
  'sudo.title': '确认是您本人',
  'sudo.explain': '此操作需要再次输入您的密码。接下来几分钟内不会再次询问。',
  'sudo.password': '您的密码',
  'sudo.show_password': '显示或隐藏密码',
  'sudo.confirm': '确认',
  'sudo.cancel': '取消',
  'sudo.close': '关闭',
  'sudo.empty': '请输入您的密码。',
  'sudo.wrong': '密码错误。',
  'sudo.locked': '密码错误次数过多，您的账户已锁定至 {time}。',
  'sudo.rate_limited': '尝试次数过多，请在 {seconds} 秒后重试。',
  'sudo.unreachable': '无法连接此设备。请检查网络后重试。',
  'sudo.failed': '无法验证密码：{message}',
};
