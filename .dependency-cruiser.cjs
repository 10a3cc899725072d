// The layering check (DESIGN §13): lib below services, services below the CLI and UI, and no service reaching into
// another's internals. A service's public face is its kRPC declaration in src/lib/api/ plus its `main.ts` entry.
/** The owner's side of activation, which the activation page runs in the browser (docs/ui-activation.md). */
const BROWSER_IDENTITY = '^src/lib/identity/(activation-docs|base64url|doc-schemas|ed25519|names|recovery-phrase)\\.ts$';

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
      name: 'ui-reaches-the-system-through-kRPC',
      comment:
        'The system UI runs in a browser: it calls services through their kRPC declarations (src/lib/api) and the ' +
        'browser client (src/lib/krpc), never their code. Record shapes from elsewhere in src/lib come in as types only, ' +
        'which the bundle erases.',
      severity: 'error',
      from: { path: '^src/ui/' },
      to: {
        path: '^src/',
        pathNot: ['^src/ui/', '^src/lib/api/', '^src/lib/krpc/(call|errors|fetch-client|service|validate)\\.ts$', '^src/lib/config/(zone-settings|record)\\.ts$', BROWSER_IDENTITY],
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'browser-code-has-no-node-builtins',
      comment: 'The system UI and the kRPC declarations it bundles run in browsers, where Node\'s built-in modules do not exist.',
      severity: 'error',
      from: {
        path: [
          '^src/ui/',
          '^src/lib/api/',
          '^src/lib/krpc/(call|errors|fetch-client|service|validate)\\.ts$',
          '^src/lib/(identity/names|config/storage-records|config/zone-settings|config/record|rbac/default-policy)\\.ts$',
          BROWSER_IDENTITY,
        ],
      },
      to: { dependencyTypes: ['core'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'declarations-stay-browser-safe',
      comment: 'What the kRPC declarations import is bundled into the system UI, so it must be free of Node as well.',
      severity: 'error',
      from: { path: '^src/lib/api/' },
      to: { path: '^src/', pathNot: ['^src/lib/api/', '^src/lib/krpc/(service|validate)\\.ts$', '^src/lib/identity/names\\.ts$', '^src/lib/config/storage-records\\.ts$', '^src/lib/rbac/default-policy\\.ts$'] },
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
