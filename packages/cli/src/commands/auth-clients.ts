import type { AuthClient, NewAuthClient } from '../api-client.ts';
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  expectPositionals,
  parseCommandArgs,
} from '../args.ts';
import { apiClient, type Command, type CommandGroup, type Context } from '../command.ts';
import { CliError, UsageError } from '../errors.ts';
import { cell, err, formatFields, formatTable, formatTime, out, printJson } from '../output.ts';
import { promptHidden, readStdin } from '../prompt.ts';

const add: Command = {
  name: 'add',
  summary: 'register the OAuth2 client (id, secret, scopes) of a provider',
  help: `tokenwarden auth-clients add: register the OAuth2 client of a provider

Usage:
  tokenwarden auth-clients add --name <name> --provider <profile> --client-id <id>
      [--client-secret-stdin | --client-secret-env <VAR>] [--scope <scope>]...
      [--placeholder <name>=<value>]... [--authorization-url <url>]
      [--token-url <url>] [--revocation-url <url>] [--json]

The client secret is never a flag value (it would land in shell history and in
the process list): pipe it in with --client-secret-stdin (typed without echo
when stdin is a terminal), or name an environment variable that holds it.
One of them is required: the vault registers confidential clients only.

Prints the new auth client's id on stdout.

Endpoints must be https. Endpoints on the vault's own machine (127.0.0.1,
localhost, [::1]; http allowed there) are refused with validation_failed
(exit 1) unless the vault runs with TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS=1,
which "tokenwarden serve --demo" sets: development and tests only.

Options:
  --name <name>                 a name for people (e.g. "Outlook production")
  --provider <profile>          provider profile id (see docs/providers.md), or
                                oauth2 for any RFC 6749 server with the URLs below
  --client-id <id>              the client id the provider issued
  --client-secret-stdin         read the client secret from stdin
  --client-secret-env <VAR>     read the client secret from environment variable VAR
  --scope <scope>               a scope to request; repeat for several (default:
                                the profile's default scopes)
  --placeholder <name>=<value>  a value for a placeholder of the profile's URLs,
                                e.g. tenant=contoso.onmicrosoft.com; repeatable
  --authorization-url <url>     override or supply the authorization endpoint
  --token-url <url>             override or supply the token endpoint
  --revocation-url <url>        override or supply the RFC 7009 revocation endpoint
  --json                        print the created auth client as JSON instead of its id
  -h, --help                    show this help
${CONNECTION_HELP}

Example:
  printf %s "$OUTLOOK_SECRET" | tokenwarden auth-clients add --name Outlook \\
      --provider microsoft --client-id 0b5c… --client-secret-stdin \\
      --scope offline_access --scope Mail.Read --placeholder tenant=common
`,
  async run(args, context) {
    for (const arg of args) {
      if (arg === '--') break;
      if (arg === '--client-secret' || arg.startsWith('--client-secret=')) {
        throw new UsageError(
          'the client secret is not taken as a flag value (it would land in shell history and the process list): use --client-secret-stdin or --client-secret-env <VAR>',
        );
      }
    }
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        name: { type: 'string' },
        provider: { type: 'string' },
        'client-id': { type: 'string' },
        'client-secret-stdin': { type: 'boolean', default: false },
        'client-secret-env': { type: 'string' },
        scope: { type: 'string', multiple: true },
        placeholder: { type: 'string', multiple: true },
        'authorization-url': { type: 'string' },
        'token-url': { type: 'string' },
        'revocation-url': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    // Never echo a stray positional here: it may well be a secret typed in the wrong place.
    if (positionals.length > 0)
      throw new UsageError('auth-clients add takes no positional arguments (only options)');
    const required = ['name', 'provider', 'client-id'] as const;
    const missing = required.filter((name) => values[name] === undefined || values[name] === '');
    if (missing.length > 0)
      throw new UsageError(`missing ${missing.map((name) => `--${name}`).join(', ')}`);
    if (values['client-secret-stdin'] && values['client-secret-env'] !== undefined)
      throw new UsageError('give --client-secret-stdin or --client-secret-env, not both');

    const body: NewAuthClient = {
      name: values.name as string,
      providerId: values.provider as string,
      clientId: values['client-id'] as string,
    };
    if (values.scope !== undefined) body.scopes = values.scope;
    if (values.placeholder !== undefined) body.placeholders = parsePlaceholders(values.placeholder);
    const endpoints: NonNullable<NewAuthClient['endpoints']> = {};
    if (values['authorization-url'] !== undefined)
      endpoints.authorizationUrl = values['authorization-url'];
    if (values['token-url'] !== undefined) endpoints.tokenUrl = values['token-url'];
    if (values['revocation-url'] !== undefined) endpoints.revocationUrl = values['revocation-url'];
    if (Object.keys(endpoints).length > 0) body.endpoints = endpoints;

    // Check the connection settings before asking for a secret.
    const api = apiClient(values, context);
    const secret = await readClientSecret(values, context);
    if (secret === undefined) {
      throw new UsageError(
        'a client secret is required: pass --client-secret-stdin or --client-secret-env <VAR> (the vault registers confidential clients only)',
      );
    }
    body.clientSecret = secret;

    const created = await api.createAuthClient(body);
    err(
      `created auth client ${cell(created.id)} (${cell(created.name)}, provider ${cell(created.providerId)})`,
    );
    if (values.json) printJson(created);
    else out(created.id);
    return 0;
  },
};

function parsePlaceholders(items: readonly string[]): Record<string, string> {
  const placeholders: Record<string, string> = {};
  for (const item of items) {
    const at = item.indexOf('=');
    if (at <= 0)
      throw new UsageError(`--placeholder must be <name>=<value>, got ${JSON.stringify(item)}`);
    placeholders[item.slice(0, at)] = item.slice(at + 1);
  }
  return placeholders;
}

async function readClientSecret(
  values: { 'client-secret-stdin'?: boolean; 'client-secret-env'?: string | undefined },
  context: Context,
): Promise<string | undefined> {
  let secret: string;
  if (values['client-secret-stdin']) {
    secret = process.stdin.isTTY ? await promptHidden('Client secret: ') : await readStdin();
    secret = secret.trim();
    if (secret === '') throw new UsageError('--client-secret-stdin: stdin held no secret');
  } else if (values['client-secret-env'] !== undefined) {
    const name = values['client-secret-env'];
    secret = (context.env[name] ?? '').trim();
    if (secret === '')
      throw new UsageError(`--client-secret-env: environment variable ${name} is not set or empty`);
  } else {
    return undefined;
  }
  context.secrets.add(secret);
  return secret;
}

const list: Command = {
  name: 'list',
  summary: 'list the auth clients',
  help: `tokenwarden auth-clients list: list the auth clients of your tenant

Usage:
  tokenwarden auth-clients list [--json]

Options:
  --json        print the vault's answer ({"authClients": […]}) as JSON
  -h, --help    show this help
${CONNECTION_HELP}

Example:
  tokenwarden auth-clients list
  tokenwarden auth-clients list --json | jq -r '.authClients[].id'
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, json: { type: 'boolean', default: false } },
    });
    expectPositionals(positionals, []);
    const authClients = await apiClient(values, context).listAuthClients();
    if (values.json) {
      printJson({ authClients });
      return 0;
    }
    if (authClients.length === 0) {
      err('no auth clients yet: add one with "tokenwarden auth-clients add"');
      return 0;
    }
    out(
      formatTable(
        ['id', 'name', 'provider', 'client id', 'secret', 'scopes', 'status'],
        authClients.map((client) => [
          cell(client.id),
          cell(client.name),
          cell(client.providerId),
          cell(client.clientId),
          client.hasClientSecret ? 'yes' : 'no',
          cell(Array.isArray(client.scopes) ? client.scopes.join(' ') : undefined),
          cell(client.status),
        ]),
      ),
    );
    return 0;
  },
};

const show: Command = {
  name: 'show',
  summary: 'show one auth client (never its secret)',
  help: `tokenwarden auth-clients show: show one auth client

Usage:
  tokenwarden auth-clients show <auth-client-id> [--json]

The client secret is write-only: the vault only says whether there is one.

Options:
  --json        print the auth client as JSON
  -h, --help    show this help
${CONNECTION_HELP}

Example:
  tokenwarden auth-clients show ac_2k9f…
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, json: { type: 'boolean', default: false } },
    });
    const [id] = expectPositionals(positionals, ['auth-client-id']) as [string];
    const client = await apiClient(values, context).getAuthClient(id);
    if (values.json) printJson(client);
    else out(formatAuthClient(client));
    return 0;
  },
};

function formatAuthClient(client: AuthClient): string {
  const endpoints = client.endpoints ?? {};
  const placeholders = Object.entries(client.placeholders ?? {});
  return formatFields([
    ['id', cell(client.id)],
    ['name', cell(client.name)],
    ['provider', cell(client.providerId)],
    ['client id', cell(client.clientId)],
    ['client secret', client.hasClientSecret ? 'set (write-only)' : 'none'],
    ['scopes', cell(Array.isArray(client.scopes) ? client.scopes.join(' ') : undefined)],
    [
      'placeholders',
      placeholders.length === 0 ? '-' : cell(placeholders.map(([k, v]) => `${k}=${v}`).join(' ')),
    ],
    ['authorization url', cell(endpoints.authorizationUrl)],
    ['token url', cell(endpoints.tokenUrl)],
    ['revocation url', cell(endpoints.revocationUrl)],
    [
      'status',
      `${cell(client.status)}${client.statusReason ? ` (${cell(client.statusReason)})` : ''}`,
    ],
    ['created', formatTime(client.createdAt)],
    ['updated', formatTime(client.updatedAt)],
  ]);
}

const remove: Command = {
  name: 'remove',
  summary: 'delete an auth client that no credential uses',
  help: `tokenwarden auth-clients remove: delete an auth client

Usage:
  tokenwarden auth-clients remove <auth-client-id>

The vault refuses (exit 1, conflict) while credentials use the auth client:
delete those first ("tokenwarden credentials list --auth-client <id>").

Options:
  -h, --help    show this help
${CONNECTION_HELP}

Example:
  tokenwarden auth-clients remove ac_2k9f…
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS },
    });
    const [id] = expectPositionals(positionals, ['auth-client-id']) as [string];
    try {
      await apiClient(values, context).deleteAuthClient(id);
    } catch (error) {
      if (error instanceof CliError && error.code === 'conflict') {
        throw new CliError(error.message, error.exitCode, {
          code: error.code,
          hint: `Credentials still use it: tokenwarden credentials list --auth-client ${id}`,
        });
      }
      throw error;
    }
    err(`removed auth client ${id}`);
    return 0;
  },
};

export const authClients: CommandGroup = {
  name: 'auth-clients',
  summary: 'register, list and remove OAuth2 clients (auth clients)',
  description: 'the OAuth2 clients (client id, secret, scopes) accounts are connected with',
  subcommands: [add, list, show, remove],
};
