// The English catalogue: the source every other language must match key for key (zh.ts is typed by it). Values may
// hold {name} placeholders, filled by t(key, params). Pages keep their own messages beside them (pages/*/messages.ts).
import { en as files } from '../pages/files/messages.ts';
import { en as devices } from '../pages/devices/messages.ts';
import { en as users } from '../pages/users/messages.ts';
import { en as logs } from '../pages/logs/messages.ts';
import { en as settings } from '../pages/settings/messages.ts';
import { en as sudo } from '../components/sudo-messages.ts';

const core = {
  'app.name': 'BuckyOS',
  'app.skip': 'Skip to content',
  'app.loading': 'Loading…',
  'app.offline': 'Cannot reach this device. Check the network; the page retries by itself.',

  'lang.label': 'Language',
  'lang.en': 'English',
  'lang.zh': '中文',

  'login.title': 'Sign in',
  'login.subtitle': 'Sign in to manage your zone.',
  'login.username': 'User name',
  'login.password': 'Password',
  'login.show_password': 'Show or hide the password',
  'login.submit': 'Sign in',
  'login.username.empty': 'Enter your user name.',
  'login.username.invalid': 'A user name is 2–32 lowercase letters, digits, _ or -, starting with a letter.',
  'login.password.empty': 'Enter your password.',
  'login.wrong': 'Wrong user name or password.',
  'login.locked': 'This account is locked after too many failed sign-ins, until {time}.',
  'login.rate_limited': 'Too many sign-in attempts from here. Try again in {seconds} s.',
  'login.disabled': 'This account is disabled. Ask an administrator to enable it.',
  'login.unreachable': 'Cannot reach this device. Check the network and try again.',
  'login.failed': 'Sign-in failed: {message}',
  'login.ended': 'Your session ended. Sign in again.',
  'login.copied': 'This tab was copied from a signed-in tab. Sign in again here.',

  'shell.menu': 'Menu',
  'shell.navigation': 'Main navigation',
  'shell.account': 'Account',
  'shell.signed_in_as': 'Signed in as {user}',
  'shell.logout': 'Sign out',

  'nav.dashboard': 'Dashboard',

  'role.admin': 'Administrator',
  'role.user': 'User',
  'role.limited': 'Limited',
  'role.guest': 'Guest',

  'dashboard.title': 'Dashboard',
  'dashboard.updated': 'Updated {time}',
  'dashboard.refresh': 'Refresh',
  'dashboard.load_failed': 'Could not load the zone\'s state: {message}',
  'dashboard.admin_only': 'Only administrators see every device and service in detail.',

  'alerts.title': 'Alerts',
  'alerts.none': 'No alerts: everything is working.',
  'alerts.device_offline': 'Device {device} is offline (last seen {time}).',
  'alerts.device_unknown': 'Device {device} has never reported.',
  'alerts.service_down': 'Service {service} is not running anywhere.',
  'alerts.service_degraded': 'Service {service} is unhealthy on {nodes}.',
  'alerts.disk_unreachable': 'Disk {disk} on {device} is unreachable.',
  'alerts.disk_errors': 'Disk {disk} on {device} reported {count} errors.',
  'alerts.disk_full': 'Disk {disk} on {device} is {percent}% full.',
  'alerts.under_replicated': '{count} chunks have fewer copies than their policy asks for.',
  'alerts.store_frozen': 'The zone\'s configuration store is read-only: {reason}.',
  'alerts.store_no_quorum': 'The zone\'s configuration store has lost quorum: writes are stopped.',
  'alerts.store_member_down': '{count} of the zone store\'s members are down.',
  'alerts.critical': 'Critical',
  'alerts.warning': 'Warning',

  'devices.title': 'Devices',
  'devices.none': 'No device has reported yet.',
  'devices.this': 'this device',
  'devices.state.online': 'Online',
  'devices.state.offline': 'Offline',
  'devices.state.unknown': 'Unknown',
  'devices.role.core': 'Core',
  'devices.role.storage': 'Storage',
  'devices.role.portable': 'Portable',
  'devices.role.gateway': 'Gateway',
  'devices.cpu': 'CPU',
  'devices.cpu_value': '{count} cores, load {load}',
  'devices.memory': 'Memory',
  'devices.used_of': '{used} of {total}',
  'devices.system_disk': 'System disk',
  'devices.uptime': 'Up',
  'devices.address': 'Address',
  'devices.last_seen': 'Last report',

  'services.title': 'Services',
  'services.none': 'No service is placed yet.',
  'services.name': 'Service',
  'services.state': 'State',
  'services.instances': 'Instances',
  'services.memory': 'Memory',
  'services.restarts': 'Restarts',
  'services.health.healthy': 'Healthy',
  'services.health.degraded': 'Degraded',
  'services.health.down': 'Down',
  'services.health.starting': 'Starting',

  'capacity.title': 'Storage',
  'capacity.none': 'No storage configured.',
  'capacity.none_hint': 'Add a disk to a storage device to keep files in the zone.',
  'capacity.unavailable': 'Storage status is unavailable: {message}',
  'capacity.total': '{free} free of {total}',
  'capacity.disk': '{disk} on {device}',
  'capacity.disk_state.active': 'Active',
  'capacity.disk_state.draining': 'Draining',
  'capacity.disk_state.unreachable': 'Unreachable',

  'time.never': 'never',
} as const;

/** Every part of the catalogue, for i18n.test.ts to check that no two share a key (a later one would win silently). */
export const EN_PARTS = { core, files, devices, users, logs, settings, sudo } as const;

export const en = { ...core, ...files, ...devices, ...users, ...logs, ...settings, ...sudo };

export type MessageKey = keyof typeof en;
export type Messages = Record<MessageKey, string>;
