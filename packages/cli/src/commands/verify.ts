import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  expectPositionals,
  parseCommandArgs,
  parseSeconds,
} from '../args.ts';
import type { Command } from '../command.ts';
import { EXIT } from '../errors.ts';
import { err, out } from '../output.ts';
import {
  checkKeyStoreOptions,
  KEY_STORE_HELP,
  KEY_STORE_OPTIONS,
  loadComponentOrFail,
  loadRuntime,
  openKeyStore,
} from '../runtime-module.ts';

export const verify: Command = {
  name: 'verify',
  summary: "check a credential with the component's verifyCredentials.js",
  help: `tokenwarden verify: check a credential with a component's verifyCredentials

Usage:
  tokenwarden verify <component-dir> (--credential <id> | --keys <file>)
      [--timeout <seconds>]

Loads the component folder (an invalid component lists every problem and exits
2) and calls its verifyCredentials(credentials, cb) — callback or promise — with
the step configuration holding the credential's keys, as elastic.io does when an
account is added. A result without "verified" counts as verified; a throw, a
rejection or cb(err) as not verified. A component without verifyCredentials.js
is accepted unchecked.

Prints one JSON line on stdout, {"verified": true} or {"verified": false,
"reason": "…"} (tokens redacted); log lines go to stderr.

Options:
  --timeout <seconds>       no answer by then counts as not verified
                            (default 60)
  -h, --help                show this help
${KEY_STORE_HELP}
${CONNECTION_HELP}

Exit codes: 0 verified; 1 not verified; 2 an invalid component, a bad option or
key file; 3 the vault refused the API key; 4 no such credential; 6 the vault is
unavailable.

Examples:
  tokenwarden verify examples/outlook --credential cr_7hq2…
  tokenwarden verify examples/salesforce --keys keys.json
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, ...KEY_STORE_OPTIONS, timeout: { type: 'string' } },
    });
    const [dir] = expectPositionals(positionals, ['component-dir']) as [string];
    checkKeyStoreOptions(values, true);
    const timeoutMs = parseSeconds('timeout', values.timeout ?? '60', 1) * 1000;
    const runtime = await loadRuntime();
    const component = await loadComponentOrFail(runtime, dir, context);
    const keys = await openKeyStore(runtime, values, context);
    try {
      const session = new runtime.RunSession({ component, keys });
      for (const secret of context.secrets) session.redactor.addSecret(secret);
      const result = await session.verifyCredentials({ timeoutMs });
      out(JSON.stringify(result));
      if (result.verified) {
        if (result.skipped === true) err(`tokenwarden verify: ${result.reason ?? 'not checked'}`);
        return EXIT.ok;
      }
      err(
        `tokenwarden verify: not verified${result.reason === undefined ? '' : `: ${result.reason}`}`,
      );
      return EXIT.failure;
    } finally {
      await keys?.close?.();
      // Timers or sockets the component left open do not keep the command alive.
      setTimeout(() => process.exit(), 2000).unref();
    }
  },
};
