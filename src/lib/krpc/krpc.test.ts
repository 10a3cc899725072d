import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import {
  KrpcError, callRaw, clientAddress, createClient, createHttpApp, createKrpcEndpoint, currentTrace, defineService,
  listen, method, type RunningServer,
} from './index.ts';
import { describeService } from './docs.ts';

const echo = defineService('echo', 'Test service.', {
  say: method({ params: z.object({ text: z.string().max(10) }), result: z.object({ text: z.string(), user: z.string() }), doc: 'Echo.' }),
  ping: method({ params: z.object({}), result: z.object({ trace: z.string() }), auth: 'none', doc: 'Ping.' }),
  relay: method({ params: z.object({}), result: z.object({ inner: z.string(), outer: z.string() }), auth: 'none', doc: 'Calls ping downstream.' }),
  boom: method({ params: z.object({}), result: z.null(), auth: 'none', doc: 'Throws.' }),
});

describe('krpc', () => {
  let srv: RunningServer;
  let base: string;
  before(async () => {
    const endpoint = createKrpcEndpoint(
      echo,
      {
        say: (p, ctx) => ({ text: p.text, user: ctx.principal!.userId }),
        ping: (_p, ctx) => ({ trace: ctx.trace }),
        relay: async (_p, ctx) => {
          const inner = await createClient(echo, { baseUrl: base }).ping({});
          return { inner: inner.trace, outer: ctx.trace };
        },
        boom: () => {
          throw new Error('secret-detail');
        },
      },
      {
        maxBodyBytes: 1024,
        authenticate: (t) => {
          if (t !== 'good') throw new KrpcError('UNAUTHENTICATED', 'bad token');
          return { userId: 'alice', appId: 'test', kind: 'session', expiresAt: 0 };
        },
      },
    );
    srv = await listen(createHttpApp({ name: 'echo', endpoints: [endpoint] }), 0, '127.0.0.1');
    base = `http://127.0.0.1:${srv.port}`;
  });
  after(() => srv.close());

  it('calls a method with a token and validates params', async () => {
    const c = createClient(echo, { baseUrl: base, token: 'good' });
    assert.deepEqual(await c.say({ text: 'hi' }), { text: 'hi', user: 'alice' });
    await assert.rejects(c.say({ text: 'x'.repeat(11) }), (e: KrpcError) => e.code === 'INVALID_PARAMS' && /params.text/.test(e.message));
  });

  it('rejects missing and bad tokens', async () => {
    await assert.rejects(createClient(echo, { baseUrl: base }).say({ text: 'a' }), { code: 'UNAUTHENTICATED' });
    await assert.rejects(createClient(echo, { baseUrl: base, token: 'bad' }).say({ text: 'a' }), { code: 'UNAUTHENTICATED' });
  });

  it('validates params on the server too, naming the field', async () => {
    const r = await callRaw(`${base}/kapi/echo`, { method: 'say', params: { text: 5 }, sys: [1, 'good'] }, 5000);
    assert.equal(r.status, 400);
    assert.equal((r.json as any).error.code, 'INVALID_PARAMS');
    assert.match((r.json as any).error.message, /params\.text/);
  });

  it('answers malformed envelopes, unknown methods and oversize bodies with codes', async () => {
    const cases: [unknown, string][] = [
      [{ params: {} }, 'BAD_REQUEST'],
      [{ method: 'nope', sys: [1] }, 'METHOD_NOT_FOUND'],
      [{ method: 'ping', sys: ['x'] }, 'BAD_REQUEST'],
      [[1, 2], 'BAD_REQUEST'],
      [{ method: 'say', params: { text: 'x'.repeat(2000) }, sys: [1, 'good'] }, 'PAYLOAD_TOO_LARGE'],
      [{ method: '__proto__', sys: [1] }, 'METHOD_NOT_FOUND'],
    ];
    for (const [body, code] of cases) {
      const r = await callRaw(`${base}/kapi/echo`, body, 5000);
      assert.equal((r.json as any).error.code, code, JSON.stringify(body));
    }
    const res = await fetch(`${base}/kapi/echo`, { method: 'POST', body: '{not json' });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as any).error.code, 'BAD_REQUEST');
  });

  it('hides internal error details', async () => {
    await assert.rejects(createClient(echo, { baseUrl: base }).boom({}), (e: KrpcError) => e.code === 'INTERNAL' && !e.message.includes('secret'));
  });

  it('carries the trace id through every hop', async () => {
    const c = createClient(echo, { baseUrl: base, trace: 'trace-abc' });
    assert.deepEqual(await c.relay({}), { inner: 'trace-abc', outer: 'trace-abc' });
    assert.equal(currentTrace(), undefined);
  });

  it('generates reference docs from the declaration', () => {
    const md = describeService(echo);
    assert.match(md, /## `say`/);
    assert.match(md, /"maxLength": 10/);
  });
});

describe('clientAddress', () => {
  const req = (peer: string, fwd?: string) => ({ socket: { remoteAddress: peer }, headers: fwd ? { 'x-forwarded-for': fwd } : {} }) as never;
  it('trusts X-Forwarded-For only from a loopback peer', () => {
    assert.equal(clientAddress(req('127.0.0.1', '192.0.2.7, 10.0.0.1')), '192.0.2.7');
    assert.equal(clientAddress(req('192.0.2.9', '127.0.0.1')), '192.0.2.9');
    assert.equal(clientAddress(req('::1')), '::1');
  });
});
