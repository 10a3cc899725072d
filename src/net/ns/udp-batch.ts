// The batched-UDP addon (native/udp-batch: recvmmsg and sendmmsg on the socket, one JavaScript call per batch). It is
// built from source at install time; where it was not (no compiler, another OS), cyfs-ns answers through node:dgram
// and says so in its log.
import { type AddonLoad, loadNativeAddon } from '../../lib/native-addon.ts';

/** What native/udp-batch/udp_batch.c exports. */
export interface UdpBatchAddon {
  /** A non-blocking UDP socket bound to address:port (IPv6 only for an IPv6 address); its descriptor. Throws with
   * `code` EADDRINUSE, EACCES or EADDRNOTAVAIL. */
  bind(address: string, port: number): number;
  port(fd: number): number;
  /** Starts answering on `fd`, which it owns from the call on (closing it when it throws too). `onBatch(packets,
   * count)` returns how many answers it put into the shared table. */
  open(fd: number, onBatch: (packets: Buffer, count: number) => number): UdpBatchListener;
  /** Per packet META_WORDS int32 (offset, length or -1 when cut, the peer's sockaddr), then per answer ANSWER_WORDS
   * int32 (packet index, offset, length), then ARENA_BYTES of answer bytes. */
  shared(l: UdpBatchListener): ArrayBuffer;
  /** One datagram now, to a peer's sockaddr as the table had it; 0 or an errno. */
  sendTo(l: UdpBatchListener, data: Uint8Array, peer: Uint8Array): number;
  close(l: UdpBatchListener): void;
  /** malloc_trim(0): returns the malloc heap's free pages to the system; true when there were some. */
  trim(): boolean;
  readonly BATCH: number;
  readonly META_WORDS: number;
  readonly ANSWER_WORDS: number;
  readonly ARENA_BYTES: number;
  /** A peer's sockaddr family when it is IPv4 (else IPv6). */
  readonly AF_INET: number;
}

declare const listener: unique symbol;
export type UdpBatchListener = { readonly [listener]: true };

let loaded: AddonLoad<UdpBatchAddon> | undefined;

/** The addon, or why it cannot be used. */
export function loadUdpBatch(): AddonLoad<UdpBatchAddon> {
  if (loaded) return loaded;
  if (process.platform !== 'linux') return (loaded = { reason: `recvmmsg batching is Linux-only (this is ${process.platform})` });
  return (loaded = loadNativeAddon<UdpBatchAddon>('udp-batch', 'udp_batch'));
}
