// Entry point of the activation page (scripts/build-ui.ts, entry `activation`), which an unactivated device serves on
// its activation port. No service worker: the page is used once, and the port closes when the device is activated.
import './activation.css';
import { MantineProvider } from '@mantine/core';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { cssVariables, theme } from '../theme.ts';
import { ActivationApp } from './app.tsx';
import { ActivationI18nProvider } from './i18n.tsx';

/** The nonce the activation service put into this response's CSP and into activation.html (src/lib/ui-files.ts). */
const styleNonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? '';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <MantineProvider theme={theme} cssVariablesResolver={cssVariables} defaultColorScheme="auto" getStyleNonce={() => styleNonce}>
      <ActivationI18nProvider>
        <ActivationApp />
      </ActivationI18nProvider>
    </MantineProvider>
  </StrictMode>,
);
