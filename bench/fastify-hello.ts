/**
 * S2's baseline, run as a child process like the vault: a minimal `fastify()`
 * app whose one route answers `{hello: 'world'}` through the same default JSON
 * serialization as the vault's token route (no response schema). It takes the
 * same request the vault gets (POST, JSON body, Authorization header), so the
 * difference between the two is the vault's own work. Prints `{url}` when
 * listening; exits on SIGTERM or when its stdin closes.
 */
import Fastify from 'fastify';

const app = Fastify();
app.post('/hello', async () => ({ hello: 'world' }));
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
const port = typeof address === 'object' && address !== null ? address.port : 0;

const stop = () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}/hello` })}\n`);
