// What both actions and verifyCredentials share: where Graph is, and its errors.
// Graph's base URL comes from the environment so that tests can point it at a
// fake provider on 127.0.0.1.

const DEFAULT_GRAPH_URL = 'https://graph.microsoft.com';

/** The URL of a Graph path such as `/v1.0/me/messages`. */
function graphUrl(path) {
  return `${(process.env.MSGRAPH_URL || DEFAULT_GRAPH_URL).replace(/\/+$/, '')}${path}`;
}

/** `/v1.0/me/messages?$top=n`: n from the message body, else the step's cfg, else 10. */
function messagesPath(msg, cfg) {
  const wanted = Number(msg.body?.top || cfg.top || 10);
  const top = Number.isInteger(wanted) && wanted > 0 ? Math.min(wanted, 100) : 10;
  return `/v1.0/me/messages?$top=${top}`;
}

/** An Error for a Graph error answer (`{error: {code, message}}`); it never holds a token. */
function graphError(status, body) {
  const detail = body?.error ? body.error : {};
  const error = new Error(
    `Microsoft Graph answered HTTP ${status}${detail.code ? ` ${detail.code}` : ''}${detail.message ? `: ${detail.message}` : ''}`,
  );
  error.statusCode = status;
  return error;
}

/** Reads a JSON answer; a body that is not JSON is undefined. */
async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return undefined;
  }
}

module.exports = { graphUrl, messagesPath, graphError, readJson };
