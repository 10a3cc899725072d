// A kRPC service is declared once: its name and, per method, the params and result schemas and whether a token is
// needed. The server validates against these schemas, the typed client is derived from them, and so are the docs.
import { z } from 'zod';

export type AuthMode = 'none' | 'token';

export interface MethodDef<P extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  params: P;
  result: R;
  auth: AuthMode;
  doc: string;
}

export type MethodMap = Record<string, MethodDef>;

export interface ServiceDef<M extends MethodMap = MethodMap> {
  name: string;
  doc: string;
  methods: M;
}

export function method<P extends z.ZodType, R extends z.ZodType>(def: {
  params: P;
  result: R;
  auth?: AuthMode;
  doc: string;
}): MethodDef<P, R> {
  return { auth: 'token', ...def };
}

const SERVICE_NAME = /^[a-z][a-z0-9-]{0,62}$/;

export function defineService<M extends MethodMap>(name: string, doc: string, methods: M): ServiceDef<M> {
  if (!SERVICE_NAME.test(name)) throw new Error(`invalid service name "${name}": lowercase letters, digits and dashes`);
  for (const m of Object.keys(methods)) {
    if (!/^[a-z][a-z0-9_.]*$/.test(m)) throw new Error(`invalid method name "${m}" in service ${name}`);
  }
  return { name, doc, methods };
}

/** What a caller passes (schema input) and what a handler receives (schema output, after defaults). */
export type ParamsIn<D extends MethodDef> = z.input<D['params']>;
export type ParamsOut<D extends MethodDef> = z.output<D['params']>;
export type Result<D extends MethodDef> = z.output<D['result']>;
