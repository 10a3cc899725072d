// kRPC over a device tunnel: lets a typed kRPC client (createClient's `transport`) call a service on another device
// through that device's tunnel port, authenticated by device key rather than reached by plain HTTP.
import { KrpcError, type KrpcTransport } from '../krpc/index.ts';
import type { TunnelClient, TunnelPeer } from './tunnel-client.ts';
import { TunnelError } from './common.ts';

/** A kRPC transport that POSTs each call to `peer` through `tunnel`. Tunnel failures become UNAVAILABLE (the message
 * keeps the tunnel's own code), a call past its time limit TIMEOUT, as with plain HTTP. */
export function tunnelTransport(tunnel: TunnelClient, peer: TunnelPeer): KrpcTransport {
  return async (path, body, timeoutMs) => {
    const where = `${peer.name}${path}`;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const res = await tunnel.request(peer, {
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify(body)),
        signal,
      });
      const chunks: Buffer[] = [];
      for await (const c of res.body) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        return { status: res.status, json: JSON.parse(text) as unknown };
      } catch {
        throw new KrpcError('UNAVAILABLE', `${where} answered HTTP ${res.status} with a non-JSON body`);
      }
    } catch (e) {
      if (e instanceof KrpcError) throw e;
      if (signal.aborted) throw new KrpcError('TIMEOUT', `${where} did not answer within ${timeoutMs} ms`);
      if (e instanceof TunnelError) throw new KrpcError('UNAVAILABLE', `cannot reach ${where} through its tunnel: ${e.code}: ${e.message}`);
      throw new KrpcError('UNAVAILABLE', `${where}: ${(e as Error).message}`);
    }
  };
}
