import type { RefreshStrategy } from '@tokenwarden/oauth';
import type { EmittedEvent, LogLevel } from '@tokenwarden/runtime';
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  expectPositionals,
  parseCommandArgs,
  parseSeconds,
} from '../args.ts';
import type { Command } from '../command.ts';
import { EXIT, UsageError } from '../errors.ts';
import { err } from '../output.ts';
import {
  checkKeyStoreOptions,
  cliErrorFromRuntime,
  exitCodeForErrorCode,
  KEY_STORE_HELP,
  KEY_STORE_OPTIONS,
  loadComponentOrFail,
  loadRuntime,
  openKeyStore,
  readJsonObject,
} from '../runtime-module.ts';

const STRATEGIES: readonly RefreshStrategy[] = ['before-expiry', 'every-access', 'on-demand'];
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/**
 * How long the process may linger after the step finished: a component that
 * leaves a timer or a socket open must not keep `tokenwarden run` alive.
 */
const EXIT_GRACE_MS = 2000;

export const run: Command = {
  name: 'run',
  summary: 'run one message through an action or trigger of a component (sailor contract)',
  help: `tokenwarden run: run one message through a component's action or trigger

Usage:
  tokenwarden run <component-dir> <action-or-trigger> [--msg <file>|-]
      [--cfg <file>] [--snapshot <file>] [--credential <id> | --keys <file>]
      [--strategy <strategy>] [--timeout <seconds>] [--log-level <level>]

Loads the component folder (component.json, verifyCredentials.js, the modules
of its actions and triggers; an invalid component lists every problem and exits
2 before any key is read), then calls the step's process(msg, cfg, snapshot)
with elastic.io sailor's contract, and prints every event it emits (data,
error, end, snapshot, updateSnapshot, updateKeys, rebound, httpReply) as one
JSON line on stdout:

  {"seq":1,"event":"data","data":{…},"origin":"component","at":"…"}

Tokens are redacted in every line: members named like secrets (access_token,
refresh_token, …) and any known token value anywhere else. Log lines (the
component's and the runtime's, also redacted) go to stderr.

updateKeys is merged into the credential and stored before the step's end is
handled. Without --credential or --keys the step runs without a credential:
updateKeys is then an error (no_key_store) and this.fetch has no token.

Options:
  --msg <file>|-            the incoming message as JSON ({"body": {…}}); "-"
                            reads stdin. An object without "body" is taken as
                            the body. Default {"body": {}}
  --cfg <file>              the step configuration as JSON (its credential
                            field is filled from the keys)
  --snapshot <file>         the snapshot as JSON (default {})
  --strategy <strategy>     when this.fetch refreshes: before-expiry (default),
                            every-access, on-demand (only after a 401)
  --timeout <seconds>       give up on a step that has not ended by then
                            (error step_timeout); default: wait
  --log-level <level>       trace, debug, info (default), warn, error, fatal
  -h, --help                show this help
${KEY_STORE_HELP}
${CONNECTION_HELP}

Exit codes: 0 the step ended without an error event; 1 it emitted error (or an
unexpected failure); 2 an invalid component, an unknown step, a bad option or
key file; 3 the vault refused the API key; 4 no such credential; 5 the
credential needs reconnecting (reauth_required); 6 the vault or the provider is
unavailable. The code of the first error event decides between 1, 2, 4, 5, 6.

Examples:
  tokenwarden run examples/outlook readMailWithFetch --credential cr_7hq2…
  echo '{"body": {"query": "SELECT Name FROM Account"}}' |
      tokenwarden run examples/salesforce query --msg - --keys keys.json
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        ...KEY_STORE_OPTIONS,
        msg: { type: 'string' },
        cfg: { type: 'string' },
        snapshot: { type: 'string' },
        strategy: { type: 'string' },
        timeout: { type: 'string' },
        'log-level': { type: 'string' },
      },
    });
    const [dir, step] = expectPositionals(positionals, ['component-dir', 'action-or-trigger']) as [
      string,
      string,
    ];
    checkKeyStoreOptions(values, false);
    const strategy = values.strategy ?? 'before-expiry';
    if (!STRATEGIES.includes(strategy as RefreshStrategy)) {
      throw new UsageError(
        `--strategy must be one of ${STRATEGIES.join(', ')}, got ${JSON.stringify(strategy)}`,
      );
    }
    const logLevel = values['log-level'] ?? 'info';
    if (!LOG_LEVELS.includes(logLevel as LogLevel)) {
      throw new UsageError(
        `--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`,
      );
    }
    const timeoutMs =
      values.timeout === undefined ? undefined : parseSeconds('timeout', values.timeout, 1) * 1000;
    const msg = values.msg === undefined ? { body: {} } : await readJsonObject('msg', values.msg);
    const cfg = values.cfg === undefined ? {} : await readJsonObject('cfg', values.cfg);
    const snapshot =
      values.snapshot === undefined ? {} : await readJsonObject('snapshot', values.snapshot);

    const runtime = await loadRuntime();
    // The component is loaded and the step looked up before any key store is
    // opened: an invalid component never touches the keys.
    const component = await loadComponentOrFail(runtime, dir, context);
    try {
      component.step(step);
    } catch (error) {
      throw cliErrorFromRuntime(runtime, error);
    }
    const keys = await openKeyStore(runtime, values, context);
    let firstError: EmittedEvent | undefined;
    let ok = false;
    try {
      const session = new runtime.RunSession({
        component,
        keys,
        cfg,
        snapshot,
        strategy: strategy as RefreshStrategy,
        timeoutMs,
        logger: runtime.jsonLineLogSink({ level: logLevel as LogLevel }),
        onEvent: (event) => {
          if (event.name === 'error') firstError ??= event;
          process.stdout.write(`${event.toJsonLine()}\n`);
        },
      });
      for (const secret of context.secrets) session.redactor.addSecret(secret);
      try {
        const result = await session.runStep(
          step,
          Object.hasOwn(msg, 'body') ? msg : { body: msg },
        );
        ok = result.ok;
        if (!result.ok && firstError === undefined) err('tokenwarden run: the step did not end');
      } catch (error) {
        // The step could not start (its module failed to load).
        throw cliErrorFromRuntime(runtime, error);
      }
    } finally {
      await keys?.close?.();
      // Timers or sockets a component left open do not keep the command alive.
      setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
    }
    if (ok) return EXIT.ok;
    // The printed (redacted) form: the code and message as stdout shows them.
    const printed = firstError?.toJSON().data as { code?: unknown; message?: unknown } | undefined;
    const code = printed?.code;
    if (firstError !== undefined) {
      const message = printed?.message;
      err(
        `tokenwarden run: the step emitted an error${typeof code === 'string' ? ` (${code})` : ''}${typeof message === 'string' ? `: ${message}` : ''}`,
      );
    }
    return exitCodeForErrorCode(code);
  },
};
