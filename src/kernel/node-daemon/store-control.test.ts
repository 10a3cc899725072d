// Which core devices form the zone's etcd cluster: an odd number, at most seven, the orchestrating device first.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pickMembers } from './store-control.ts';

const devices = (...names: string[]) => names.map((name, i) => ({ name, ip: `10.0.0.${i + 1}` }));
const names = (picked: { name: string }[]) => picked.map((d) => d.name);

describe('pickMembers', () => {
  it('takes an odd number of devices, the orchestrator first, the rest by name', () => {
    assert.deepEqual(names(pickMembers(devices('c', 'a', 'self'), 'self')), ['self', 'a', 'c']);
    assert.deepEqual(names(pickMembers(devices('d', 'c', 'b', 'self'), 'self')), ['self', 'b', 'c'], 'four devices make three members');
    assert.deepEqual(names(pickMembers(devices('self', 'a'), 'self')), ['self'], 'two devices make one member: too few for a cluster');
  });

  it('stops at seven members', () => {
    const nine = devices('self', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h');
    assert.deepEqual(names(pickMembers(nine, 'self')), ['self', 'a', 'b', 'c', 'd', 'e', 'f']);
  });
});
