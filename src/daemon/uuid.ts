// The server UUID reported by Introspection.Server, created once and kept under the root.
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";

export function loadOrCreateServerUUID(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const path = join(dir, "uuid");
  try {
    const existing = readFileSync(path, "utf8").trim();
    if (/^[0-9a-f-]{36}$/.test(existing)) return existing;
  } catch {
    // absent or unreadable: create below
  }
  const id = randomUUID();
  writeFileSync(`${path}.tmp`, id, { mode: 0o644 });
  renameSync(`${path}.tmp`, path);
  return id;
}
