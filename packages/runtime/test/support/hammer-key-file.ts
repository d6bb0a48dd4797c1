// Child process for the atomicity test: merges updated keys into a key file as
// fast as it can until it is killed. Each response carries its own counter in
// every member, so a file mixing two writes would show it.
import { FileKeyStore } from '../../src/file-key-store.ts';

const [path] = process.argv.slice(2);
if (path === undefined) throw new Error('usage: hammer-key-file.ts <key file>');
const store = await FileKeyStore.open(path, { lockTimeoutMs: 5000 });
for (let n = 1; ; n++) {
  await store.updateKeys({
    access_token: `access-${n}`,
    refresh_token: `refresh-${n}`,
    token_type: 'Bearer',
    expires_in: 3600,
    counter: n,
    padding: 'x'.repeat(2000 + (n % 7) * 500),
  });
  if (n === 1) process.stdout.write('ready\n');
}
