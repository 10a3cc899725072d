// The system-config service as config-throughput measures it, run in a child process of the benchmark: the same
// pieces main.ts wires up (HTTP server, token verification, RBAC kept in step with the store, zod validation), with
// trust anchors made up here instead of an activated zone's. Started with fork(); argv[2] is a ServerSpec as JSON.
// It answers the parent with a ServerReady message and stops on SIGTERM.
import { randomUUID } from 'node:crypto';
import { generateKeyPair } from '../../src/lib/identity/keys.ts';
import { VERIFY_HUB_KID, createTokenVerifier, signAccessToken } from '../../src/lib/identity/tokens.ts';
import { createHttpApp, listen } from '../../src/lib/krpc/index.ts';
import { createRbacConfigAccess } from '../../src/kernel/system-config/access.ts';
import { openEtcdStore } from '../../src/kernel/system-config/backends/etcd.ts';
import { openSqliteStore } from '../../src/kernel/system-config/backends/sqlite.ts';
import { createSystemConfigEndpoint } from '../../src/kernel/system-config/service.ts';

export type ServerSpec = ({ backend: 'sqlite'; path: string } | { backend: 'etcd'; hosts: string[]; prefix: string }) & {
  /** Made an ordinary member (role `user`) before the service starts; the token is theirs. */
  user: string;
};

export interface ServerReady {
  port: number;
  /** A session token of the spec's user through the control panel, signed by the made-up verify-hub key. */
  token: string;
}

const spec = JSON.parse(process.argv[2] ?? 'null') as ServerSpec;
const store = spec.backend === 'sqlite' ? openSqliteStore(spec.path) : openEtcdStore({ hosts: spec.hosts, prefix: spec.prefix });
await store.set(`users/${spec.user}/settings`, JSON.stringify({ name: spec.user, role: 'user', state: 'active' }));

const hub = generateKeyPair();
const stop = new AbortController();
const endpoint = createSystemConfigEndpoint(store, {
  authenticate: createTokenVerifier(() => ({ verifyHubKey: hub.publicKey, device: () => undefined })),
  access: await createRbacConfigAccess(store, stop.signal, (err) => console.error('RBAC policy sync failed:', err)),
});
const running = await listen(createHttpApp({ name: 'system-config', endpoints: [endpoint] }), 0, '127.0.0.1');
const token = await signAccessToken(
  { typ: 'session', sub: spec.user, app: 'control-panel', sid: randomUUID(), jti: randomUUID() },
  hub.privateKey,
  3600,
  VERIFY_HUB_KID,
);

const shutdown = () => {
  stop.abort();
  void running
    .close()
    .then(() => store.close())
    .finally(() => process.exit(0));
};
process.once('SIGTERM', shutdown);
// A benchmark that dies without stopping its server must not leave it running.
process.once('disconnect', shutdown);
process.send!({ port: running.port, token } satisfies ServerReady);
