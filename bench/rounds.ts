// Rounds of one measurement across the daemons: untimed warm-ups per daemon, then timed rounds
// taking turns between the daemons (A B, B A, A B, ...), so that drift on the VM, and whatever one
// round leaves behind for the next, hits both alike. A daemon that fails
// once is not asked again (one failure says it all); the others go on.

/** One metric for one daemon: the value, or why there is none. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

export interface RoundsOptions {
  /** Untimed runs per daemon before the timed ones (results dropped). */
  warmups: number;
  rounds: number;
}

/** The first line of an error's message. */
export function errorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
}

/**
 * Runs fn(name, round) `warmups` times per daemon (daemon after daemon), then `rounds` times
 * taking turns: round 0 on every daemon in the given order, round 1 in the reverse order, and so
 * on. Warm-ups get negative round numbers
 * (-warmups .. -1). Resolves with each daemon's timed results in round order, or its first error.
 */
export async function interleavedRounds<N extends string, T>(
  names: readonly N[],
  opts: RoundsOptions,
  fn: (name: N, round: number) => Promise<T>,
  onError: (name: N, round: number, error: string) => void = () => undefined,
): Promise<Record<N, Outcome<T[]>>> {
  const results = new Map<N, T[]>(names.map((n) => [n, []]));
  const failed = new Map<N, string>();
  const once = async (name: N, round: number): Promise<T | undefined> => {
    if (failed.has(name)) return undefined;
    try {
      return await fn(name, round);
    } catch (err) {
      failed.set(name, errorText(err));
      onError(name, round, errorText(err));
      return undefined;
    }
  };
  for (const name of names) {
    for (let w = opts.warmups; w > 0; w--) await once(name, -w);
  }
  for (let round = 0; round < opts.rounds; round++) {
    for (const name of round % 2 === 0 ? names : [...names].reverse()) {
      const r = await once(name, round);
      if (!failed.has(name)) results.get(name)?.push(r as T);
    }
  }
  const out = {} as Record<N, Outcome<T[]>>;
  for (const name of names) {
    const error = failed.get(name);
    out[name] = error !== undefined ? { ok: false, error } : { ok: true, value: results.get(name) ?? [] };
  }
  return out;
}

/** Applies f to the value of each successful outcome. */
export function mapOutcomes<N extends string, T, U>(
  outcomes: Record<N, Outcome<T>>,
  f: (value: T, name: N) => U,
): Record<N, Outcome<U>> {
  const out = {} as Record<N, Outcome<U>>;
  for (const name of Object.keys(outcomes) as N[]) {
    const o = outcomes[name];
    out[name] = o.ok ? { ok: true, value: f(o.value, name) } : { ok: false, error: o.error };
  }
  return out;
}
