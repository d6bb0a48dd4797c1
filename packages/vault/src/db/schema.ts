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
  /** 1 when the last error was a request that went out and got no answer (a timeout, a reset). */
  last_error_in_doubt: number;
  /** JSON object of flags (`missingRefreshToken`). */
  flags: string;
  /** Non-secret response members worth listing (scope). */
  scope: string | null;
  /** The refresh lease: who may call the token endpoint for this credential now. */
  lease_owner: string | null;
  lease_until: number | null;
  /** When the background refresher should look at it next (expiry minus margin, keep-alive, or backoff). */
  next_refresh_at: number | null;
  created_at: number;
  updated_at: number;
  /** Refresh attempts that failed in a row (reset by any token write); drives the backoff. (0002) */
  failure_count: number;
  /** The last refresh decision and its reason, for operators ("backed off after 3 failures until …"). (0002) */
  last_decision: string | null;
  last_decision_at: number | null;
  /**
   * Set by a claim to the lease owner it replaced (a dead replica's), null when the
   * lease was free: read back only through the claim's RETURNING. (0002)
   */
  lease_taken_from: string | null;
  /**
   * The holder's liveness lock number (db/holder-liveness.ts), or null: a lease whose
   * holder's lock is seen released is ended at once for takeover. (0008)
   */
  lease_holder: number | null;
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

/** The event types a webhook may subscribe to (`keys_updated` is not one: it is a component's own write). */
export type WebhookEventType = Exclude<EventType, 'keys_updated'>;

export interface WebhooksTable {
  id: string;
  tenant_id: string;
  /** Where deliveries are POSTed (http(s), no credentials in it). */
  url: string;
  /** JSON array of WebhookEventType. */
  events: string;
  /** Encrypted signing secret, associated data `webhook:<id>`. */
  secret_enc: string;
  created_at: number;
  updated_at: number;
}

/**
 * `pending`: not tried yet; `retrying`: tried and failed, tried again at
 * `next_attempt_at`; `delivered`: a 2xx answer; `gave_up`: every attempt failed.
 */
export type WebhookDeliveryStatus = 'pending' | 'retrying' | 'delivered' | 'gave_up';

/**
 * The outbox: one row per (event, subscribed webhook), written in the event's
 * transaction. A worker claims due rows with a lease, so a replica that dies
 * mid-delivery leaves a claim that expires and is taken over.
 */
export interface WebhookDeliveriesTable {
  id: string;
  webhook_id: string;
  tenant_id: string;
  event_id: number;
  event_type: WebhookEventType;
  status: WebhookDeliveryStatus;
  attempts: number;
  /** When the next attempt is due; null once delivered or given up. */
  next_attempt_at: number | null;
  /** The claim: who is sending it now, and until when that holds. */
  lease_owner: string | null;
  lease_until: number | null;
  last_attempt_at: number | null;
  last_http_status: number | null;
  last_error: string | null;
  delivered_at: number | null;
  created_at: number;
}

export interface Database {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  auth_clients: AuthClientsTable;
  connect_sessions: ConnectSessionsTable;
  credentials: CredentialsTable;
  events: EventsTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
}
