// Device-to-device tunnels (DESIGN §8): see docs/tunnel.md.
export { TunnelError, type TunnelErrorCode, CONNECTION_WINDOW, STREAM_WINDOW, DEFAULT_PING_INTERVAL_MS } from './common.ts';
export { CLOSE_GRACE_MS, startTunnelServer, type TunnelServer, type TunnelServerOptions } from './tunnel-server.ts';
export {
  TunnelClient, type TunnelClientOptions, type TunnelPeer, type TunnelRequest, type TunnelResponse, type TunnelState,
} from './tunnel-client.ts';
export { tunnelTransport } from './krpc-transport.ts';
export { type TunnelCertIdentity, deviceTunnelCert } from './device-cert.ts';
