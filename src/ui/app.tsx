// The application: the component library's provider (its injected styles carry the page's CSP nonce), the
// language, and either the sign-in page or the signed-in shell, following the session.
import { MantineProvider } from '@mantine/core';
import { setNonce } from 'get-nonce';
import { useSyncExternalStore } from 'react';
import { session } from './api.ts';
import { I18nProvider } from './i18n/context.tsx';
import { LoginPage } from './pages/login.tsx';
import { Shell } from './shell.tsx';
import { cssVariables, theme } from './theme.ts';

/** The nonce the gateway put into this response's CSP and into index.html (ui-files.ts). */
const styleNonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? '';
// Modals lock the page's scroll through react-remove-scroll, whose <style> element takes its nonce from get-nonce
// rather than from MantineProvider.
setNonce(styleNonce);

const subscribe = (fn: () => void) => session.subscribe(fn);
const current = () => session.get();

function Root() {
  const signedIn = useSyncExternalStore(subscribe, current);
  return signedIn ? <Shell user={signedIn.user} /> : <LoginPage />;
}

export function App() {
  return (
    <MantineProvider theme={theme} cssVariablesResolver={cssVariables} defaultColorScheme="auto" getStyleNonce={() => styleNonce}>
      <I18nProvider>
        <Root />
      </I18nProvider>
    </MantineProvider>
  );
}
