import {
  type AuthClient,
  createAuthClient,
  DEFAULT_PROVIDERS_DIR,
  loadProviderCatalog,
  type ProviderCatalog,
  type ProviderProfile,
  parseProviderProfile,
} from '@tokenwarden/oauth';
import type { Component } from './component.ts';
import { RuntimeError } from './errors.ts';

export interface ComponentAuthClientOptions {
  /** The provider profile whose quirks apply. Default: the block's `provider`, else generic `oauth2`. */
  profile?: ProviderProfile;
  /** Where the catalog lives, when `profile` is not given. Default: the repository's providers/. */
  providersDir?: string;
}

const catalogs = new Map<string, Promise<ProviderCatalog>>();

function catalogAt(dir: string): Promise<ProviderCatalog> {
  let catalog = catalogs.get(dir);
  if (catalog === undefined) {
    catalog = loadProviderCatalog(dir);
    catalogs.set(dir, catalog);
    catalog.catch(() => catalogs.delete(dir));
  }
  return catalog;
}

/**
 * The auth client that component.json's `credentials.oauth2` block declares
 * (elastic.io's way of declaring one), for refreshing offline: client_id,
 * client_secret, auth_uri and token_uri as endpoint overrides, `scopes`.
 * The profile is the block's `provider` from the catalog (tokenwarden's
 * addition, e.g. `"provider": "microsoft"` to send scopes on refresh), else the
 * generic `oauth2` profile; client authentication is the block's `client_auth`,
 * else `client_secret_post` for the generic profile (what elastic.io's examples
 * send) and the profile's own otherwise.
 */
export async function createComponentAuthClient(
  component: Component,
  options: ComponentAuthClientOptions = {},
): Promise<AuthClient> {
  const block = component.oauth2;
  if (block === undefined) {
    throw new RuntimeError(
      'no_oauth2_client',
      `${component.descriptorPath}: credentials.oauth2 is missing or incomplete; refreshing offline needs client_id, client_secret, auth_uri and token_uri there (or keep the credential in the vault)`,
    );
  }
  const unresolved = Object.entries({
    client_id: block.clientId,
    client_secret: block.clientSecret,
    auth_uri: block.authUri,
    token_uri: block.tokenUri,
  })
    .filter(([, value]) => /\{\{/.test(value))
    .map(([key]) => `credentials.oauth2.${key}`);
  if (unresolved.length > 0) {
    throw new RuntimeError(
      'missing_env_variable',
      `${component.descriptorPath}: ${unresolved.join(', ')} still hold {{…}} templates: set their environment variables`,
    );
  }
  let profile = options.profile;
  if (profile === undefined) {
    const id = block.provider ?? 'oauth2';
    profile = (await catalogAt(options.providersDir ?? DEFAULT_PROVIDERS_DIR)).get(id);
    if (profile === undefined) {
      throw new RuntimeError(
        'no_oauth2_client',
        `${component.descriptorPath}: credentials.oauth2.provider: no provider "${id}" in the catalog`,
      );
    }
  }
  const clientAuthentication =
    block.clientAuth ??
    (profile.id === 'oauth2' ? 'client_secret_post' : profile.clientAuthentication);
  if (clientAuthentication !== profile.clientAuthentication) {
    profile = parseProviderProfile(
      { ...profile, clientAuthentication },
      `${component.descriptorPath} (credentials.oauth2)`,
    );
  }
  try {
    return createAuthClient({
      profile,
      clientId: block.clientId,
      clientSecret: block.clientSecret,
      ...(block.scopes.length > 0 ? { scopes: block.scopes } : {}),
      endpoints: { authorizationUrl: block.authUri, tokenUrl: block.tokenUri },
    });
  } catch (error) {
    throw new RuntimeError(
      'no_oauth2_client',
      `${component.descriptorPath}: credentials.oauth2: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
