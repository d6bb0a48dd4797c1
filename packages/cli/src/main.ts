#!/usr/bin/env node
import { runDemo } from './demo.ts';

const USAGE = `tokenwarden: keeps the OAuth2 credentials of integration components alive

Usage:
  tokenwarden <command> [options]

Commands:
  demo        Run the token lifecycle against the built-in fake provider:
              connect with the authorization-code flow (PKCE, state), then keep
              the credential alive through several expiries with each refresh
              strategy, printing what happens (never a secret).

Options:
  -h, --help  Show this help, or a command's help after the command name.

Exit codes: 0 success, 1 the command failed, 2 bad usage.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  switch (command) {
    case 'demo':
      return runDemo(rest);
    default:
      process.stderr.write(
        `tokenwarden: unknown command "${command}"; run "tokenwarden --help" for the list\n`,
      );
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `tokenwarden: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
