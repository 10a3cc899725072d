export * from './errors.ts';
export * from './context.ts';
export * from './service.ts';
export * from './server.ts';
export * from './client.ts';
export * from './agent.ts';
export * from './http-app.ts';
