export { type AuthClient, type AuthClientConfig, createAuthClient } from './auth-client.ts';
export {
  type AuthorizationUrlOptions,
  codeExchangeRequest,
  createAuthorizationRequest,
  type PendingAuthorization,
  processCodeExchangeResponse,
  validateAuthorizationResponse,
} from './authorization.ts';
export {
  type AuthorizedFetchOptions,
  createAuthorizedFetch,
  type RefreshStrategy,
} from './authorized-fetch.ts';
export { DEFAULT_PROVIDERS_DIR, loadProviderCatalog, type ProviderCatalog } from './catalog.ts';
export {
  ERROR_CODES,
  type ErrorCode,
  isTokenwardenError,
  ProfileError,
  TokenEndpointError,
  type TokenEndpointErrorOptions,
  TokenwardenError,
  type TokenwardenErrorOptions,
} from './errors.ts';
export { JsonFileTokenStore } from './file-store.ts';
export { parseRetryAfter, type RequestOptions } from './internal/http.ts';
export {
  endpointProblem,
  isLoopbackHost,
  type ProviderProfile,
  type ProviderProfileInput,
  parseProviderProfile,
  providerProfileSchema,
} from './profile.ts';
export { isSecretKey, REDACTED, redact } from './redact.ts';
export {
  processRefreshResponse,
  type RefreshOptions,
  refreshGrantRequest,
  refreshTokenSet,
  retryPolicyFor,
} from './refresh.ts';
export { type RetryPolicy, retryDelayMs, withRetry } from './retry.ts';
export { processRevocationResponse, revocationRequest } from './revoke.ts';
export { SingleFlight } from './single-flight.ts';
export { MemoryTokenStore, type StoredCredential, type TokenStore } from './store.ts';
export {
  type TokenChangeReason,
  TokenManager,
  type TokenManagerOptions,
  type TokenRequest,
  type TokenSource,
  type TokensChangedEvent,
} from './token-manager.ts';
export { type StoredTokenSet, type TokenResponse, TokenSet } from './token-set.ts';
export {
  type AuthenticateChallenge,
  bearerError,
  parseWwwAuthenticate,
} from './www-authenticate.ts';
