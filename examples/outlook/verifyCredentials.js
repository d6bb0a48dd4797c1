// Checks the account by reading one message. On tokenwarden `this.fetch` is
// authorized for the credential (and refreshes an expired token); elsewhere the
// stored access token is used as it is.
const { graphUrl, graphError, readJson } = require('./lib/graph');

module.exports = function verifyCredentials(credentials, cb) {
  const authorizedFetch =
    this && typeof this.fetch === 'function'
      ? this.fetch
      : (url, init) =>
          fetch(url, {
            ...init,
            headers: { authorization: `Bearer ${credentials.oauth.access_token}` },
          });
  check(authorizedFetch).then(
    (result) => cb(null, result),
    (error) => cb(error),
  );
};

async function check(authorizedFetch) {
  const response = await authorizedFetch(graphUrl('/v1.0/me/messages?$top=1'));
  const body = await readJson(response);
  if (response.ok) return { verified: true };
  return { verified: false, reason: graphError(response.status, body).message };
}
