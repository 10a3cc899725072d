import { newEnforcer, newModelFromString, StringAdapter, EnforceContext } from 'casbin';
const model = `
[request_definition]
r = user, app, obj, act

[policy_definition]
p = sub, obj, act
p2 = sub, obj, act

[role_definition]
g = _, _
g2 = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.user, p.sub) && actMatch(r.act, p.act) && objMatch(r.obj, p.obj, r.user, r.app)
m2 = g2(r.app, p2.sub) && actMatch(r.act, p2.act) && objMatch(r.obj, p2.obj, r.user, r.app)
`;
const lines: string[] = ['p, user, obj://config/users/{user}/*, read|write', 'p2, app, obj://config/users/*/apps/{app}/*, read|write'];
for (let i = 0; i < 500; i++) { lines.push(`p, u${i}, obj://dfs/vol/x${i}/*, read`); lines.push(`g, u${i}, user`); }
for (let i = 0; i < 200; i++) { lines.push(`p2, a${i}, obj://dfs/vol/a${i}/*, read`); lines.push(`g2, a${i}, app`); }
const e = await newEnforcer(newModelFromString(model), new StringAdapter(lines.join('\n')));
const rx = new Map<string, RegExp>();
await e.addFunction('actMatch', (a: string, p: string) => p === '*' || p.split('|').includes(a));
await e.addFunction('objMatch', (o: string, p: string, u: string, a: string) => {
  const s = p.replaceAll('{user}', u).replaceAll('{app}', a);
  if (s.endsWith('*')) return o.startsWith(s.slice(0, -1));
  return o === s;
});
const ctx2 = new EnforceContext('r', 'p2', 'e', 'm2');
console.log(e.enforceSync('u499', 'a199', 'obj://config/users/u499/x', 'read'), e.enforceSync(ctx2, 'u499', 'a199', 'obj://config/users/u499/apps/a199/x', 'read'));
const N = 2000;
let t = performance.now();
for (let i = 0; i < N; i++) e.enforceSync('u499', 'a199', 'obj://dfs/vol/x499/f', 'read');
console.log('user side allow (late line) ms/check', (performance.now() - t) / N);
t = performance.now();
for (let i = 0; i < N; i++) e.enforceSync('u499', 'a199', 'obj://dfs/vol/zz/f', 'read');
console.log('deny ms/check', (performance.now() - t) / N);
