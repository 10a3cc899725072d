// Delivers audit events to klog's append-only stream without ever blocking the action being audited: events queue
// in memory and are retried with back-off while klog is down (it boots after system-config and verify-hub, and may
// restart). Each event is also written to the local log at once, so nothing is lost from view even if the process
// dies before delivery; the bounded queue drops its oldest events (loudly) rather than grow without limit.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { auditEventIn } from '../api/klog.ts';

export type AuditEventIn = z.input<typeof auditEventIn>;

export interface AuditSink {
  emit(event: AuditEventIn): void;
  /** Resolves when the queue is empty (or `timeoutMs` passes). */
  flush(timeoutMs?: number): Promise<void>;
  stop(): void;
}

export function createAuditSink(
  send: (event: AuditEventIn) => Promise<void>,
  log: Logger,
  opts: { maxQueue?: number; maxBackoffMs?: number } = {},
): AuditSink {
  const maxQueue = opts.maxQueue ?? 10_000;
  const maxBackoffMs = opts.maxBackoffMs ?? 30_000;
  const queue: AuditEventIn[] = [];
  let draining = false;
  let stopped = false;
  let dropped = 0;
  let idle: (() => void)[] = [];

  async function drain(): Promise<void> {
    if (draining) return;
    draining = true;
    let backoff = 500;
    while (queue.length > 0 && !stopped) {
      // Taken off the queue while in flight, so an overflow meanwhile drops a waiting event, not this one.
      const next = queue.shift()!;
      try {
        await send(next);
        backoff = 500;
      } catch (err) {
        queue.unshift(next);
        log.debug({ err: (err as Error).message, queued: queue.length }, 'audit stream unreachable; will retry');
        await new Promise((r) => setTimeout(r, backoff).unref());
        backoff = Math.min(backoff * 2, maxBackoffMs);
      }
    }
    draining = false;
    if (queue.length === 0) {
      for (const w of idle) w();
      idle = [];
    }
  }

  return {
    emit(event) {
      log.info({ audit: event }, 'audit event');
      if (queue.length >= maxQueue) {
        queue.shift();
        dropped++;
        log.error({ dropped }, 'audit queue full: oldest undelivered audit event dropped');
      }
      queue.push(event);
      void drain();
    },
    flush(timeoutMs = 5000) {
      if (queue.length === 0 && !draining) return Promise.resolve();
      return new Promise((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        idle.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
    stop() {
      stopped = true;
    },
  };
}
