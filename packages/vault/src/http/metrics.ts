import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { VaultStore } from '../store/store.ts';

/** Prometheus metrics. Gauges read the database when scraped. */
export interface VaultMetrics {
  registry: Registry;
}

export function createMetrics(store: VaultStore): VaultMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tokenwarden_' });
  new Gauge({
    name: 'tokenwarden_credentials',
    help: 'Credentials by status.',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const rows = await store.db
        .selectFrom('credentials')
        .select((eb) => ['status', eb.fn.countAll<number>().as('n')])
        .groupBy('status')
        .execute();
      this.reset();
      for (const row of rows) this.set({ status: row.status }, Number(row.n));
    },
  });
  return { registry };
}
