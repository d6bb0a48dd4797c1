/** Kept apart from demo.ts so that help texts load without the oauth and testing packages. */
export const DEMO_HELP = `tokenwarden demo: the token lifecycle, end to end, against the built-in fake provider

Usage:
  tokenwarden demo [options]

Starts a fake OAuth2 provider on 127.0.0.1, connects an account with the
authorization-code flow (state + PKCE S256), stores the tokens in a JSON file
(mode 0600), then for each refresh strategy runs concurrent callers through an
authorized fetch while the access token expires again and again.

Options:
  --personality <name>    microsoft (default: rotates refresh tokens), strict
                          (single-use refresh tokens), google, salesforce, generic
  --token-lifetime <s>    access-token lifetime in seconds (default 3)
  --seconds <s>           how long each strategy runs (default 10)
  --callers <n>           concurrent callers per strategy (default 5)
  --strategy <name>       run only this strategy: before-expiry, every-access, on-demand
  --data-dir <dir>        where the token file goes (default .data/demo)
  -h, --help              show this help

Tokens are never printed: each is shown as a short SHA-256 fingerprint.

Example:
  tokenwarden demo --personality strict --strategy every-access --seconds 5
`;
