// The keep-alive HTTP agent every long-running client here uses between its requests to kernel services and peers.
import { Agent, type AgentOptions } from 'node:http';

/** How long a socket may sit idle in the pool when the server announces no keep-alive timeout of its own. */
const POOL_IDLE_MS = 60_000;

/**
 * A keep-alive agent that lets an idle socket go before the server closes it. Node's Agent follows a server's
 * `Keep-Alive: timeout=N` (dropping the socket at N-1 s) only when the agent has a timeout of its own; without one it
 * keeps the socket, and a request written just as the server's keep-alive timer fires is reset (ECONNRESET) before
 * the server reads it. A request's own `timeout` still governs the socket while that request uses it.
 */
export function keepAliveAgent(opts: Omit<AgentOptions, 'keepAlive' | 'timeout'> = {}): Agent {
  return new Agent({ ...opts, keepAlive: true, timeout: POOL_IDLE_MS });
}
