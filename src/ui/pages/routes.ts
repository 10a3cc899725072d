// The pages behind sign-in, in navigation order. Each page is its own chunk, loaded when first shown, so a page
// added here costs the others nothing at start. docs/ui.md, "Adding a page".
import { type ComponentType, type LazyExoticComponent, lazy } from 'react';
import { DashboardIcon, type IconProps } from '../components/icons.tsx';
import type { MessageKey } from '../i18n/en.ts';

export interface PageRoute {
  path: string;
  /** Its name in the navigation and the window title. */
  label: MessageKey;
  icon: ComponentType<IconProps>;
  page: LazyExoticComponent<ComponentType>;
}

export const ROUTES: readonly PageRoute[] = [
  { path: '/', label: 'nav.dashboard', icon: DashboardIcon, page: lazy(() => import('./dashboard/page.tsx')) },
];
