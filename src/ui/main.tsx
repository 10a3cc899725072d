// Entry point of the bundle (scripts/build-ui.ts): styles, the app, and the service worker that makes the app
// installable and lets it start without the network.
import './styles.css';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './app.tsx';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

// Service workers exist only in secure contexts: HTTPS, or this machine itself (localhost). Over plain HTTP on the
// LAN the app works the same, only not installable (docs/ui.md).
if ('serviceWorker' in navigator && window.isSecureContext) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch((e: unknown) => {
      console.warn('service worker not registered:', e);
    });
  });
}
