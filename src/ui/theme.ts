// The component library's theme. Shades are chosen for contrast: text and filled controls meet WCAG AA (4.5:1),
// which the library's default shade 6 does not on white; axe checks it in the UI test.
import { type CSSVariablesResolver, createTheme } from '@mantine/core';

export const theme = createTheme({
  primaryColor: 'blue',
  primaryShade: { light: 8, dark: 8 },
  defaultRadius: 'md',
  /** The library's own transitions (menus, loaders) follow the system's reduced-motion setting; styles.css does the
   * same for the rest. */
  respectReducedMotion: true,
  fontFamily: 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "PingFang SC", "Microsoft YaHei", sans-serif',
  headings: { fontFamily: 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "PingFang SC", "Microsoft YaHei", sans-serif' },
});

/** Secondary ("dimmed") text and field errors in shades that keep 4.5:1 against the page in either scheme; the
 * library's defaults (gray 6, red 6/8) fall short of it. */
export const cssVariables: CSSVariablesResolver = (t) => ({
  variables: {},
  light: { '--mantine-color-dimmed': t.colors.gray[7], '--mantine-color-error': t.colors.red[9] },
  dark: { '--mantine-color-dimmed': t.colors.dark[1], '--mantine-color-error': t.colors.red[4] },
});
