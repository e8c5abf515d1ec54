// String-keyed maps in metadata records (labels, annotations, extensions) and the field-mask paths
// that update them ("labels" replaces the map, "labels.<key>" copies one key from the request).

/** For "<field>.<key>" returns key, otherwise undefined. */
export function mapPathKey(path: string, field: string): string | undefined {
  const prefix = `${field}.`;
  return path.startsWith(prefix) ? path.slice(prefix.length) : undefined;
}

/**
 * Sets key on a plain-object map. Defining the property (rather than assigning) keeps a key named
 * "__proto__" an ordinary entry instead of rewriting the object's prototype.
 */
export function setEntry<V>(map: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The value a request carries for key, only when it is the map's own entry. */
export function ownEntry<V>(map: Record<string, V> | undefined, key: string): V | undefined {
  return map !== undefined && Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

/**
 * The stored form of a string map: containerd never stores empty values (writing "" deletes the
 * key), and sorted keys keep the JSON and every returned map stable.
 */
export function compactStringMap(map: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(map ?? {})
      .filter(([, v]) => v !== "")
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

export function encodeStringMap(map: Record<string, string> | undefined): string {
  return JSON.stringify(compactStringMap(map));
}

export function decodeStringMap(json: string): Record<string, string> {
  // JSON.parse defines "__proto__" as an own property, so hostile keys stay plain entries.
  return JSON.parse(json) as Record<string, string>;
}
