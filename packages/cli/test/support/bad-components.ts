import { cp, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The outlook example, the component the bad ones are made from. */
export const OUTLOOK = fileURLToPath(new URL('../../../../examples/outlook', import.meta.url));
const NODE_MODULES = fileURLToPath(new URL('../../../../node_modules', import.meta.url));

/** What the outlook example's component.json environment needs (values for {{…}}). */
export const OUTLOOK_ENV = {
  MSAPP_CLIENT_ID: 'client-id',
  MSAPP_CLIENT_SECRET: 'client-secret-value',
  MSAPP_AUTH_URI: 'https://login.example.com/authorize',
  MSAPP_TOKEN_URI: 'https://login.example.com/token',
};

export type Descriptor = {
  title?: string;
  actions: Record<string, { main?: string }>;
  credentials: {
    fields: Record<string, { viewClass: string }>;
    oauth2: Record<string, unknown>;
  };
};

/** Each validation problem issue 5 lists: how to make it, and the message naming its field. */
export const BAD_COMPONENTS: readonly [
  name: string,
  edit: (d: Descriptor) => void,
  problem: RegExp,
][] = [
  [
    'missing title',
    (d) => {
      delete d.title;
    },
    /component\.json: title: required/,
  ],
  [
    'an action without main',
    (d) => {
      delete d.actions.readMailWithFetch?.main;
    },
    /component\.json: actions\.readMailWithFetch\.main: required \(the module that exports process\)/,
  ],
  [
    'an oauth2 block missing token_uri',
    (d) => {
      delete d.credentials.oauth2.token_uri;
    },
    /component\.json: credentials\.oauth2\.token_uri: required/,
  ],
  [
    'an unknown viewClass',
    (d) => {
      (d.credentials.fields.oauth as { viewClass: string }).viewClass = 'OauthFieldView';
    },
    /component\.json: credentials\.fields\.oauth\.viewClass: unknown view class "OauthFieldView" \(did you mean "OAuthFieldView"\?\)/,
  ],
];

/**
 * A copy of the outlook example in `parent` with component.json edited. Its
 * modules still find their dependencies (co) through a node_modules link.
 */
export async function brokenComponent(
  parent: string,
  name: string,
  edit: (d: Descriptor) => void,
): Promise<string> {
  const dir = join(parent, name.replaceAll(' ', '-'));
  await cp(OUTLOOK, dir, { recursive: true, filter: (source) => !source.includes('/test') });
  await symlink(NODE_MODULES, join(dir, 'node_modules'));
  const path = join(dir, 'component.json');
  const descriptor = JSON.parse(await readFile(path, 'utf8')) as Descriptor;
  edit(descriptor);
  await writeFile(path, JSON.stringify(descriptor, null, 2));
  return dir;
}
