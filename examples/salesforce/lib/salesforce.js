// The seed document's second method, "refreshing the tokens when it is required",
// as elastic.io's Salesforce component does it (sendRequestAndRefreshTokensIfRequired
// and refreshTokens in its Java code):
//
// - send the request with the access token from the configuration;
// - on 401 UNAUTHORIZED, trade the refresh token for a new access token
//   (format=json), keep the whole answer in the configuration, and emit it with
//   updateKeys (some providers also rotate the refresh token);
// - send the original request once more; a second 401 is an error, not a loop.
//
// Unlike the Java example, the token response is never logged.

const DEFAULT_TOKEN_URI = 'https://login.salesforce.com/services/oauth2/token';
const DEFAULT_API_VERSION = '59.0';

class AuthorizationError extends Error {
  constructor(body) {
    const first = Array.isArray(body) && body[0] ? body[0] : {};
    super(`Salesforce answered 401 ${first.errorCode || 'UNAUTHORIZED'}`);
    this.name = 'AuthorizationError';
    this.statusCode = 401;
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return undefined;
  }
}

async function sendRequest(path, oauth) {
  if (!oauth || typeof oauth.instance_url !== 'string') {
    throw new Error('Please authenticate with Salesforce: cfg.oauth has no instance_url');
  }
  const response = await fetch(`${oauth.instance_url.replace(/\/+$/, '')}${path}`, {
    headers: { authorization: `Bearer ${oauth.access_token}`, accept: 'application/json' },
  });
  const body = await readJson(response);
  if (response.status === 401) throw new AuthorizationError(body);
  if (!response.ok) {
    const first = Array.isArray(body) && body[0] ? body[0] : {};
    throw new Error(
      `Salesforce answered HTTP ${response.status}${first.errorCode ? ` ${first.errorCode}` : ''}${first.message ? `: ${first.message}` : ''}`,
    );
  }
  return body;
}

/** Refreshes the tokens, keeps the whole answer in configuration.oauth, and returns the answer. */
async function refreshTokens(configuration) {
  const oauth = configuration.oauth;
  if (!oauth) throw new Error('Please authenticate with Salesforce');
  if (typeof oauth.refresh_token !== 'string') {
    throw new Error(
      'cfg.oauth has no refresh_token: this component refreshes by itself and needs the whole token set',
    );
  }
  const params = new URLSearchParams({
    grant_type: 'refresh_token',
    client_id: process.env.SALESFORCE_KEY || '',
    client_secret: process.env.SALESFORCE_SECRET || '',
    refresh_token: oauth.refresh_token,
    format: 'json',
  });
  const response = await fetch(process.env.SALESFORCE_TOKEN_URI || DEFAULT_TOKEN_URI, {
    method: 'POST',
    headers: { accept: 'application/json' },
    body: params,
  });
  const newOauth = await readJson(response);
  if (!response.ok || !newOauth || typeof newOauth.access_token !== 'string') {
    const reason = newOauth?.error ? `: ${newOauth.error}` : '';
    throw new Error(`refreshing the Salesforce token failed: HTTP ${response.status}${reason}`);
  }
  // A refresh answer may leave out refresh_token (no rotation) or instance_url:
  // the ones we had stay.
  configuration.oauth = { ...oauth, ...newOauth };
  return newOauth;
}

/**
 * GETs a path under cfg.oauth.instance_url; on 401 refreshes, emits the whole
 * refresh response with updateKeys, and tries once more.
 */
async function sendRequestAndRefreshTokensIfRequired(emitter, configuration, path) {
  try {
    return await sendRequest(path, configuration.oauth);
  } catch (error) {
    if (!(error instanceof AuthorizationError)) throw error;
  }
  emitter.logger.info('About to refresh tokens');
  const newOauth = await refreshTokens(configuration);
  emitter.logger.info('Emitting updated keys');
  await emitter.emit('updateKeys', { oauth: newOauth });
  emitter.logger.info('Sending the original request with the refreshed access_token');
  try {
    return await sendRequest(path, configuration.oauth);
  } catch (error) {
    if (error instanceof AuthorizationError) {
      throw new Error(`${error.message} again after the token was refreshed; giving up`);
    }
    throw error;
  }
}

function queryPath(soql, apiVersion) {
  return `/services/data/v${apiVersion || DEFAULT_API_VERSION}/query?q=${encodeURIComponent(soql)}`;
}

module.exports = { sendRequestAndRefreshTokensIfRequired, queryPath, AuthorizationError };
