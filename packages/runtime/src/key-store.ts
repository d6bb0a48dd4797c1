import type { AuthClient, TokenResponse, TokenSource } from '@tokenwarden/oauth';

/** What a key store may need to build a token source: the auth client that refreshes offline. */
export interface TokenSourceContext {
  /**
   * The auth client built from component.json's `oauth2` block (and a catalog
   * profile); rejects with `no_oauth2_client` when the component has none.
   * Called only when a refresh is actually needed.
   */
  authClient(): Promise<AuthClient>;
}

/**
 * Where one credential's keys live: the vault ({@link VaultKeyStore}) or a local
 * key file ({@link FileKeyStore}). A key store is bound to one credential.
 */
export interface KeyStore {
  readonly credentialId: string;
  /** For messages: `vault https://… credential cr_1`, `key file ./keys.json (default)`. No secret. */
  readonly description: string;
  /**
   * The token response as the credential field of cfg shows it before a step.
   * A vault answers with a fresh access token (valid for at least
   * `minValiditySeconds`) and its non-secret members, never the refresh token;
   * a key file with the whole stored response.
   */
  readKeys(options?: { minValiditySeconds?: number }): Promise<TokenResponse>;
  /**
   * Merges a token response (`updateKeys`) into the stored credential: members
   * it omits, above all `refresh_token`, are kept. Resolves only once the result
   * is durably stored; rejects otherwise.
   */
  updateKeys(response: TokenResponse): Promise<void>;
  /** The token source behind `this.fetch` and `this.getAccessToken()`. */
  tokenSource(context: TokenSourceContext): TokenSource;
}
