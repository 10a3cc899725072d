// The service worker: what makes the UI installable as an app, and lets it open with no network (it then says the
// device cannot be reached). Hashed assets are served from the cache, pages from the network first; kRPC calls are
// never touched. Each build installs its own cache and drops the previous ones.

// The worker's globals are not in the DOM typings this project checks against; these are the parts it uses.
interface ExtendableEvent extends Event {
  waitUntil(work: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  readonly request: Request;
  respondWith(response: Response | Promise<Response>): void;
}
interface WorkerScope {
  addEventListener(type: 'install' | 'activate', fn: (e: ExtendableEvent) => void): void;
  addEventListener(type: 'fetch', fn: (e: FetchEvent) => void): void;
  skipWaiting(): Promise<void>;
  readonly clients: { claim(): Promise<void> };
  readonly location: Location;
}

/** Filled in by scripts/build-ui.ts: the build's id and the files the app needs to start. */
declare const __BUILD__: { id: string; shell: string[] };

const worker = self as unknown as WorkerScope;
const PREFIX = 'buckyos-ui-';
const CACHE = `${PREFIX}${__BUILD__.id}`;

worker.addEventListener('install', (e) => {
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(['/', ...__BUILD__.shell]))
      .then(() => worker.skipWaiting()),
  );
});

worker.addEventListener('activate', (e) => {
  e.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith(PREFIX) && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => worker.clients.claim()),
  );
});

async function fromNetworkFirst(req: Request): Promise<Response> {
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(req);
    if (res.ok) await cache.put('/', res.clone());
    return res;
  } catch (err) {
    const hit = await cache.match('/');
    if (hit) return hit;
    throw err;
  }
}

async function fromCacheFirst(req: Request): Promise<Response> {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(req);
  if (hit) return hit;
  const res = await fetch(req);
  if (res.ok) await cache.put(req, res.clone());
  return res;
}

worker.addEventListener('fetch', (e) => {
  const req = e.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== worker.location.origin || url.pathname.startsWith('/kapi/')) return;
  if (req.mode === 'navigate') e.respondWith(fromNetworkFirst(req));
  else if (url.pathname.startsWith('/assets/')) e.respondWith(fromCacheFirst(req));
});
