/**
 * One vault in a process of its own, for the cross-process tests and benchmark
 * (support/cross-process.ts). Configured from the environment exactly like the
 * real server (`loadConfig(process.env)`); logs go to stderr; once listening it
 * prints one JSON line `{url, instance}` on stdout. SIGTERM, SIGINT, or the
 * parent closing our stdin (the parent died) closes the vault and exits.
 */
import pino from 'pino';
import { loadConfig, startVault } from '../../src/index.ts';

const config = loadConfig(process.env);
const vault = await startVault(config, {
  logDestination: pino.destination({ fd: 2, sync: true }),
});

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  vault.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();

process.stdout.write(`${JSON.stringify({ url: vault.url, instance: config.instanceId })}\n`);
