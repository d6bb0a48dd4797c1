// The seed document's first method, "refreshing token during each access", as
// elastic.io's Microsoft Outlook component does it: before every call, trade the
// refresh token for a new token set (Microsoft rotates refresh tokens, and wants
// the scope on every refresh), emit the WHOLE response with updateKeys so that the
// new refresh token is kept, then call Graph with the new access token.
//
// On tokenwarden this runs unchanged: updateKeys is stored before the next message
// starts, and the next message's cfg.oauth holds the new refresh token (sailor
// would hand it the old one). It needs the whole token set in cfg.oauth, so it
// runs with a key file; with a vault credential (which never hands out refresh
// tokens) use readMailWithFetch.
const co = require('co');
const { graphUrl, messagesPath, graphError, readJson } = require('../graph');

const DEFAULT_TOKEN_URI = 'https://login.microsoftonline.com/common/oauth2/v2.0/token';

function refreshToken(oauth) {
  if (!oauth || typeof oauth.refresh_token !== 'string') {
    return Promise.reject(
      new Error(
        'cfg.oauth has no refresh_token: readMail refreshes by itself and needs the whole token set (run it with a key file, or use readMailWithFetch)',
      ),
    );
  }
  const form = new URLSearchParams({
    refresh_token: oauth.refresh_token,
    grant_type: 'refresh_token',
    client_id: process.env.MSAPP_CLIENT_ID || '',
    client_secret: process.env.MSAPP_CLIENT_SECRET || '',
  });
  if (oauth.scope) form.set('scope', oauth.scope);
  return fetch(process.env.MSAPP_TOKEN_URI || DEFAULT_TOKEN_URI, {
    method: 'POST',
    headers: { accept: 'application/json' },
    body: form,
  }).then(async (response) => {
    const body = await readJson(response);
    if (!response.ok || !body || typeof body.access_token !== 'string') {
      const reason = body?.error ? `: ${body.error}` : '';
      throw new Error(`refreshing the token failed: HTTP ${response.status}${reason}`);
    }
    return body;
  });
}

function listMessages(accessToken, path) {
  return fetch(graphUrl(path), {
    headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
  }).then(async (response) => {
    const body = await readJson(response);
    if (!response.ok) throw graphError(response.status, body);
    return body.value;
  });
}

exports.process = function processAction(msg, cfg) {
  const self = this;
  return co(function* mainLoop() {
    self.logger.info('Refreshing an OAuth Token');
    const newToken = yield refreshToken(cfg.oauth);
    self.logger.info('Updating token');
    self.emit('updateKeys', { oauth: newToken });

    const messages = yield listMessages(newToken.access_token, messagesPath(msg, cfg));
    return { body: { count: messages.length, messages } };
  });
};
