#!/usr/bin/env node
import packageJson from '../package.json' with { type: 'json' };
import { wantsHelp } from './args.ts';
import { type Command, type CommandGroup, type Context, groupHelp, isGroup } from './command.ts';
import { authClients } from './commands/auth-clients.ts';
import { component } from './commands/component.ts';
import { connect } from './commands/connect.ts';
import { credentials } from './commands/credentials.ts';
import { keys } from './commands/keys.ts';
import { run } from './commands/run.ts';
import { serve } from './commands/serve.ts';
import { token } from './commands/token.ts';
import { verify } from './commands/verify.ts';
import { DEMO_HELP } from './demo-help.ts';
import { CliError, EXIT, EXIT_CODE_HELP, UsageError } from './errors.ts';
import { err, out, redact } from './output.ts';

const demo: Command = {
  name: 'demo',
  summary: 'run the token lifecycle against the built-in fake provider (no vault needed)',
  help: DEMO_HELP,
  async run(args) {
    // Loaded on demand: the other commands start without the oauth and testing packages.
    const { runDemo } = await import('./demo.ts');
    return runDemo(args);
  },
};

const COMMANDS: readonly (Command | CommandGroup)[] = [
  serve,
  authClients,
  connect,
  credentials,
  token,
  keys,
  run,
  verify,
  component,
  demo,
];

const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;

const USAGE = `tokenwarden: keeps the OAuth2 credentials of integration components alive

Usage:
  tokenwarden [--url <url>] [--api-key <key>] <command> [<subcommand>] [options]
  tokenwarden help <command> [<subcommand>]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join('\n')}

Options:
  --url <url>       the vault to talk to (env TOKENWARDEN_URL, default
                    http://127.0.0.1:8080)
  --api-key <key>   API key (env TOKENWARDEN_API_KEY; prefer the variable: a flag
                    value lands in shell history and the process list). The admin
                    key is printed by "tokenwarden serve" on its first start.
  -h, --help        show this help, or a command's help after its name
  --version         print the version

stdout carries only the result (a table, JSON, an id, a token), so $(…) captures
exactly that; progress, confirmations and errors go to stderr. No command prints
the API key or a client secret; only "token" prints an access token.

${EXIT_CODE_HELP}
Examples:
  tokenwarden serve --demo
  export TOKENWARDEN_API_KEY=twk_…        # the admin key serve printed
  tokenwarden auth-clients list
  CREDENTIAL=$(tokenwarden connect ac_2k9f…)
  curl -H "Authorization: Bearer $(tokenwarden token "$CREDENTIAL")" https://…
`;

/** `--url` / `--api-key` given before the command; they are passed on to it. */
function splitGlobalOptions(argv: readonly string[]): { globals: string[]; rest: string[] } {
  const globals: string[] = [];
  let index = 0;
  while (index < argv.length) {
    const arg = argv[index] as string;
    if (arg === '--url' || arg === '--api-key') {
      if (index + 1 >= argv.length) throw new UsageError(`option ${arg} needs a value`);
      globals.push(arg, argv[index + 1] as string);
      index += 2;
    } else if (arg.startsWith('--url=') || arg.startsWith('--api-key=')) {
      globals.push(arg);
      index += 1;
    } else break;
  }
  return { globals, rest: argv.slice(index) };
}

function findCommand(name: string): Command | CommandGroup | undefined {
  return COMMANDS.find((command) => command.name === name);
}

function unknownCommand(name: string): UsageError {
  return new UsageError(
    `unknown command ${JSON.stringify(name)}; the commands are ${COMMANDS.map((c) => c.name).join(', ')}`,
  );
}

/** `tokenwarden help [<command> [<subcommand>]]`. */
function printHelp(path: readonly string[]): number {
  const [name, subName, ...extra] = path;
  if (name === undefined) {
    out(USAGE);
    return EXIT.ok;
  }
  const entry = findCommand(name);
  if (entry === undefined) throw unknownCommand(name);
  if (!isGroup(entry)) {
    if (subName !== undefined) throw new UsageError(`${name} has no subcommands`);
    out(entry.help);
    return EXIT.ok;
  }
  if (subName === undefined) {
    out(groupHelp(entry));
    return EXIT.ok;
  }
  const sub = entry.subcommands.find((c) => c.name === subName);
  if (sub === undefined || extra.length > 0)
    throw new UsageError(`unknown subcommand "${name} ${path.slice(1).join(' ')}"`);
  out(sub.help);
  return EXIT.ok;
}

async function main(argv: readonly string[], context: Context): Promise<number> {
  let label = '';
  try {
    const { globals, rest } = splitGlobalOptions(argv);
    const [name, ...args] = rest;
    if (name === undefined) {
      err(USAGE);
      return EXIT.usage;
    }
    if (name === '-h' || name === '--help') {
      out(USAGE);
      return EXIT.ok;
    }
    if (name === '--version' || name === '-V') {
      out(packageJson.version);
      return EXIT.ok;
    }
    if (name === 'help') return printHelp(args);
    const entry = findCommand(name);
    if (entry === undefined) throw unknownCommand(name);
    label = ` ${entry.name}`;
    if (!isGroup(entry)) {
      if (wantsHelp(args)) {
        out(entry.help);
        return EXIT.ok;
      }
      return await entry.run([...globals, ...args], context);
    }
    const [subName, ...subArgs] = args;
    if (subName === undefined) {
      err(groupHelp(entry));
      return EXIT.usage;
    }
    if (subName === '-h' || subName === '--help') {
      out(groupHelp(entry));
      return EXIT.ok;
    }
    const sub = entry.subcommands.find((c) => c.name === subName);
    if (sub === undefined) {
      throw new UsageError(
        `unknown subcommand ${JSON.stringify(subName)}; the subcommands are ${entry.subcommands.map((c) => c.name).join(', ')}`,
      );
    }
    label = ` ${entry.name} ${sub.name}`;
    if (wantsHelp(subArgs)) {
      out(sub.help);
      return EXIT.ok;
    }
    return await sub.run([...globals, ...subArgs], context);
  } catch (error) {
    return report(error, label, context);
  }
}

/** One line (plus a hint) on stderr, with every known secret removed; returns the exit code. */
function report(error: unknown, label: string, context: Context): number {
  const clean = (text: string) => redact(text, context.secrets);
  if (error instanceof CliError) {
    err(`tokenwarden${label}: ${clean(error.message)}`);
    if (error instanceof UsageError) err(`Run "tokenwarden${label} --help" for usage.`);
    else if (error.hint !== undefined) err(clean(error.hint));
    return error.exitCode;
  }
  err(`tokenwarden${label}: ${clean(error instanceof Error ? error.message : String(error))}`);
  return EXIT.failure;
}

// `tokenwarden … | head` closes stdout early: that is not a failure worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

const context: Context = { env: process.env, secrets: new Set() };
main(process.argv.slice(2), context).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = report(error, '', context);
  },
);
