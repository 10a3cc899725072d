import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { renderApiDocs } from './gen-api-docs.ts';

it('docs/api is generated from the current kRPC declarations (run scripts/gen-api-docs.ts)', () => {
  for (const [path, text] of renderApiDocs()) assert.equal(readFileSync(path, 'utf8'), text, `${path} is stale`);
});
