import {
  type TokenRequest,
  type TokenResponse,
  TokenSet,
  type TokenSource,
} from '@tokenwarden/oauth';
import { RuntimeError } from './errors.ts';
import { VaultClient, type VaultClientOptions } from './internal/vault-client.ts';
import type { KeyStore } from './key-store.ts';

export interface VaultOptions extends VaultClientOptions {
  credentialId: string;
  now?: () => number;
}

interface AccessTokenAnswer {
  access_token: string;
  token_type: string;
  expires_at: number | null;
  extra: Record<string, unknown>;
}

function parseAccessToken(body: unknown, credentialId: string): AccessTokenAnswer {
  const answer = body as Partial<AccessTokenAnswer> | undefined;
  if (
    typeof answer?.access_token !== 'string' ||
    answer.access_token === '' ||
    typeof answer.token_type !== 'string' ||
    !(answer.expires_at === null || Number.isFinite(answer.expires_at)) ||
    typeof answer.extra !== 'object' ||
    answer.extra === null
  ) {
    throw new RuntimeError(
      'vault_request_failed',
      `credential ${credentialId}: the vault's access-token answer is not {access_token, token_type, expires_at, extra}`,
      { credentialId },
    );
  }
  return answer as AccessTokenAnswer;
}

/**
 * The vault's token endpoint as a TokenSource: `POST /v1/credentials/:id/access-token`
 * with `minValiditySeconds` and compare-and-refresh through `staleAccessToken`,
 * so refreshes are single-flight across every process that uses the vault.
 * `forceRefresh` (the every-access strategy) is `POST …/refresh` first.
 * The token sets it returns hold the access token and the non-secret members
 * (`instance_url`, `scope`); never a refresh token, which stays in the vault.
 */
export class VaultTokenSource implements TokenSource {
  readonly credentialId: string;
  readonly #client: VaultClient;
  readonly #now: () => number;

  constructor(options: VaultOptions) {
    this.credentialId = options.credentialId;
    this.#client = new VaultClient(options);
    this.#now = options.now ?? Date.now;
  }

  async getToken(request: TokenRequest = {}): Promise<TokenSet> {
    const id = encodeURIComponent(this.credentialId);
    if (request.forceRefresh === true) {
      await this.#client.request('POST', `v1/credentials/${id}/refresh`, {}, this.credentialId);
    }
    const body: { minValiditySeconds?: number; staleAccessToken?: string } = {};
    if (request.minValiditySeconds !== undefined) {
      body.minValiditySeconds = Math.min(86_400, Math.max(0, request.minValiditySeconds));
    }
    if (request.staleAccessToken !== undefined) body.staleAccessToken = request.staleAccessToken;
    const answer = parseAccessToken(
      await this.#client.request(
        'POST',
        `v1/credentials/${id}/access-token`,
        body,
        this.credentialId,
      ),
      this.credentialId,
    );
    const now = this.#now();
    return TokenSet.fromStored({
      tokens: toTokenResponse(answer, now),
      expires_at_ms: answer.expires_at === null ? null : answer.expires_at * 1000,
      received_at_ms: now,
    });
  }
}

/** The vault's answer as the token response a component expects in cfg. */
function toTokenResponse(answer: AccessTokenAnswer, now: number): TokenResponse {
  const response: TokenResponse = {
    ...answer.extra,
    access_token: answer.access_token,
    token_type: answer.token_type,
  };
  if (answer.expires_at !== null) {
    response.expires_in = Math.max(0, Math.floor((answer.expires_at * 1000 - now) / 1000));
  }
  return response;
}

/**
 * A credential kept by the vault. `readKeys` asks for a valid access token (the
 * vault refreshes first when needed); `updateKeys` is `PUT /v1/credentials/:id/keys`,
 * which merges and stores with compare-and-set before it answers.
 */
export class VaultKeyStore implements KeyStore {
  readonly credentialId: string;
  readonly description: string;
  readonly #client: VaultClient;
  readonly #source: VaultTokenSource;

  constructor(options: VaultOptions) {
    this.credentialId = options.credentialId;
    this.#client = new VaultClient(options);
    this.description = `vault ${this.#client.baseUrl.origin} (credential ${options.credentialId})`;
    this.#source = new VaultTokenSource(options);
  }

  async readKeys(options: { minValiditySeconds?: number } = {}): Promise<TokenResponse> {
    const tokenSet = await this.#source.getToken(
      options.minValiditySeconds === undefined
        ? {}
        : { minValiditySeconds: options.minValiditySeconds },
    );
    return tokenSet.toStored().tokens;
  }

  async updateKeys(response: TokenResponse): Promise<void> {
    await this.#client.request(
      'PUT',
      `v1/credentials/${encodeURIComponent(this.credentialId)}/keys`,
      response,
      this.credentialId,
    );
  }

  tokenSource(): TokenSource {
    return this.#source;
  }
}
