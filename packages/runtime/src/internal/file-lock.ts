import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RuntimeError } from '../errors.ts';

interface Holder {
  pid: number;
  host: string;
}

/**
 * Takes `<file>.lock` (created exclusively, mode 0600, holding our pid and
 * host) so that one process at a time uses a key file: two processes that
 * refreshed the same single-use refresh token would make the provider revoke
 * the grant. A lock left by a process that is gone (same host, pid not alive)
 * is taken over. Waits up to `timeoutMs` for a live holder to let go.
 */
export async function acquireFileLock(
  file: string,
  timeoutMs: number,
): Promise<() => Promise<void>> {
  const lockPath = `${file}.lock`;
  const deadline = Date.now() + timeoutMs;
  await mkdir(dirname(lockPath), { recursive: true, mode: 0o700 });
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx', 0o600);
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, host: hostname() }));
      } finally {
        await handle.close();
      }
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        await unlink(lockPath).catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readHolder(lockPath);
    if (holder !== undefined && isStale(holder)) {
      await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() >= deadline) {
      const who =
        holder === undefined ? 'another process' : `process ${holder.pid} on ${holder.host}`;
      throw new RuntimeError(
        'key_file_locked',
        `key file ${file} is in use by ${who} (lock file ${lockPath}); wait for it to finish, or delete the lock file if that process is gone`,
      );
    }
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
  }
}

async function readHolder(lockPath: string): Promise<Holder | undefined> {
  try {
    const parsed = JSON.parse(await readFile(lockPath, 'utf8')) as Partial<Holder>;
    if (typeof parsed.pid === 'number' && typeof parsed.host === 'string') {
      return { pid: parsed.pid, host: parsed.host };
    }
  } catch {
    // Being written right now, or gone: treated as held until the next look.
  }
  return undefined;
}

/** Our own pid counts as stale: locks this process holds are shared in memory, never taken twice. */
function isStale(holder: Holder): boolean {
  if (holder.host !== hostname()) return false;
  if (holder.pid === process.pid) return true;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
