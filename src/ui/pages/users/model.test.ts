// The users page's rules: names and passwords are judged as verify-hub judges them (the strength rules are compared
// with the kernel's own), refusals land beside the right field, and only the actions verify-hub allows are offered.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import { passwordStrengthProblem } from '../../../kernel/verify-hub/password.ts';
import { actionsFor, checkName, checkNewPassword, checkNewUser, createNeedsSudo, explainUserError, passwordRules, sortUsers } from './model.ts';

describe('users page rules', () => {
  it('checks names: empty, too long, invalid, fine', () => {
    assert.equal(checkName('  ')?.key, 'users.name.empty');
    assert.equal(checkName('a'.repeat(33))?.key, 'users.name.too_long');
    assert.equal(checkName('Bob')?.key, 'users.name.invalid');
    assert.equal(checkName('1bob')?.key, 'users.name.invalid');
    assert.equal(checkName('b')?.key, 'users.name.invalid');
    assert.equal(checkName(' bob-2 '), null, 'surrounding spaces are trimmed');
  });

  it('agrees with verify-hub\'s strength rules on every sample', () => {
    const samples = ['', 'short1A', 'alllowercaseletters', 'ALLUPPERCASE', '1234567890', 'lower-and-dash', 'Correct-horse-9',
      'bobby-is-Great1', 'xBOBx12345', 'Пароль-пароль', '密码密码密码密码密码密码', 'aaaaaaaaa1', 'aaaaaaaa1'];
    for (const user of ['bob', 'carol']) {
      for (const pw of samples) {
        const kernel = passwordStrengthProblem(pw, user) === null;
        const ui = passwordRules(pw, user).every((r) => r.ok);
        assert.equal(ui, kernel, `${JSON.stringify(pw)} for ${user}`);
        if (pw !== '') assert.equal(checkNewPassword(pw, user) === null, kernel, `${JSON.stringify(pw)} for ${user}`);
      }
    }
  });

  it('names the first broken rule, and shows each rule\'s state as the password is typed', () => {
    assert.equal(checkNewPassword('', 'bob')?.key, 'users.password.empty');
    assert.equal(checkNewPassword('x'.repeat(1025), 'bob')?.key, 'users.password.too_long');
    assert.equal(checkNewPassword('Ab1', 'bob')?.key, 'users.password.short');
    assert.equal(checkNewPassword('abcdefghijkl', 'bob')?.key, 'users.password.kinds');
    assert.equal(checkNewPassword('my-BOB-password', 'bob')?.key, 'users.password.has_name');
    assert.deepEqual(passwordRules('Ab', '').map((r) => [r.rule, r.ok]), [['length', false], ['kinds', true], ['no_name', true]]);
    assert.deepEqual(checkNewUser({ name: '', password: '' }).map((p) => p.field), ['name', 'password']);
    assert.deepEqual(checkNewUser({ name: 'dave', password: 'Good-password-4' }), []);
  });

  it('puts verify-hub\'s refusals beside the right field', () => {
    assert.deepEqual(explainUserError(new KrpcError('ALREADY_EXISTS', 'user "bob" already exists')), { field: 'name', key: 'users.name.taken' });
    assert.equal(explainUserError(new KrpcError('INVALID_PARAMS', '"admin" is reserved for a system service or role')).key, 'users.name.reserved');
    const weak = new KrpcError('INVALID_PARAMS', 'password must not contain the user name', { issues: [{ path: 'params.password', message: 'x' }] });
    assert.equal(explainUserError(weak).field, 'password');
    assert.equal(explainUserError(weak, 'form').field, 'form');
    assert.equal(explainUserError(new KrpcError('INVALID_PARAMS', 'bad', { issues: [{ path: 'params.name' }] })).field, 'name');
    assert.equal(explainUserError(new KrpcError('NOT_FOUND', 'gone')).key, 'users.gone');
    assert.equal(explainUserError(new KrpcError('UNAVAILABLE', 'down')).key, 'users.unreachable');
    assert.equal(explainUserError(new Error('boom')).params?.message, 'boom');
  });

  it('offers only what verify-hub allows', () => {
    const owner = { name: 'alice', role: 'admin' as const, state: 'active' as const, owner: true };
    const bob = { name: 'bob', role: 'user' as const, state: 'active' as const, owner: false };
    const off = { role: false, password: false, disable: false, enable: false, delete: false };
    assert.deepEqual(actionsFor(owner, 'alice'), off);
    assert.deepEqual(actionsFor(owner, 'carol'), off);
    assert.deepEqual(actionsFor(bob, 'bob'), off);
    assert.deepEqual(actionsFor(bob, 'alice'), { role: true, password: true, disable: true, enable: false, delete: true });
    assert.deepEqual(actionsFor({ ...bob, state: 'disabled' }, 'alice'), { role: true, password: true, disable: false, enable: true, delete: true });
    assert.equal(createNeedsSudo('admin'), true);
    assert.equal(createNeedsSudo('guest'), false);
    assert.deepEqual(sortUsers([bob, { ...bob, name: 'ann', role: 'admin' }, owner]).map((u) => u.name), ['alice', 'ann', 'bob']);
  });
});
