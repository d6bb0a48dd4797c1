// The same call written the new way: no refresh code and no updateKeys. The
// runtime's this.fetch adds a valid access token for the step's credential,
// refreshes it before it expires, and after a 401 refreshes once (only if nobody
// else already did) and sends the request again. With a vault credential, any
// number of runs share one refresh per expiry.
const { graphUrl, messagesPath, graphError, readJson } = require('../graph');

exports.process = async function processAction(msg, cfg) {
  const response = await this.fetch(graphUrl(messagesPath(msg, cfg)), {
    headers: { accept: 'application/json' },
  });
  const body = await readJson(response);
  if (!response.ok) throw graphError(response.status, body);
  return { body: { count: body.value.length, messages: body.value } };
};
