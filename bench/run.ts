/** Runs every benchmark in sequence; each writes bench/results/<name>.json. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const benches = [
  'b1-overhead.ts',
  'b2-coalescing.ts',
  'b3-rotation-storm.ts',
  'b4-held-lease-index.ts',
  'v1-cross-process.ts',
  's2-token-api.ts',
  'r2-provider-faults.ts',
  // r3-database-restart.ts needs root (it runs its own PostgreSQL cluster): run it alone.
];
let failed = 0;
for (const bench of benches) {
  process.stdout.write(`\n== ${bench}\n`);
  const result = spawnSync(
    process.execPath,
    [fileURLToPath(new URL(bench, import.meta.url)), ...process.argv.slice(2)],
    {
      stdio: 'inherit',
    },
  );
  if (result.status !== 0) failed++;
}
process.exitCode = failed === 0 ? 0 : 1;
