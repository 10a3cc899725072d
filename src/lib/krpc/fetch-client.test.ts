// The browser client (fetch) against a real kRPC server, and the UTF-8 count the declarations use in browsers.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { KrpcError, createHttpApp, createKrpcEndpoint, defineService, listen, method, type RunningServer } from './index.ts';
import { createFetchClient } from './fetch-client.ts';
import { countUtf8 } from './validate.ts';

const echo = defineService('echo', 'Test service.', {
  say: method({ params: z.object({ text: z.string().max(10) }).strict(), result: z.object({ text: z.string(), user: z.string(), trace: z.string() }), doc: 'Echo.' }),
});

describe('createFetchClient', () => {
  let srv: RunningServer;
  let base: string;
  before(async () => {
    const endpoint = createKrpcEndpoint(echo, { say: (p, ctx) => ({ text: p.text, user: ctx.principal!.userId, trace: ctx.trace }) }, {
      authenticate: (t) => {
        if (t === 'old') throw new KrpcError('TOKEN_EXPIRED', 'expired');
        if (t !== 'good') throw new KrpcError('UNAUTHENTICATED', 'bad token');
        return { userId: 'alice', appId: 'control-panel', kind: 'session', expiresAt: 0 };
      },
    });
    srv = await listen(createHttpApp({ name: 'echo', endpoints: [endpoint] }), 0, '127.0.0.1');
    base = `http://127.0.0.1:${srv.port}`;
  });
  after(async () => srv.close());

  it('calls with the token in the envelope and a fresh trace id per call', async () => {
    let asked = 0;
    const c = createFetchClient(echo, { baseUrl: base, token: async () => (asked++, 'good') });
    const a = await c.say({ text: 'hi' });
    const b = await c.say({ text: 'hi' });
    assert.equal(a.user, 'alice');
    assert.match(a.trace, /^[0-9a-f]{16}$/);
    assert.notEqual(a.trace, b.trace);
    assert.equal(asked, 2);
  });

  it('answers the server\'s error code, and checks params before sending', async () => {
    await assert.rejects(createFetchClient(echo, { baseUrl: base, token: 'old' }).say({ text: 'hi' }), (e: KrpcError) => e.code === 'TOKEN_EXPIRED');
    await assert.rejects(createFetchClient(echo, { baseUrl: base }).say({ text: 'hi' }), (e: KrpcError) => e.code === 'UNAUTHENTICATED');
    await assert.rejects(createFetchClient(echo, { baseUrl: 'http://127.0.0.1:1' }).say({ text: 'x'.repeat(11) }), (e: KrpcError) => e.code === 'INVALID_PARAMS' && /params\.text/.test(e.message));
  });

  it('reports an unreachable server as UNAVAILABLE and a slow one as TIMEOUT', async () => {
    await assert.rejects(createFetchClient(echo, { baseUrl: 'http://127.0.0.1:1' }).say({ text: 'x' }), (e: KrpcError) => e.code === 'UNAVAILABLE');
    const slow = await listen(createHttpApp({ name: 'slow', fallback: () => new Promise(() => {}) }), 0, '127.0.0.1');
    try {
      await assert.rejects(createFetchClient(echo, { baseUrl: `http://127.0.0.1:${slow.port}`, timeoutMs: 100 }).say({ text: 'x' }), (e: KrpcError) => e.code === 'TIMEOUT');
    } finally {
      await slow.close();
    }
  });
});

describe('countUtf8', () => {
  it('counts what Buffer.byteLength counts, lone surrogates included', () => {
    for (const s of ['', 'abc', 'é', '中文', '😀', 'a😀b', '\ud800', 'x\udc00y', '\ud83d', `${'\u0800'.repeat(3)}\u07ff`]) {
      assert.equal(countUtf8(s), Buffer.byteLength(s), JSON.stringify(s));
    }
  });
});
