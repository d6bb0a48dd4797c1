import { createInterface } from 'node:readline/promises';
import { CliError, EXIT } from './errors.ts';

/** All of stdin as text (a secret piped in: `printf %s "$SECRET" | tokenwarden …`). */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads a line from the terminal without echoing it. */
export function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const character of chunk) {
        if (character === '\r' || character === '\n' || character === '\u0004') {
          finish();
          resolve(value);
          return;
        }
        if (character === '\u0003') {
          finish();
          reject(new CliError('interrupted', EXIT.interrupted));
          return;
        }
        if (character === '\u007f' || character === '\b') value = value.slice(0, -1);
        else if (character >= ' ') value += character;
      }
    };
    stdin.on('data', onData);
  });
}

/** Asks a yes/no question on the terminal; only "y" or "yes" is a yes. */
export async function confirm(question: string): Promise<boolean> {
  const readline = createInterface({ input: process.stdin, output: process.stderr });
  const interrupted = new AbortController();
  readline.on('SIGINT', () => interrupted.abort());
  try {
    const answer = await readline.question(`${question} [y/N] `, { signal: interrupted.signal });
    return /^\s*y(es)?\s*$/i.test(answer);
  } catch (error) {
    if (interrupted.signal.aborted) throw new CliError('interrupted', EXIT.interrupted);
    throw error;
  } finally {
    readline.close();
  }
}
