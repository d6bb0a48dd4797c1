import type { VaultConfig } from '@tokenwarden/vault';
import { expectPositionals, parseCommandArgs } from '../args.ts';
import type { Command } from '../command.ts';
import { EXIT } from '../errors.ts';
import { err, out } from '../output.ts';
import { loadVault, rethrowConfigError } from '../vault-module.ts';

/** Each flag sets the environment variable the vault's loadConfig reads (flags win). */
const ENV_FOR_FLAG = {
  port: 'PORT',
  host: 'HOST',
  'data-dir': 'TOKENWARDEN_DATA_DIR',
  'database-url': 'DATABASE_URL',
  'public-url': 'TOKENWARDEN_PUBLIC_URL',
  'log-level': 'LOG_LEVEL',
} as const;

export const FLAG_FOR_ENV: Readonly<Record<string, string>> = {
  ...Object.fromEntries(Object.entries(ENV_FOR_FLAG).map(([flag, env]) => [env, `--${flag}`])),
  TOKENWARDEN_DEMO_PROVIDER: '--demo',
};

export const serve: Command = {
  name: 'serve',
  summary: 'run the vault (HTTP API, connect flow, refresher, web UI) in this process',
  help: `tokenwarden serve: run the vault in this process

Usage:
  tokenwarden serve [--port <n>] [--host <addr>] [--data-dir <dir>]
      [--database-url <url>] [--public-url <url>] [--demo | --no-demo]
      [--log-level <level>]

Serves the HTTP API, the connect flow, the web UI and the background refresher.
Prints "listening on <url>" on stdout once it accepts requests. On the first
start it generates the master key in the data folder (mode 0600) and an admin
API key, printed once (only its hash is stored): use it as TOKENWARDEN_API_KEY. SIGINT or SIGTERM
(Ctrl-C) stops it cleanly (exit 0).

Each option sets an environment variable (and wins when both are given).

Options:
  --port <n>             PORT (default 8080; 0 picks a free port)
  --host <addr>          HOST (default 127.0.0.1; 0.0.0.0 for every interface)
  --data-dir <dir>       TOKENWARDEN_DATA_DIR (default .data/vault): SQLite
                         database, generated master key and admin key
  --database-url <url>   DATABASE_URL: PostgreSQL instead of SQLite, for several
                         replicas (prefer the variable: it holds a password)
  --public-url <url>     TOKENWARDEN_PUBLIC_URL: the URL browsers and providers
                         reach the vault at (the redirect URI is <url>/oauth/callback)
  --demo, --no-demo      TOKENWARDEN_DEMO_PROVIDER: start the built-in fake
                         provider and register it as an auth client (default off);
                         turns on TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS too
  --log-level <level>    LOG_LEVEL: fatal, error, warn, info (default), debug,
                         trace, silent
  -h, --help             show this help

Settings only the environment gives (docs/operations.md describes each):
  TOKENWARDEN_MASTER_KEYS (kid:base64key,…), TOKENWARDEN_ADMIN_KEY,
  TOKENWARDEN_RETURN_TO_ALLOWLIST, TOKENWARDEN_DATABASE_SCHEMA,
  TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS (auth clients may use endpoints on
  127.0.0.1, localhost, [::1]; development and tests only, default off),
  TOKENWARDEN_INSTANCE_ID, TOKENWARDEN_LEASE_SECONDS, TOKENWARDEN_TOKEN_TIMEOUT_MS,
  TOKENWARDEN_HOLDER_LIVENESS (PostgreSQL: a dead process's leases are taken
  over at once, default on), TOKENWARDEN_DEMO_TOKEN_LIFETIME;
  refresher: TOKENWARDEN_BACKGROUND_REFRESH, TOKENWARDEN_REFRESH_INTERVAL_MS,
  TOKENWARDEN_REFRESH_CLAIM_SIZE, TOKENWARDEN_REFRESH_BACKOFF_MS,
  TOKENWARDEN_REFRESH_BACKOFF_MAX_MS, TOKENWARDEN_PROVIDER_LIMITS
  (provider=concurrency/rate[/burst],…);
  webhooks: TOKENWARDEN_WEBHOOK_DELIVERY, TOKENWARDEN_WEBHOOK_INTERVAL_MS,
  TOKENWARDEN_WEBHOOK_TIMEOUT_MS, TOKENWARDEN_WEBHOOK_RETRY_SCHEDULE,
  TOKENWARDEN_WEBHOOK_CONCURRENCY, TOKENWARDEN_WEBHOOK_ALLOW_INSECURE_HTTP,
  TOKENWARDEN_WEBHOOK_RETENTION_DAYS.

Exit codes: 0 stopped by a signal; 2 invalid configuration (every problem is
listed); 1 the vault failed to start (e.g. the port is taken).

Example:
  tokenwarden serve --demo
  DATABASE_URL=postgres://tw@db/tokenwarden tokenwarden serve --host 0.0.0.0 \\
      --public-url https://vault.example.com
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      allowNegative: true,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'data-dir': { type: 'string' },
        'database-url': { type: 'string' },
        'public-url': { type: 'string' },
        demo: { type: 'boolean' },
        'log-level': { type: 'string' },
      },
    });
    expectPositionals(positionals, []);
    const source: Record<string, string | undefined> = { ...context.env };
    for (const [flag, name] of Object.entries(ENV_FOR_FLAG)) {
      const value = values[flag as keyof typeof ENV_FOR_FLAG];
      if (value !== undefined) source[name] = value;
    }
    if (values.demo !== undefined) source.TOKENWARDEN_DEMO_PROVIDER = values.demo ? '1' : '0';
    if (source.DATABASE_URL !== undefined && source.DATABASE_URL !== '')
      context.secrets.add(source.DATABASE_URL);

    const vault = await loadVault();
    let config: VaultConfig;
    try {
      config = vault.loadConfig(source);
    } catch (error) {
      rethrowConfigError(vault, error, FLAG_FOR_ENV);
    }
    let running: Awaited<ReturnType<typeof vault.startVault>>;
    try {
      running = await vault.startVault(config);
    } catch (error) {
      rethrowConfigError(vault, error, FLAG_FOR_ENV);
    }
    if (running.firstAdminKey !== undefined) {
      // Shown this once (the vault stores only its hash); stderr keeps it out of piped logs' stdout.
      err(
        [
          'First start: created the admin API key. It is shown only now; keep it safe:',
          '',
          `  export TOKENWARDEN_API_KEY=${running.firstAdminKey}`,
          '',
        ].join('\n'),
      );
    }
    out(`listening on ${running.url}`);
    err(
      [
        '',
        `  Web UI:  ${running.publicUrl}/   (sign in with the admin API key${running.firstAdminKey === undefined ? ' printed at the first start, or TOKENWARDEN_ADMIN_KEY' : ' above'})`,
        `  API:     ${running.publicUrl}/docs`,
        ...(running.demoAuthClientId === undefined
          ? []
          : [
              `  Demo:    press Connect on "Demo provider", approve, and watch the credential refresh;`,
              `           or run: tokenwarden connect ${running.demoAuthClientId}`,
            ]),
        ...(config.allowLoopbackEndpoints
          ? [
              `  Note:    auth clients may use endpoints on loopback hosts (TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS${config.demoProvider ? ', on for --demo' : ''}); never in production`,
            ]
          : []),
        '',
      ].join('\n'),
    );
    if (running.publicUrl !== running.url) err(`public URL: ${running.publicUrl}`);

    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      const stop = (received: NodeJS.Signals) => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve(received);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    // A second signal while closing means "now".
    const force = () => {
      err('stopping immediately');
      process.exit(EXIT.failure);
    };
    process.once('SIGINT', force);
    process.once('SIGTERM', force);
    err(`${signal}: stopping…`);
    await running.close();
    process.off('SIGINT', force);
    process.off('SIGTERM', force);
    err('stopped');
    return 0;
  },
};
