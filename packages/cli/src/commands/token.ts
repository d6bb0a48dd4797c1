import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  expectPositionals,
  parseCommandArgs,
  parseSeconds,
} from '../args.ts';
import { apiClient, type Command } from '../command.ts';

export const token: Command = {
  name: 'token',
  summary: 'print a valid access token of a credential (for scripts)',
  help: `tokenwarden token: print a valid access token, for scripts

Usage:
  tokenwarden token <credential-id> [--min-validity <seconds>]

Asks the vault for the credential's access token, refreshing it first when it
expires within --min-validity seconds (the vault caps this at half the token's
lifetime). Prints the access token and a newline on stdout and nothing else;
errors go to stderr. Never prints the refresh token.

Options:
  --min-validity <seconds>   the token must stay valid at least this long
                             (default 0: any token not yet expired)
  -h, --help                 show this help
${CONNECTION_HELP}

Exit codes: 0 the token is on stdout; 4 no such credential; 5 the user must
reconnect the account (reauth_required); 6 the provider or the vault is
unavailable, try again later; 3 the API key was refused.

Example:
  curl -H "Authorization: Bearer $(tokenwarden token cr_7hq2… --min-validity 300)" \\
      https://graph.microsoft.com/v1.0/me
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, 'min-validity': { type: 'string' } },
    });
    const [id] = expectPositionals(positionals, ['credential-id']) as [string];
    const minValidity = values['min-validity'];
    const body =
      minValidity === undefined
        ? {}
        : { minValiditySeconds: parseSeconds('min-validity', minValidity) };
    const answer = await apiClient(values, context).accessToken(id, body);
    process.stdout.write(`${answer.access_token}\n`);
    return 0;
  },
};
