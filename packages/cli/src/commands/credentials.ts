import { CREDENTIAL_STATUSES, type Credential, type CredentialStatus } from '../api-client.ts';
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  expectPositionals,
  parseCommandArgs,
} from '../args.ts';
import { apiClient, type Command, type CommandGroup } from '../command.ts';
import { CliError, EXIT, UsageError } from '../errors.ts';
import { cell, err, formatFields, formatTable, formatTime, out, printJson } from '../output.ts';
import { confirm } from '../prompt.ts';

const list: Command = {
  name: 'list',
  summary: 'list credentials with status and expiry (never a token)',
  help: `tokenwarden credentials list: list the credentials of your tenant

Usage:
  tokenwarden credentials list [--status <status>] [--auth-client <id>] [--json]

Shows metadata and health only; the vault never hands out tokens here.

Options:
  --status <status>     only credentials with this status: ${CREDENTIAL_STATUSES.join(', ')}
  --auth-client <id>    only credentials of this auth client
  --json                print the vault's answer ({"credentials": […]}) as JSON
  -h, --help            show this help
${CONNECTION_HELP}

Example:
  tokenwarden credentials list --status reauth_required
  tokenwarden credentials list --json | jq -r '.credentials[] | select(.status != "active") | .id'
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        status: { type: 'string' },
        'auth-client': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    expectPositionals(positionals, []);
    const status = values.status;
    if (status !== undefined && !CREDENTIAL_STATUSES.includes(status as CredentialStatus)) {
      throw new UsageError(
        `--status must be one of ${CREDENTIAL_STATUSES.join(', ')}, got ${JSON.stringify(status)}`,
      );
    }
    const credentials = await apiClient(values, context).listCredentials({
      ...(status === undefined ? {} : { status }),
      ...(values['auth-client'] === undefined ? {} : { authClientId: values['auth-client'] }),
    });
    if (values.json) {
      printJson({ credentials });
      return 0;
    }
    if (credentials.length === 0) {
      err('no credentials match');
      return 0;
    }
    out(
      formatTable(
        ['id', 'auth client', 'provider', 'status', 'expires', 'last refresh', 'refreshes'],
        credentials.map((credential) => [
          cell(credential.id),
          cell(credential.authClientId),
          cell(credential.providerId),
          cell(credential.status),
          formatTime(credential.expiresAt),
          formatTime(credential.lastRefreshAt),
          cell(credential.refreshCount),
        ]),
      ),
    );
    return 0;
  },
};

const show: Command = {
  name: 'show',
  summary: 'show one credential: status, expiry, last error (never a token)',
  help: `tokenwarden credentials show: show one credential's metadata and health

Usage:
  tokenwarden credentials show <credential-id> [--json]

Options:
  --json        print the credential as JSON
  -h, --help    show this help
${CONNECTION_HELP}

Example:
  tokenwarden credentials show cr_7hq2…
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, json: { type: 'boolean', default: false } },
    });
    const [id] = expectPositionals(positionals, ['credential-id']) as [string];
    const credential = await apiClient(values, context).getCredential(id);
    if (values.json) printJson(credential);
    else out(formatCredential(credential));
    return 0;
  },
};

export function formatCredential(credential: Credential): string {
  const lastError = credential.lastError;
  const flags = Object.entries(credential.flags ?? {})
    .filter(([, on]) => on === true)
    .map(([name]) => name);
  return formatFields([
    ['id', cell(credential.id)],
    ['auth client', cell(credential.authClientId)],
    ['provider', cell(credential.providerId)],
    [
      'status',
      `${cell(credential.status)}${credential.statusReason ? ` (${cell(credential.statusReason)})` : ''}`,
    ],
    ['expires', formatTime(credential.expiresAt)],
    ['last refresh', formatTime(credential.lastRefreshAt)],
    ['refreshes', cell(credential.refreshCount)],
    [
      'last error',
      lastError === null || lastError === undefined
        ? '-'
        : `${cell(lastError.code)}: ${cell(lastError.message)} (${formatTime(lastError.at)})`,
    ],
    ['flags', flags.length === 0 ? '-' : cell(flags.join(' '))],
    ['scope', cell(credential.scope)],
    ['created', formatTime(credential.createdAt)],
    ['updated', formatTime(credential.updatedAt)],
  ]);
}

const refresh: Command = {
  name: 'refresh',
  summary: 'refresh a credential now, at the provider',
  help: `tokenwarden credentials refresh: force a refresh of one credential

Usage:
  tokenwarden credentials refresh <credential-id> [--json]

Trades the refresh token for a new token set now (one refresh at a time per
credential, across every vault process), stores it, and shows the result.
Prints no token.

Options:
  --json        print the refreshed credential as JSON
  -h, --help    show this help
${CONNECTION_HELP}

Exit codes: 5 the provider says the grant is gone (reconnect the account);
6 the provider's token endpoint is unavailable.

Example:
  tokenwarden credentials refresh cr_7hq2…
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, json: { type: 'boolean', default: false } },
    });
    const [id] = expectPositionals(positionals, ['credential-id']) as [string];
    const credential = await apiClient(values, context).refreshCredential(id);
    if (values.json) printJson(credential);
    else
      out(
        `refreshed ${cell(credential.id)}: ${cell(credential.status)}, expires ${formatTime(credential.expiresAt)}`,
      );
    return 0;
  },
};

const remove: Command = {
  name: 'delete',
  summary: 'revoke a credential at the provider and delete it',
  help: `tokenwarden credentials delete: revoke and delete one credential

Usage:
  tokenwarden credentials delete <credential-id> [--yes]

Revokes the refresh token (or else the access token) at the provider's RFC 7009
endpoint where the provider has one, then deletes the credential. A failed
revocation is recorded in the "revoked" event and does not stop the delete.
A refresh of the credential under way is waited for first (up to the lease
time plus the token timeout); if it is still running after that, the vault
answers 409 conflict, nothing is deleted, and you can run the command again.

Asks for confirmation on a terminal; without a terminal, --yes is required
(exit 2 otherwise).

Options:
  -y, --yes     delete without asking
  -h, --help    show this help
${CONNECTION_HELP}

Example:
  tokenwarden credentials delete cr_7hq2… --yes
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, yes: { type: 'boolean', short: 'y', default: false } },
    });
    const [id] = expectPositionals(positionals, ['credential-id']) as [string];
    const interactive = process.stdin.isTTY === true && process.stderr.isTTY === true;
    if (!values.yes && !interactive)
      throw new UsageError('refusing to delete without --yes when there is no terminal to ask');
    const api = apiClient(values, context);
    if (!values.yes) {
      const credential = await api.getCredential(id);
      const sure = await confirm(
        `Delete credential ${cell(credential.id)} (${cell(credential.providerId)}, ${cell(credential.status)})? It is revoked at the provider.`,
      );
      if (!sure) throw new CliError('not deleted', EXIT.failure);
    }
    await api.deleteCredential(id);
    err(`deleted credential ${id}`);
    return 0;
  },
};

export const credentials: CommandGroup = {
  name: 'credentials',
  summary: 'list, show, refresh and delete credentials',
  description: 'the connected accounts (token sets) the vault keeps alive',
  subcommands: [list, show, refresh, remove],
};
