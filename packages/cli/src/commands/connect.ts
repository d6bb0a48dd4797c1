import type { ApiClient } from '../api-client.ts';
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  expectPositionals,
  parseCommandArgs,
  parseSeconds,
} from '../args.ts';
import { apiClient, type Command } from '../command.ts';
import { CliError, EXIT, UsageError } from '../errors.ts';
import { cell, err, formatDuration, out } from '../output.ts';

const POLL_INTERVAL_MS = 1000;
/** Without a terminal, one progress line this often (CI logs stay short). */
const PLAIN_PROGRESS_EVERY_MS = 10_000;
/** Polls that may fail in a row (vault restarting) before connect gives up. */
const MAX_POLL_FAILURES = 10;

export const connect: Command = {
  name: 'connect',
  summary: 'connect an account: print the URL to open, wait, print the credential id',
  help: `tokenwarden connect: connect an account through an auth client

Usage:
  tokenwarden connect <auth-client-id> [--return-to <url>] [--scope <scope>]...
      [--timeout <seconds>]

Starts a connect session, prints the URL to open in a browser (on stderr),
then waits while the user signs in at the provider and approves, showing
progress on stderr. When the vault has stored the new credential, prints its
id, and nothing else, on stdout.

Options:
  --return-to <url>     where the browser goes after the flow (must be allowed by
                        the vault's TOKENWARDEN_RETURN_TO_ALLOWLIST); by default
                        the vault shows a result page
  --scope <scope>       request this scope instead of the auth client's scopes;
                        repeatable
  --timeout <seconds>   stop waiting after this long (default 600); exit 7
  -h, --help            show this help
${CONNECTION_HELP}

Exit codes: 0 connected; 7 the flow failed (e.g. the user denied access), the
session expired, or the timeout passed; 4 no such auth client.

Example:
  CREDENTIAL=$(tokenwarden connect ac_2k9f…)
  tokenwarden token "$CREDENTIAL"
`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs({
      args,
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        'return-to': { type: 'string' },
        scope: { type: 'string', multiple: true },
        timeout: { type: 'string', default: '600' },
      },
    });
    const [authClientId] = expectPositionals(positionals, ['auth-client-id']) as [string];
    const timeoutSeconds = parseSeconds('timeout', values.timeout, 1);
    const returnTo = values['return-to'];
    if (returnTo !== undefined && !URL.canParse(returnTo))
      throw new UsageError(`--return-to must be an absolute URL, got ${JSON.stringify(returnTo)}`);

    const api = apiClient(values, context);
    const session = await api.createConnectSession({
      authClientId,
      ...(returnTo === undefined ? {} : { returnTo }),
      ...(values.scope === undefined ? {} : { scopes: values.scope }),
    });
    err(`Open this URL in a browser: ${cell(session.url)}`);
    const credentialId = await waitForCredential(api, session.id, timeoutSeconds);
    err('connected.');
    out(credentialId);
    return 0;
  },
};

async function waitForCredential(
  api: ApiClient,
  sessionId: string,
  timeoutSeconds: number,
): Promise<string> {
  const started = Date.now();
  const deadline = started + timeoutSeconds * 1000;
  const progress = startProgress(started);
  const onSignal = () => {
    progress.stop();
    err('interrupted: stopped waiting (the connect URL stays valid until the session expires)');
    process.exit(EXIT.interrupted);
  };
  process.once('SIGINT', onSignal);
  try {
    let failures = 0;
    for (;;) {
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, Math.min(POLL_INTERVAL_MS, deadline - Date.now()))),
      );
      if (Date.now() >= deadline) {
        throw new CliError(
          `timed out after ${formatDuration(timeoutSeconds * 1000)} waiting for the connection to complete`,
          EXIT.connectFailed,
          { hint: 'Run "tokenwarden connect" again, or pass a longer --timeout.' },
        );
      }
      let session: Awaited<ReturnType<ApiClient['getConnectSession']>>;
      try {
        session = await api.getConnectSession(sessionId);
        failures = 0;
      } catch (error) {
        if (
          error instanceof CliError &&
          error.exitCode === EXIT.unavailable &&
          ++failures < MAX_POLL_FAILURES
        )
          continue;
        throw error;
      }
      switch (session.status) {
        case 'pending':
          continue;
        case 'completed':
          if (typeof session.credentialId !== 'string' || session.credentialId === '')
            throw new CliError(
              'the vault reports the connection as completed but names no credential',
              EXIT.failure,
            );
          return session.credentialId;
        case 'failed': {
          const reason = session.error;
          throw new CliError(
            `the connection failed: ${reason === undefined ? 'no reason given' : `${cell(reason.message)} (${cell(reason.code)})`}`,
            EXIT.connectFailed,
            { code: reason?.code },
          );
        }
        case 'expired':
          throw new CliError(
            'the connect session expired before the browser came back',
            EXIT.connectFailed,
            { hint: 'Run "tokenwarden connect" again to get a new URL.' },
          );
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    progress.stop();
  }
}

/** A spinner with the elapsed time on a terminal; a line every 10 s otherwise. */
function startProgress(started: number): { stop(): void } {
  const terminal = process.stderr.isTTY === true;
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let frame = 0;
  let lastLine = started;
  if (!terminal) err('waiting for the browser to complete the connection…');
  const timer = setInterval(
    () => {
      const elapsed = formatDuration(Date.now() - started);
      if (terminal) {
        frame = (frame + 1) % frames.length;
        process.stderr.write(
          `\r\x1b[2K${frames[frame]} waiting for the browser… ${elapsed} (Ctrl-C to stop)`,
        );
      } else if (Date.now() - lastLine >= PLAIN_PROGRESS_EVERY_MS) {
        lastLine = Date.now();
        err(`still waiting for the browser… ${elapsed}`);
      }
    },
    terminal ? 100 : 1000,
  );
  timer.unref();
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (terminal) process.stderr.write('\r\x1b[2K');
    },
  };
}
