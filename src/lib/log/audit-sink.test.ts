import { it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { createAuditSink, type AuditEventIn } from './audit-sink.ts';

const quiet = pino({ level: 'silent' });
const ev = (n: number): AuditEventIn => ({ kind: 'login', actor: `u${n}`, target: '', detail: {} });

it('delivers in order, retrying while the stream is down', async () => {
  const got: string[] = [];
  let failures = 3;
  const sink = createAuditSink(async (e) => {
    if (failures-- > 0) throw new Error('klog down');
    got.push(e.actor);
  }, quiet, { maxBackoffMs: 20 });
  for (let i = 0; i < 5; i++) sink.emit(ev(i));
  await sink.flush(10_000);
  assert.deepEqual(got, ['u0', 'u1', 'u2', 'u3', 'u4']);
});

it('drops the oldest events past its bound instead of growing', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const got: string[] = [];
  const sink = createAuditSink(async (e) => {
    await gate;
    got.push(e.actor);
  }, quiet, { maxQueue: 3 });
  for (let i = 0; i < 6; i++) sink.emit(ev(i));
  release();
  await sink.flush(10_000);
  // u0 was already being sent when the queue overflowed; u1 and u2 were dropped.
  assert.deepEqual(got, ['u0', 'u3', 'u4', 'u5']);
});
