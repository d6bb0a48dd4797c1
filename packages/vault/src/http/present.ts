import type { AuthClientRecord } from '../store/auth-clients.ts';
import type { ConnectSession } from '../store/connect-sessions.ts';
import type { CredentialRecord } from '../store/credentials.ts';
import type { VaultEvent } from '../store/events.ts';

/** API shapes (docs/api.md): ISO times, never a secret. */
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function presentAuthClient(record: AuthClientRecord) {
  return {
    id: record.id,
    name: record.name,
    providerId: record.providerId,
    clientId: record.clientId,
    hasClientSecret: record.hasClientSecret,
    scopes: record.scopes,
    placeholders: record.placeholders,
    endpoints: record.endpoints,
    status: record.status,
    statusReason: record.statusReason,
    createdAt: iso(record.createdAt),
    updatedAt: iso(record.updatedAt),
  };
}

export function presentCredential(record: CredentialRecord, providerId: string | undefined) {
  return {
    id: record.id,
    authClientId: record.authClientId,
    providerId: providerId ?? null,
    status: record.status,
    statusReason: record.statusReason,
    expiresAt: iso(record.expiresAt),
    lastRefreshAt: iso(record.lastRefreshAt),
    refreshCount: record.refreshCount,
    lastError:
      record.lastError === null
        ? null
        : {
            code: record.lastError.code,
            message: record.lastError.message,
            at: iso(record.lastError.at),
          },
    flags: { missingRefreshToken: record.flags.missingRefreshToken === true },
    scope: record.scope,
    nextRefreshAt: iso(record.nextRefreshAt),
    createdAt: iso(record.createdAt),
    updatedAt: iso(record.updatedAt),
  };
}

export function presentConnectSession(session: ConnectSession, now: number) {
  const expired =
    session.status !== 'completed' && session.status !== 'failed' && session.expiresAt <= now;
  return {
    id: session.id,
    authClientId: session.authClientId,
    status: expired ? 'expired' : session.status === 'started' ? 'pending' : session.status,
    credentialId: session.credentialId,
    error: session.error,
    expiresAt: iso(session.expiresAt),
  };
}

export function presentEvent(event: VaultEvent) {
  return {
    id: String(event.id),
    type: event.type,
    credentialId: event.credentialId,
    authClientId: event.authClientId,
    at: iso(event.at),
    data: event.data,
  };
}
