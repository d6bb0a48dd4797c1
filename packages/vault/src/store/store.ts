import type { ProviderCatalog } from '@tokenwarden/oauth';
import type { Kysely } from 'kysely';
import type { Cipher } from '../crypto/keyring.ts';
import type { Database } from '../db/schema.ts';
import { AuthClientRepository } from './auth-clients.ts';
import { ConnectSessionRepository } from './connect-sessions.ts';
import { CredentialRepository } from './credentials.ts';
import { EventRepository } from './events.ts';
import { TenantRepository } from './tenants.ts';
import type { TokenCache } from './token-cache.ts';
import { WebhookRepository } from './webhooks.ts';

/** Every repository over one database, sharing the keyring. */
export class VaultStore {
  readonly db: Kysely<Database>;
  readonly tenants: TenantRepository;
  readonly authClients: AuthClientRepository;
  readonly connectSessions: ConnectSessionRepository;
  readonly credentials: CredentialRepository;
  readonly events: EventRepository;
  readonly webhooks: WebhookRepository;

  readonly tokenCache: TokenCache | undefined;

  constructor(
    db: Kysely<Database>,
    keyring: Cipher,
    catalog: ProviderCatalog,
    options: {
      tokenCache?: TokenCache;
      /** This process's liveness lock number while it is held (see CredentialRepository). */
      leaseHolder?: () => number | null;
    } = {},
  ) {
    this.db = db;
    this.tokenCache = options.tokenCache;
    this.tenants = new TenantRepository(db);
    this.authClients = new AuthClientRepository(db, keyring, catalog);
    this.connectSessions = new ConnectSessionRepository(db);
    this.credentials = new CredentialRepository(
      db,
      keyring,
      options.tokenCache,
      options.leaseHolder,
    );
    this.events = new EventRepository(db);
    this.webhooks = new WebhookRepository(db, keyring);
  }
}
