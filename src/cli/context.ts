// What every CLI verb needs: the node root, its config, and a way to call services through the node gateway as
// either a logged-in user (--user) or, for root on the device itself, the node's own kernel identity.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { type NodeConfig, type NodePaths, loadNodeConfig, nodePaths } from '../lib/config/node-config.ts';
import { loadKeyFile, didDev } from '../lib/identity/keys.ts';
import { IDENTITY_FILES } from '../lib/identity/node-identity.ts';
import { SERVICE_TOKEN_TTL_SEC, signAccessToken } from '../lib/identity/tokens.ts';
import { type Client, type MethodMap, type ServiceDef, createClient } from '../lib/krpc/index.ts';
import { verifyHubApi } from '../lib/api/verify-hub.ts';

export interface GlobalOptions {
  root?: string;
  user?: string;
}

export const CLI_APP_ID = 'buckyos-cli';

export class CliContext {
  readonly paths: NodePaths;
  readonly config: NodeConfig;
  private token: { value: string; expiresAt: number; refresh?: string } | null = null;

  constructor(private readonly opts: GlobalOptions) {
    this.paths = nodePaths(opts.root);
    this.config = loadNodeConfig(this.paths);
  }

  /** Who the CLI acts as: the --user, or root on this device. */
  get actor(): string {
    return this.opts.user ?? 'root';
  }

  get gatewayUrl(): string {
    return `http://127.0.0.1:${this.config.ports.gateway}`;
  }

  /** A session token for --user (password from BUCKYOS_PASSWORD or the terminal), else a local kernel token.
   * Renewed before it lapses (refreshed for --user, re-signed locally), so long commands like `logs --follow` last. */
  async getToken(): Promise<string> {
    const now = Date.now() / 1000;
    if (this.token && now < this.token.expiresAt - 60) return this.token.value;
    if (this.opts.user && process.env.BUCKYOS_TOKEN) {
      // A session token the caller already holds (scripts, tests): used as it is, never refreshed.
      return process.env.BUCKYOS_TOKEN;
    }
    if (this.opts.user) {
      const hub = createClient(verifyHubApi, { baseUrl: this.gatewayUrl });
      let r;
      if (this.token?.refresh) r = await hub.refresh({ refresh_token: this.token.refresh });
      else {
        const password = process.env.BUCKYOS_PASSWORD ?? (await promptHidden(`password for ${this.opts.user}: `));
        const { nonce } = await hub.login_nonce({});
        r = await hub.login_password({ username: this.opts.user, password, nonce, app_id: CLI_APP_ID });
      }
      this.token = { value: r.session_token, expiresAt: r.expires_at, refresh: r.refresh_token };
      return this.token.value;
    }
    const keyPath = join(this.paths.etc, IDENTITY_FILES.deviceKey);
    if (!existsSync(keyPath)) throw new Error(`this device is not activated (no ${keyPath}); activate it or pass --user`);
    let kp;
    try {
      kp = loadKeyFile(keyPath);
    } catch {
      throw new Error(`cannot read ${keyPath}: local administration needs root on the device, or pass --user`);
    }
    const ttl = Math.min(SERVICE_TOKEN_TTL_SEC, 600);
    const value = await signAccessToken({ typ: 'service', sub: 'node-daemon', app: CLI_APP_ID, jti: randomUUID() }, kp.privateKey, ttl, didDev(kp.publicKeyB64));
    this.token = { value, expiresAt: now + ttl };
    return value;
  }

  /** `node`: a service instance on that device rather than wherever the gateway would send the call. */
  client<M extends MethodMap>(api: ServiceDef<M>, opts: { node?: string; timeoutMs?: number } = {}): Client<M> {
    return createClient(api, { baseUrl: this.gatewayUrl, token: () => this.getToken(), ...opts });
  }
}

export async function promptHidden(question: string): Promise<string> {
  if (!process.stdin.isTTY) throw new Error('no terminal to ask for a password: set BUCKYOS_PASSWORD');
  process.stdout.write(question);
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  let answer = '';
  return new Promise((resolve, reject) => {
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stdout.write('\n');
          resolve(answer);
          return;
        }
        if (ch === '\u0003') {
          stdin.setRawMode(false);
          reject(new Error('cancelled'));
          return;
        }
        if (ch === '\u007f') answer = answer.slice(0, -1);
        else answer += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** Prints rows as an aligned text table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}
