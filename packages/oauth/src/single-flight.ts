/**
 * Concurrent callers with the same key share one in-flight promise: the
 * in-process half of single-flight (the vault adds a database lease for the
 * cross-process half).
 */
export class SingleFlight<T> {
  readonly #inFlight = new Map<string, Promise<T>>();

  run(key: string, operation: () => Promise<T>): Promise<T> {
    const current = this.#inFlight.get(key);
    if (current !== undefined) return current;
    // The operation starts only once the flight is registered, so one that throws
    // before returning its promise still frees the key.
    const flight = Promise.resolve()
      .then(operation)
      .finally(() => {
        this.#inFlight.delete(key);
      });
    this.#inFlight.set(key, flight);
    return flight;
  }

  /** Whether an operation for `key` is under way. */
  has(key: string): boolean {
    return this.#inFlight.has(key);
  }
}
