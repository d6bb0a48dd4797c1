// Runs a SOQL query (msg.body.query, else cfg.query) and emits the answer.
// Token refresh on 401 lives in ../salesforce.js.
const { sendRequestAndRefreshTokensIfRequired, queryPath } = require('../salesforce');

exports.process = async function processAction(msg, cfg) {
  const soql = msg.body?.query || cfg.query;
  if (!soql) throw new Error('no query: put one in msg.body.query or in the step configuration');
  const result = await sendRequestAndRefreshTokensIfRequired(
    this,
    cfg,
    queryPath(soql, cfg.apiVersion),
  );
  return { body: result };
};
