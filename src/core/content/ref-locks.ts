// In-process locks on ingest refs, as containerd's content/local keeps them: one live writer per
// ref, and a refusal that says, in Go's formats, for how long and since when the ref is held.
import { performance } from "node:perf_hooks";
import { unavailable } from "../../errdefs/errors.js";

/** A held ref: who holds it (once known) and when it was taken (performance.now() ms). */
export interface RefLock<T> {
  readonly ref: string;
  readonly since: number;
  holder: T | undefined;
}

export class RefLocks<T> {
  readonly #held = new Map<string, RefLock<T>>();

  /**
   * Takes ref synchronously (so two concurrent callers cannot both win). When it is held:
   * Unavailable "ref <ref> locked for <duration> (since <time>)", containerd's tryLock text.
   */
  tryLock(ref: string): RefLock<T> {
    const held = this.#held.get(ref);
    if (held !== undefined) {
      const since = `${goTime(performance.timeOrigin + held.since)} m=+${(held.since / 1000).toFixed(9)}`;
      const elapsedNs = (performance.now() - held.since) * 1e6;
      throw unavailable(`ref ${ref} locked for ${goDuration(elapsedNs)} (since ${since})`);
    }
    const lock: RefLock<T> = { ref, since: performance.now(), holder: undefined };
    this.#held.set(ref, lock);
    return lock;
  }

  /** The holder of ref, if it is held and its holder has been recorded. */
  holder(ref: string): T | undefined {
    return this.#held.get(ref)?.holder;
  }

  /** Lets go of lock (a no-op if it has already been let go of). */
  release(lock: RefLock<T>): void {
    if (this.#held.get(lock.ref) === lock) this.#held.delete(lock.ref);
  }
}

/** ".5", ".000123": value / 10^digits's fractional part as Go prints it (no trailing zeros). */
function fraction(value: number, digits: number): string {
  return value === 0 ? "" : `.${String(value).padStart(digits, "0").replace(/0+$/, "")}`;
}

/** Go's time.Duration.String() of ns nanoseconds: "0s", "750ns", "1.5µs", "548.913222ms", "1h2m3.5s". */
export function goDuration(ns: number): string {
  const n = Math.max(0, Math.round(ns));
  if (n === 0) return "0s";
  if (n < 1e3) return `${n}ns`;
  if (n < 1e6) return `${Math.floor(n / 1e3)}${fraction(n % 1e3, 3)}µs`;
  if (n < 1e9) return `${Math.floor(n / 1e6)}${fraction(n % 1e6, 6)}ms`;
  const total = Math.floor(n / 1e9);
  const [h, m, s] = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  const secs = `${s}${fraction(n % 1e9, 9)}s`;
  if (h > 0) return `${h}h${m}m${secs}`;
  return m > 0 ? `${m}m${secs}` : secs;
}

/**
 * Go's time.Time.String() without the monotonic part, in UTC (what containerd prints when its
 * zone is UTC): "2026-11-22 15:19:10.483906078 +0000 UTC". wallMs may carry fractions of a ms.
 */
export function goTime(wallMs: number): string {
  const seconds = Math.floor(wallMs / 1000);
  const nanos = Math.min(999_999_999, Math.round((wallMs - seconds * 1000) * 1e6));
  const iso = new Date(seconds * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${fraction(nanos, 9)} +0000 UTC`;
}
