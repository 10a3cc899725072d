// The pages behind sign-in, in navigation order. Each page is its own chunk, loaded when first shown, so a page
// added here costs the others nothing at start. docs/ui.md, "Adding a page".
import { type ComponentType, type LazyExoticComponent, lazy } from 'react';
import { DashboardIcon, DevicesIcon, FilesIcon, type IconProps, LogsIcon, SettingsIcon, UsersIcon } from '../components/icons.tsx';
import type { MessageKey } from '../i18n/en.ts';

export interface PageRoute {
  path: string;
  /** Its name in the navigation and the window title. */
  label: MessageKey;
  icon: ComponentType<IconProps>;
  page: LazyExoticComponent<ComponentType>;
  /** Shown to administrators only. The services refuse everyone else anyway; hiding the page spares them a page of
   * refusals. */
  admin?: boolean;
}

export const ROUTES: readonly PageRoute[] = [
  { path: '/', label: 'nav.dashboard', icon: DashboardIcon, page: lazy(() => import('./dashboard/page.tsx')) },
  { path: '/files', label: 'nav.files', icon: FilesIcon, page: lazy(() => import('./files/page.tsx')) },
  { path: '/devices', label: 'nav.devices', icon: DevicesIcon, page: lazy(() => import('./devices/page.tsx')), admin: true },
  { path: '/users', label: 'nav.users', icon: UsersIcon, page: lazy(() => import('./users/page.tsx')), admin: true },
  { path: '/logs', label: 'nav.logs', icon: LogsIcon, page: lazy(() => import('./logs/page.tsx')), admin: true },
  { path: '/settings', label: 'nav.settings', icon: SettingsIcon, page: lazy(() => import('./settings/page.tsx')) },
];

/** The pages `role` may open. */
export function routesFor(role: string): readonly PageRoute[] {
  return ROUTES.filter((r) => !r.admin || role === 'admin');
}
