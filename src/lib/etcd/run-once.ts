// The etcd3 client's fault policy that every etcd caller here uses: run each call once. The client's default retries
// a failed call, which could apply a write or a membership change twice; callers report the failure instead.
import type { IOptions } from 'etcd3';

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

export const runOnce: Policy = {
  _altReturn: undefined as never,
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
  execute: async (fn) => fn({ signal: new AbortController().signal }),
};
