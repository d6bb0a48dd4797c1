// Checks the account with a one-row query, refreshing on a 401 like the actions do
// (and emitting the new keys with updateKeys).
const { sendRequestAndRefreshTokensIfRequired, queryPath } = require('./lib/salesforce');

module.exports = function verifyCredentials(credentials, cb) {
  sendRequestAndRefreshTokensIfRequired(
    this,
    credentials,
    queryPath('SELECT Id FROM Organization LIMIT 1'),
  ).then(
    () => cb(null, { verified: true }),
    (error) => cb(null, { verified: false, reason: error.message }),
  );
};
