import { escapeHtml } from './http.ts';

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.4rem}code{background:#f2f2f2;padding:0 .25rem}ul{padding-left:1.2rem}
button{font:inherit;padding:.5rem 1.2rem;margin-right:.5rem;cursor:pointer}
.note{color:#555;font-size:.9rem}`;

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

export interface ConsentPageInput {
  readonly requestId: string;
  readonly clientId: string;
  readonly scopes: readonly string[];
  readonly redirectUri: string;
  readonly personality: string;
}

/** The consent screen: shows who asks for what and posts the decision with a one-time request id. */
export function consentPage(input: ConsentPageInput): string {
  const scopes = input.scopes.map((s) => `<li><code>${escapeHtml(s)}</code></li>`).join('\n');
  const redirectOrigin = URL.canParse(input.redirectUri)
    ? new URL(input.redirectUri).origin
    : input.redirectUri;
  return page(
    'Authorize access — fake provider',
    `<h1>Authorize access</h1>
<p>The application <strong><code>${escapeHtml(input.clientId)}</code></strong> asks for access to your account with these scopes:</p>
<ul>
${scopes}
</ul>
<p>You will be sent back to <code>${escapeHtml(redirectOrigin)}</code>.</p>
<form method="post" action="/authorize/decision">
<input type="hidden" name="request_id" value="${escapeHtml(input.requestId)}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
<p class="note">Fake OAuth2 provider (${escapeHtml(input.personality)} personality) from @tokenwarden/testing. No real account is involved.</p>`,
  );
}

/** Shown instead of redirecting when the redirect URI cannot be trusted (no open redirect). */
export function errorPage(title: string, message: string): string {
  return page(
    `${title} — fake provider`,
    `<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(message)}</p>
<p class="note">Fake OAuth2 provider from @tokenwarden/testing.</p>`,
  );
}
