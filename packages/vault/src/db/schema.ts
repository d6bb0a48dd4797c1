import type { Generated } from 'kysely';

/**
 * One schema for SQLite and PostgreSQL. Times are integer milliseconds since the
 * epoch (bigint in PostgreSQL, parsed back to numbers), booleans are 0/1, JSON is
 * text: the same values on both engines, one query layer.
 */
export interface TenantsTable {
  id: string;
  name: string;
  created_at: number;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: string;
  /** SHA-256 of the whole key, hex. */
  key_hash: string;
  label: string;
  is_admin: number;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface AuthClientsTable {
  id: string;
  tenant_id: string;
  name: string;
  provider_id: string;
  client_id: string;
  /** Encrypted, associated data `auth_client:<id>`. */
  client_secret_enc: string;
  /** JSON array. */
  scopes: string;
  /** JSON object. */
  placeholders: string;
  /** JSON object. */
  endpoints: string;
  status: 'ok' | 'misconfigured';
  status_reason: string | null;
  created_at: number;
  updated_at: number;
}

export interface ConnectSessionsTable {
  id: string;
  tenant_id: string;
  auth_client_id: string;
  /** SHA-256 of the OAuth `state`, set when the browser starts the flow. */
  state_hash: string | null;
  /** SHA-256 of the browser-binding cookie's value. */
  browser_hash: string | null;
  /** Encrypted PKCE verifier, associated data `connect_session:<id>`. */
  verifier_enc: string | null;
  redirect_uri: string;
  return_to: string | null;
  /** JSON array, or null for the auth client's scopes. */
  scopes: string | null;
  status: 'pending' | 'started' | 'completed' | 'failed';
  error_code: string | null;
  error_message: string | null;
  credential_id: string | null;
  created_at: number;
  expires_at: number;
  /** Set once, when a callback consumes the state: single use. */
  used_at: number | null;
}

export type CredentialStatus = 'active' | 'reauth_required' | 'revoked';

export interface CredentialsTable {
  id: string;
  tenant_id: string;
  auth_client_id: string;
  status: CredentialStatus;
  status_reason: string | null;
  /** Encrypted StoredTokenSet JSON, associated data `credential:<id>`. */
  token_enc: string;
  /** Compare-and-set version: grows by one on every token write. */
  version: number;
  expires_at: number | null;
  last_refresh_at: number | null;
  refresh_count: number;
  last_error_code: string | null;
  last_error_message: string | null;
  last_error_at: number | null;
  /** JSON object of flags (`missingRefreshToken`). */
  flags: string;
  /** Non-secret response members worth listing (scope). */
  scope: string | null;
  /** The refresh lease: who may call the token endpoint for this credential now. */
  lease_owner: string | null;
  lease_until: number | null;
  /** When the background refresher should look at it next (expiry minus margin). */
  next_refresh_at: number | null;
  created_at: number;
  updated_at: number;
}

export type EventType =
  | 'connected'
  | 'refreshed'
  | 'refresh_failed'
  | 'reauth_required'
  | 'revoked'
  | 'keys_updated';

export interface EventsTable {
  id: Generated<number>;
  tenant_id: string;
  credential_id: string | null;
  auth_client_id: string | null;
  type: EventType;
  /** JSON object, never a secret. */
  data: string;
  created_at: number;
}

export interface Database {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  auth_clients: AuthClientsTable;
  connect_sessions: ConnectSessionsTable;
  credentials: CredentialsTable;
  events: EventsTable;
}
