// 简体中文. Typed by the English catalogue, so a missing or misspelt key fails the type check.
import type { EN_PARTS, Messages } from './en.ts';
import { zh as files } from '../pages/files/messages.ts';
import { zh as devices } from '../pages/devices/messages.ts';
import { zh as users } from '../pages/users/messages.ts';
import { zh as logs } from '../pages/logs/messages.ts';
import { zh as settings } from '../pages/settings/messages.ts';
import { zh as sudo } from '../components/sudo-messages.ts';

const core: Record<keyof (typeof EN_PARTS)['core'], string> = {
  'app.name': 'BuckyOS',
  'app.skip': '跳到正文',
  'app.loading': '正在加载…',
  'app.offline': '无法连接到此设备。请检查网络，页面会自动重试。',

  'lang.label': '语言',
  'lang.en': 'English',
  'lang.zh': '中文',

  'login.title': '登录',
  'login.subtitle': '登录以管理你的区域。',
  'login.username': '用户名',
  'login.password': '密码',
  'login.show_password': '显示或隐藏密码',
  'login.submit': '登录',
  'login.username.empty': '请输入用户名。',
  'login.username.invalid': '用户名为 2–32 个小写字母、数字、_ 或 -，并以字母开头。',
  'login.password.empty': '请输入密码。',
  'login.wrong': '用户名或密码错误。',
  'login.locked': '登录失败次数过多，此账户已锁定至 {time}。',
  'login.rate_limited': '此处的登录尝试过多，请在 {seconds} 秒后重试。',
  'login.disabled': '此账户已被停用，请联系管理员启用。',
  'login.unreachable': '无法连接到此设备。请检查网络后重试。',
  'login.failed': '登录失败：{message}',
  'login.ended': '你的会话已结束，请重新登录。',
  'login.copied': '此标签页复制自一个已登录的标签页，请在这里重新登录。',

  'shell.menu': '菜单',
  'shell.navigation': '主导航',
  'shell.account': '账户',
  'shell.signed_in_as': '当前用户：{user}',
  'shell.logout': '退出登录',

  'nav.dashboard': '仪表盘',

  'role.admin': '管理员',
  'role.user': '用户',
  'role.limited': '受限用户',
  'role.guest': '访客',

  'dashboard.title': '仪表盘',
  'dashboard.updated': '更新于 {time}',
  'dashboard.refresh': '刷新',
  'dashboard.load_failed': '无法读取区域状态：{message}',
  'dashboard.admin_only': '只有管理员能看到所有设备和服务的详细信息。',

  'alerts.title': '警报',
  'alerts.none': '没有警报：一切正常。',
  'alerts.device_offline': '设备 {device} 已离线（最后上报于 {time}）。',
  'alerts.device_unknown': '设备 {device} 从未上报过状态。',
  'alerts.service_down': '服务 {service} 没有在任何设备上运行。',
  'alerts.service_degraded': '服务 {service} 在 {nodes} 上运行异常。',
  'alerts.disk_unreachable': '{device} 上的磁盘 {disk} 无法访问。',
  'alerts.disk_errors': '{device} 上的磁盘 {disk} 报告了 {count} 个错误。',
  'alerts.disk_full': '{device} 上的磁盘 {disk} 已用 {percent}%。',
  'alerts.under_replicated': '有 {count} 个数据块的副本数少于策略要求。',
  'alerts.store_frozen': '区域配置存储处于只读状态：{reason}。',
  'alerts.store_no_quorum': '区域配置存储已失去法定人数：写入已停止。',
  'alerts.store_member_down': '区域配置存储有 {count} 个成员不可用。',
  'alerts.critical': '严重',
  'alerts.warning': '警告',

  'devices.title': '设备',
  'devices.none': '还没有设备上报状态。',
  'devices.this': '本设备',
  'devices.state.online': '在线',
  'devices.state.offline': '离线',
  'devices.state.unknown': '未知',
  'devices.role.core': '核心',
  'devices.role.storage': '存储',
  'devices.role.portable': '便携',
  'devices.role.gateway': '网关',
  'devices.cpu': 'CPU',
  'devices.cpu_value': '{count} 核，负载 {load}',
  'devices.memory': '内存',
  'devices.used_of': '已用 {used} / 共 {total}',
  'devices.system_disk': '系统盘',
  'devices.uptime': '运行时间',
  'devices.address': '地址',
  'devices.last_seen': '最后上报',

  'services.title': '服务',
  'services.none': '还没有部署任何服务。',
  'services.name': '服务',
  'services.state': '状态',
  'services.instances': '实例',
  'services.memory': '内存',
  'services.restarts': '重启次数',
  'services.health.healthy': '正常',
  'services.health.degraded': '异常',
  'services.health.down': '已停止',
  'services.health.starting': '启动中',

  'capacity.title': '存储',
  'capacity.none': '尚未配置存储。',
  'capacity.none_hint': '为存储设备添加磁盘后，即可在区域中保存文件。',
  'capacity.unavailable': '无法获取存储状态：{message}',
  'capacity.total': '可用 {free} / 共 {total}',
  'capacity.disk': '{device} 上的 {disk}',
  'capacity.disk_state.active': '正常',
  'capacity.disk_state.draining': '正在迁出',
  'capacity.disk_state.unreachable': '无法访问',

  'time.never': '从未',
};

export const zh: Messages = { ...core, ...files, ...devices, ...users, ...logs, ...settings, ...sudo };
