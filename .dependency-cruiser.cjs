// The layering check (DESIGN §13): lib below services, services below the CLI and UI, and no service reaching into
// another's internals. A service's public face is its kRPC declaration in src/lib/api/ plus its `main.ts` entry.
module.exports = {
  forbidden: [
    {
      name: 'lib-is-the-bottom-layer',
      comment: 'src/lib holds protocol and identity code; it imports nothing above it.',
      severity: 'error',
      from: { path: '^src/lib/' },
      to: { path: '^src/(kernel|net|storage|apps|frame|cli)/' },
    },
    {
      name: 'services-below-cli',
      comment: 'Services never import the CLI.',
      severity: 'error',
      from: { path: '^src/(kernel|net|storage|apps|frame)/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'no-reaching-into-another-service',
      comment: 'A service uses another only through its kRPC client or its main.ts entry, never its internals.',
      severity: 'error',
      from: { path: '^src/(kernel|net|storage|apps|frame)/([^/]+)/' },
      to: {
        path: '^src/(kernel|net|storage|apps|frame)/([^/]+)/',
        pathNot: ['^src/$1/$2/', '^src/(kernel|net|storage|apps|frame)/[^/]+/main\\.ts$'],
      },
    },
    {
      name: 'cli-uses-entries-and-clients',
      comment: 'The CLI starts processes through service entries (main.ts) and otherwise talks kRPC.',
      severity: 'error',
      from: { path: '^src/cli/' },
      to: { path: '^src/(kernel|net|storage|apps|frame)/[^/]+/', pathNot: '^src/(kernel|net|storage|apps|frame)/[^/]+/main\\.ts$' },
    },
    {
      name: 'tests-stay-out-of-production',
      severity: 'error',
      from: { path: '^src/', pathNot: '\\.(test|suite)\\.ts$' },
      to: { path: '(\\.test\\.ts|\\.suite\\.ts|^test/)' },
    },
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '\\.(test|suite)\\.ts$' },
  },
};
