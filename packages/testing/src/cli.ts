#!/usr/bin/env node
/**
 * tokenwarden-fake-provider: runs the fake OAuth2 provider until SIGINT or
 * SIGTERM, for benchmarks, the demo and manual testing.
 */
import { parseArgs } from 'node:util';
import { PERSONALITIES } from './personalities.ts';
import { startFakeProvider } from './provider.ts';
import type {
  ClientRegistration,
  FakeProvider,
  FakeProviderOptions,
  Personality,
} from './types.ts';

const NAME = 'tokenwarden-fake-provider';

const USAGE = `Usage: ${NAME} [options]

Runs a fake OAuth2 authorization server and protected resource for tests,
benchmarks and demos. Prints one JSON line with its URLs, then serves until
SIGINT or SIGTERM.

Options:
  --personality <name>        ${PERSONALITIES.join(' | ')} (default generic)
  --port <port>               port to listen on; 0 picks a free one (default 4010)
  --host <address>            address to listen on (default 127.0.0.1); the
                              control API has no authentication, so keep it on loopback
  --token-lifetime <seconds>  access-token lifetime (default 3600)
  --grace <seconds>           microsoft: how long a rotated refresh token stays
                              valid (default 10)
  --client <id:secret>        register a client; repeatable (default demo-client:demo-secret).
                              Clients accept any redirect URI on a loopback host.
  --auto-approve              skip the consent page
  -h, --help                  show this help

Example:
  ${NAME} --personality microsoft --token-lifetime 60 --client app:s3cret
`;

class UsageError extends Error {}

function parseCommandLine(args: string[]): FakeProviderOptions | 'help' {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (error) {
    // parseArgs names the offending flag in its message.
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values } = parsed;
  if (values.help === true) return 'help';

  const problems: string[] = [];
  const options: FakeProviderOptions = { autoApprove: values['auto-approve'] === true };

  if (values.personality !== undefined) {
    if ((PERSONALITIES as readonly string[]).includes(values.personality)) {
      options.personality = values.personality as Personality;
    } else {
      problems.push(`--personality must be one of ${PERSONALITIES.join(', ')}`);
    }
  }
  const port = numberFlag(values.port ?? '4010');
  if (port === null || !Number.isInteger(port) || port < 0 || port > 65535) {
    problems.push('--port must be an integer from 0 to 65535');
  } else {
    options.port = port;
  }
  if (values.host !== undefined) {
    if (values.host === '') problems.push('--host must not be empty');
    else options.host = values.host;
  }
  if (values['token-lifetime'] !== undefined) {
    const lifetime = numberFlag(values['token-lifetime']);
    if (lifetime === null || lifetime <= 0)
      problems.push('--token-lifetime must be a positive number of seconds');
    else options.accessTokenLifetimeSeconds = lifetime;
  }
  if (values.grace !== undefined) {
    const grace = numberFlag(values.grace);
    if (grace === null || grace < 0)
      problems.push('--grace must be a number of seconds, 0 or more');
    else options.refreshGraceSeconds = grace;
  }
  if (values.client !== undefined) {
    const clients: ClientRegistration[] = [];
    for (const value of values.client) {
      // The secret may itself contain ':'; the id may not.
      const colon = value.indexOf(':');
      if (colon <= 0 || colon === value.length - 1) {
        problems.push('--client must be <id>:<secret>');
      } else {
        clients.push({ clientId: value.slice(0, colon), clientSecret: value.slice(colon + 1) });
      }
    }
    options.clients = clients;
  }
  if (problems.length > 0) throw new UsageError(problems.join('\n'));
  return options;
}

function parse(args: string[]) {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      personality: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'token-lifetime': { type: 'string' },
      grace: { type: 'string' },
      client: { type: 'string', multiple: true },
      'auto-approve': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function numberFlag(text: string): number | null {
  const value = Number(text);
  return text.trim() === '' || !Number.isFinite(value) ? null : value;
}

async function main(): Promise<void> {
  let options: FakeProviderOptions | 'help';
  try {
    options = parseCommandLine(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    const lines = error.message.split('\n').map((line) => `${NAME}: ${line}\n`);
    process.stderr.write(`${lines.join('')}Run ${NAME} --help for usage.\n`);
    process.exitCode = 2;
    return;
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return;
  }

  // Handlers go in before the URLs are printed: whoever reads that line may
  // signal at once, and the default action would skip the clean close.
  let provider: FakeProvider | undefined;
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    (provider?.close() ?? Promise.resolve()).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  try {
    provider = await startFakeProvider(options);
  } catch (error) {
    process.stderr.write(
      `${NAME}: cannot start: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  }
  // Client ids only: secrets never reach the console.
  const clientIds = options.clients?.map((c) => c.clientId) ?? ['demo-client'];
  process.stdout.write(
    `${JSON.stringify({
      url: provider.url,
      issuer: provider.issuer,
      authorizationEndpoint: provider.authorizationEndpoint,
      tokenEndpoint: provider.tokenEndpoint,
      revocationEndpoint: provider.revocationEndpoint,
      resourceUrl: provider.resourceUrl,
      controlUrl: `${provider.url}/_control`,
      personality: provider.personality,
      clientIds,
    })}\n`,
  );
}

await main();
