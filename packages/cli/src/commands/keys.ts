import type { VaultConfig } from '@tokenwarden/vault';
import { expectPositionals, parseCommandArgs } from '../args.ts';
import type { Command, CommandGroup } from '../command.ts';
import { err, out, printJson } from '../output.ts';
import { loadVault, rethrowConfigError } from '../vault-module.ts';
import { FLAG_FOR_ENV } from './serve.ts';

const rotate: Command = {
  name: 'rotate',
  summary: 'make a new encryption key active and re-encrypt every secret with it',
  help: `tokenwarden keys rotate: rotate the vault's encryption key

Usage:
  tokenwarden keys rotate [--data-dir <dir>] [--database-url <url>] [--json]

Re-encrypts every stored secret (token sets, client secrets) under a new key
while vault servers keep running, with no downtime. Works on the vault's
storage directly (no API key needed): run it where "tokenwarden serve" runs,
with the same data folder or DATABASE_URL.

- Key file (the default, master.keys in the data folder): adds a new first key
  to the file, waits a few seconds until running vaults have reread it, then
  re-encrypts row by row and removes the keys nothing uses any more.
- TOKENWARDEN_MASTER_KEYS: put the new key first in the variable on every
  replica (and restart them) beforehand; this re-encrypts under it and reports
  which old keys you may then drop from the variable.

Prints the new key's id and what was re-encrypted; never a key.

Options:
  --data-dir <dir>       TOKENWARDEN_DATA_DIR (default .data/vault)
  --database-url <url>   DATABASE_URL, for a vault on PostgreSQL (prefer the
                         variable: it holds a password)
  --json                 print the result as JSON
  -h, --help             show this help

TOKENWARDEN_MASTER_KEYS and TOKENWARDEN_DATABASE_SCHEMA come from the
environment, as for "tokenwarden serve".

Example:
  tokenwarden keys rotate --data-dir /var/lib/tokenwarden
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: {
        'data-dir': { type: 'string' },
        'database-url': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    expectPositionals(positionals, []);
    const source: Record<string, string | undefined> = { ...context.env };
    if (values['data-dir'] !== undefined) source.TOKENWARDEN_DATA_DIR = values['data-dir'];
    if (values['database-url'] !== undefined) source.DATABASE_URL = values['database-url'];
    if (source.DATABASE_URL !== undefined && source.DATABASE_URL !== '')
      context.secrets.add(source.DATABASE_URL);

    const vault = await loadVault();
    let config: VaultConfig;
    try {
      config = vault.loadConfig(source);
    } catch (error) {
      rethrowConfigError(vault, error, FLAG_FOR_ENV);
    }
    err(
      config.masterKeys === undefined
        ? `rotating the keys in ${config.dataDir} (waits a few seconds for running vaults to pick up the new key)…`
        : 're-encrypting with the first key of TOKENWARDEN_MASTER_KEYS…',
    );
    const result = await vault.rotateKeys(config);
    if (values.json) {
      printJson(result);
      return 0;
    }
    out(`new encryption key: ${result.newKeyId}`);
    out(
      `re-encrypted: ${result.reencrypted.credentials} credentials, ${result.reencrypted.authClients} auth clients, ${result.reencrypted.webhooks} webhook secrets`,
    );
    out(`retired keys: ${result.retired.length === 0 ? 'none' : result.retired.join(', ')}`);
    if (config.masterKeys !== undefined && result.retired.length > 0)
      err('the retired keys may now be removed from TOKENWARDEN_MASTER_KEYS on every replica');
    return 0;
  },
};

export const keys: CommandGroup = {
  name: 'keys',
  summary: 'manage the encryption keys of stored secrets',
  description: 'the master keys that encrypt token sets and client secrets at rest',
  subcommands: [rotate],
};
