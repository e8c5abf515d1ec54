// Bench knobs from the environment: positive integers with a default, refused when malformed
// (a typo must not silently run a 0-round or NaN-sized bench).

/** env[name] as an integer >= min, or fallback when unset or empty. */
export function envInt(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
  min = 1,
): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const v = Number(raw);
  if (!Number.isSafeInteger(v) || v < min) {
    throw new Error(`${name} must be an integer of at least ${min}, not ${JSON.stringify(raw)}`);
  }
  return v;
}
