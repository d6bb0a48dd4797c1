import { ApiClient, resolveConnection } from './api-client.ts';
import type { ConnectionValues } from './args.ts';

/** What a command gets from main besides its arguments. */
export interface Context {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Values never to print (the API key, a client secret); main redacts them from error output. */
  readonly secrets: Set<string>;
}

export interface Command {
  readonly name: string;
  /** One line for the list in the parent's help. */
  readonly summary: string;
  /** The full `--help` text: usage, options, an example. */
  readonly help: string;
  /** Returns the exit code; throws a CliError for failures that have one. */
  run(args: string[], context: Context): Promise<number>;
}

export interface CommandGroup {
  readonly name: string;
  readonly summary: string;
  /** Text shown above the generated list of subcommands. */
  readonly description: string;
  readonly subcommands: readonly Command[];
}

export function isGroup(entry: Command | CommandGroup): entry is CommandGroup {
  return 'subcommands' in entry;
}

export function groupHelp(group: CommandGroup): string {
  const width = Math.max(...group.subcommands.map((c) => c.name.length)) + 2;
  return `tokenwarden ${group.name}: ${group.description}

Usage:
  tokenwarden ${group.name} <subcommand> [options]

Subcommands:
${group.subcommands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join('\n')}

Run "tokenwarden ${group.name} <subcommand> --help" for its options and an example.
`;
}

/** The API client for `--url` / `--api-key` (or their environment variables). */
export function apiClient(values: ConnectionValues, context: Context): ApiClient {
  const { baseUrl, apiKey } = resolveConnection(values, context.env);
  if (apiKey !== undefined) context.secrets.add(apiKey);
  return new ApiClient(baseUrl, apiKey);
}
