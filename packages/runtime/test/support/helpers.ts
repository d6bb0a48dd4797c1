import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { type TokenResponse, TokenSet, type TokenSource } from '@tokenwarden/oauth';
import { type Component, loadComponent } from '../../src/component.ts';
import type { KeyStore } from '../../src/key-store.ts';
import type { LogRecord, LogSink } from '../../src/logger.ts';

export const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;

export const CONTRACT_ENV = {
  FIXTURE_CLIENT_ID: 'demo-client',
  FIXTURE_CLIENT_SECRET: 'demo-secret-value',
  FIXTURE_PROVIDER: 'http://127.0.0.1:9',
};

/** The contract fixture, its templates resolved from `env`. */
export function contract(env: Record<string, string> = CONTRACT_ENV): Promise<Component> {
  return loadComponent(join(FIXTURES, 'contract'), { env });
}

/** A log sink that keeps records, for assertions. */
export function memorySink(): { sink: LogSink; records: LogRecord[]; text: () => string } {
  const records: LogRecord[] = [];
  return {
    sink: (record) => records.push(record),
    records,
    text: () => records.map((r) => JSON.stringify(r)).join('\n'),
  };
}

/** Secret-looking values long enough for value-based redaction. */
export const ACCESS = 'at-0123456789-abcdef';
export const REFRESH = 'rt-0123456789-abcdef';

export function tokens(overrides: Partial<TokenResponse> = {}): TokenResponse {
  return {
    access_token: ACCESS,
    token_type: 'Bearer',
    expires_in: 3600,
    refresh_token: REFRESH,
    scope: 'profile',
    ...overrides,
  };
}

/**
 * A key store in memory whose writes can be made to fail: the contract's
 * store-failure cases without a disk or a vault.
 */
export class MemoryKeyStore implements KeyStore {
  readonly credentialId = 'cr_memory';
  readonly description = 'memory key store (cr_memory)';
  keys: Record<string, unknown>;
  /** Every response updateKeys was called with, in order (failed ones included). */
  readonly attempts: TokenResponse[] = [];
  failures = 0;
  /** Delay each write, to show that emit waits for it. */
  writeDelayMs = 0;

  constructor(initial: TokenResponse = tokens()) {
    this.keys = { ...initial };
  }

  async readKeys(): Promise<TokenResponse> {
    return { ...(this.keys as TokenResponse) };
  }

  async updateKeys(response: TokenResponse): Promise<void> {
    this.attempts.push({ ...response });
    if (this.writeDelayMs > 0) await new Promise((r) => setTimeout(r, this.writeDelayMs));
    if (this.failures > 0) {
      this.failures--;
      throw new Error('disk full');
    }
    const merged: Record<string, unknown> = { ...this.keys, ...response };
    if (response.expires_in === undefined) delete merged.expires_in;
    this.keys = merged;
  }

  tokenSource(): TokenSource {
    return {
      credentialId: this.credentialId,
      getToken: async () => TokenSet.fromResponse(this.keys as TokenResponse, Date.now()),
    };
  }
}

const folders: string[] = [];
after(async () => {
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
});

export async function tempFolder(prefix = 'tokenwarden-runtime-'): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), prefix));
  folders.push(folder);
  return folder;
}

/** The data of a step's event at `index`, which must exist. */
export function dataAt<T = unknown>(
  result: { events: readonly { data: unknown }[] },
  index: number,
): T {
  const event = result.events[index];
  if (event === undefined)
    throw new Error(`no event #${index} in ${JSON.stringify(result.events)}`);
  return event.data as T;
}
