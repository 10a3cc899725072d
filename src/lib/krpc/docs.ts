// Markdown reference for a kRPC service, generated from its declaration so the docs cannot drift from the code.
// Kept out of the krpc index: only the docs generator needs it, and no service process should load it.
import { zodToJsonSchema } from 'zod-to-json-schema';
import type { ServiceDef } from './service.ts';

export function describeService(def: ServiceDef): string {
  const lines = [`# kRPC service \`${def.name}\``, '', def.doc, '', `Endpoint: \`POST /kapi/${def.name}\``, ''];
  for (const [name, m] of Object.entries(def.methods)) {
    lines.push(`## \`${name}\``, '', m.doc, '', `Authentication: ${m.auth === 'none' ? 'none' : 'session, service or app token in sys[1]'}`, '');
    lines.push('Params (JSON Schema):', '```json', JSON.stringify(zodToJsonSchema(m.params, { target: 'jsonSchema7', pipeStrategy: 'input' }), null, 2), '```', '');
    lines.push('Result (JSON Schema):', '```json', JSON.stringify(zodToJsonSchema(m.result, { target: 'jsonSchema7', pipeStrategy: 'output' }), null, 2), '```', '');
  }
  return lines.join('\n');
}
