import { randomBytes } from 'node:crypto';
import {
  codeExchangeRequest,
  createAuthorizationRequest,
  processCodeExchangeResponse,
  TokenwardenError,
  validateAuthorizationResponse,
} from '@tokenwarden/oauth';
import type { Logger } from 'pino';
import type { CredentialService } from './credential-service.ts';
import type { Cipher } from './crypto/keyring.ts';
import { VaultError } from './errors.ts';
import type { ConnectSession } from './store/connect-sessions.ts';
import { digestsEqual, sha256Hex } from './store/ids.ts';
import type { VaultStore } from './store/store.ts';

export const CONNECT_SESSION_TTL_MS = 10 * 60 * 1000;

export interface ConnectFlowOptions {
  store: VaultStore;
  service: CredentialService;
  keyring: Cipher;
  logger: Logger;
  /** A getter: with port 0 the URL is known only once the server listens. */
  publicUrl: () => string;
  /** Origins `returnTo` may point at, besides the vault's own. */
  returnToAllowlist: readonly string[];
  fetch?: typeof fetch;
  now?: () => number;
}

/** How a callback ended, for the page or redirect the browser gets. */
export type CallbackOutcome =
  | { ok: true; session: ConnectSession; credentialId: string }
  | { ok: false; code: string; title: string; message: string; session?: ConnectSession };

const verifierAad = (id: string) => `connect_session:${id}`;

/**
 * The authorization-code flow, vault side. A connect session is created through
 * the API; the user's browser opens `/connect/:id`, which binds the flow to that
 * browser with a cookie, creates `state` and the PKCE verifier (stored hashed and
 * encrypted), and redirects to the provider. The callback accepts a state only
 * once, within ten minutes, from the same browser, and stores nothing unless the
 * code exchange succeeds.
 */
export class ConnectFlow {
  readonly #options: ConnectFlowOptions;
  readonly #now: () => number;

  constructor(options: ConnectFlowOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get redirectUri(): string {
    return `${this.#options.publicUrl()}/oauth/callback`;
  }

  /** `POST /v1/connect-sessions`. */
  async createSession(
    tenantId: string,
    input: { authClientId: string; returnTo?: string | undefined; scopes?: string[] | undefined },
  ): Promise<{ session: ConnectSession; url: string }> {
    const authClient = await this.#options.store.authClients.get(tenantId, input.authClientId);
    if (authClient === undefined)
      throw new VaultError('not_found', `auth client ${input.authClientId} does not exist`);
    const returnTo = input.returnTo === undefined ? null : this.checkReturnTo(input.returnTo);
    const session = await this.#options.store.connectSessions.create(
      {
        tenantId,
        authClientId: authClient.id,
        redirectUri: this.redirectUri,
        returnTo,
        scopes: input.scopes ?? null,
      },
      this.#now(),
      CONNECT_SESSION_TTL_MS,
    );
    return { session, url: `${this.#options.publicUrl()}/connect/${session.id}` };
  }

  /** A `returnTo` must be on an allowed origin: no open redirect. */
  checkReturnTo(value: string): string {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new VaultError('validation_failed', 'returnTo must be an absolute URL');
    }
    const allowed = [new URL(this.#options.publicUrl()).origin, ...this.#options.returnToAllowlist];
    if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !allowed.includes(url.origin)) {
      throw new VaultError(
        'validation_failed',
        `returnTo origin ${url.origin} is not allowed; allowed: ${allowed.join(', ')} (set TOKENWARDEN_RETURN_TO_ALLOWLIST)`,
      );
    }
    return url.href;
  }

  /**
   * `GET /connect/:id`: binds the flow to this browser and returns where to send it.
   * `browserSecret` is the cookie value (created here when absent).
   */
  async start(
    sessionId: string,
    browserSecret: string | undefined,
  ): Promise<{ providerUrl: string; browserSecret: string } | { error: string }> {
    const session = await this.#options.store.connectSessions.get(sessionId);
    const now = this.#now();
    if (session === undefined) return { error: 'This connect link is not valid.' };
    if (session.expiresAt <= now)
      return { error: 'This connect link has expired. Start again from your application.' };
    if (session.status === 'completed' || session.status === 'failed' || session.usedAt !== null) {
      return { error: 'This connect link was already used. Start again from your application.' };
    }
    const resolved = await this.#options.store.authClients.resolve(
      session.tenantId,
      session.authClientId,
    );
    if (resolved === undefined)
      return { error: 'The auth client of this connect link no longer exists.' };
    const secret = browserSecret ?? randomBytes(32).toString('base64url');
    const pending = await createAuthorizationRequest(resolved.client, {
      redirectUri: session.redirectUri,
      ...(session.scopes === null ? {} : { scopes: session.scopes }),
    });
    const started = await this.#options.store.connectSessions.start(
      sessionId,
      {
        stateHash: sha256Hex(pending.state),
        browserHash: sha256Hex(secret),
        verifierEnc: this.#options.keyring.encrypt(pending.codeVerifier, verifierAad(sessionId)),
      },
      now,
    );
    if (!started)
      return {
        error: 'This connect link can no longer be used. Start again from your application.',
      };
    return { providerUrl: pending.url.href, browserSecret: secret };
  }

  /** `GET /oauth/callback`. */
  async callback(
    query: URLSearchParams,
    browserSecret: string | undefined,
  ): Promise<CallbackOutcome> {
    const state = query.get('state');
    if (state === null || state.length === 0) {
      return {
        ok: false,
        code: 'invalid_authorization_response',
        title: 'Missing state',
        message:
          'The provider redirected back without a state parameter, so this sign-in cannot be matched to a connect request.',
      };
    }
    const consumed = await this.#options.store.connectSessions.consume(
      sha256Hex(state),
      this.#now(),
    );
    if (consumed.outcome === 'unknown') {
      return {
        ok: false,
        code: 'invalid_authorization_response',
        title: 'Unknown sign-in',
        message:
          'This sign-in does not belong to any connect request of this vault. Start again from your application.',
      };
    }
    const session = consumed.session;
    if (consumed.outcome === 'replayed') {
      return {
        ok: false,
        code: 'invalid_authorization_response',
        title: 'Already used',
        message:
          'This sign-in response was already used. Nothing was changed. Start again from your application.',
        session,
      };
    }
    const fail = async (code: string, title: string, message: string): Promise<CallbackOutcome> => {
      await this.#options.store.connectSessions.fail(session.id, code, message);
      return { ok: false, code, title, message, session };
    };
    if (session.expiresAt <= this.#now()) {
      return fail(
        'invalid_authorization_response',
        'Expired',
        'This connect request expired (connect requests live ten minutes). Start again from your application.',
      );
    }
    if (
      browserSecret === undefined ||
      session.browserHash === null ||
      !digestsEqual(session.browserHash, sha256Hex(browserSecret))
    ) {
      return fail(
        'invalid_authorization_response',
        'Different browser',
        'This sign-in was started in another browser (or its cookie is gone), so it was not accepted. Start again in one browser.',
      );
    }
    const resolved = await this.#options.store.authClients.resolve(
      session.tenantId,
      session.authClientId,
    );
    if (resolved === undefined || session.verifierEnc === null) {
      return fail(
        'invalid_configuration',
        'Auth client gone',
        'The auth client of this connect request no longer exists.',
      );
    }
    let params: URLSearchParams;
    try {
      params = validateAuthorizationResponse(resolved.client, query, state);
    } catch (error) {
      const denied = query.get('error') === 'access_denied';
      return fail(
        'invalid_authorization_response',
        denied ? 'Access denied' : 'Sign-in failed',
        denied
          ? 'You declined access at the provider, so no account was connected.'
          : (error as Error).message,
      );
    }
    try {
      const codeVerifier = this.#options.keyring.decrypt(
        session.verifierEnc,
        verifierAad(session.id),
      );
      const response = await codeExchangeRequest(
        resolved.client,
        params,
        { codeVerifier, redirectUri: session.redirectUri },
        {
          ...(this.#options.fetch === undefined ? {} : { fetch: this.#options.fetch }),
        },
      );
      const tokenSet = await processCodeExchangeResponse(resolved.client, response, this.#now());
      const credential = await this.#options.service.createCredential(
        session.tenantId,
        resolved,
        tokenSet,
        'connect',
      );
      await this.#options.store.connectSessions.complete(session.id, credential.id);
      return { ok: true, session, credentialId: credential.id };
    } catch (error) {
      if (!(error instanceof TokenwardenError)) {
        // Not the provider's answer (a database failure, a bug): details stay in the log.
        this.#options.logger.error(
          { connectSessionId: session.id, err: error },
          'connect callback failed',
        );
        return fail(
          'internal_error',
          'Could not connect',
          'The vault could not store the connection. Try again later.',
        );
      }
      this.#options.logger.warn(
        { connectSessionId: session.id, code: error.code },
        'code exchange failed',
      );
      return fail(
        error.code,
        'Could not connect',
        `The provider did not accept the sign-in: ${error.message}`,
      );
    }
  }
}
