// A private, real Docker registry (distribution 2.8, Debian's docker-registry) on 127.0.0.1, for
// `ctr images pull --plain-http` tests: filesystem storage in a temp dir, deletes enabled, quiet logs.
import { writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { spawnDaemon, type DaemonProcess } from "./daemon-process.js";
import { freePort } from "./free-port.js";
import { makeTempDir, removeTempDir } from "./temp-dir.js";
import { logTail } from "./wait-ready.js";

export const REGISTRY_PATH = "/usr/bin/docker-registry";

export interface RegistryOptions {
  /** How long to wait for `GET /v2/` to answer 200; default 20 s. */
  readyTimeoutMs?: number;
  /** The registry's log level; "error" by default (access logs are always off). */
  logLevel?: "debug" | "info" | "warn" | "error";
}

export interface RegistryHandle {
  /** "127.0.0.1:<port>", the registry part of an image reference. */
  host: string;
  /** "http://127.0.0.1:<port>", the base for API calls (append "/v2/..."). */
  url: string;
  /** The temp dir holding config and storage; removed by stop(). */
  dir: string;
  /** Storage root (docker/registry/v2/... below it). */
  storage: string;
  pid: number;
  logs(): string;
  stop(): Promise<void>;
}

/** The registry's YAML config. Strings are JSON-quoted, which YAML accepts as double-quoted scalars. */
export function registryConfig(opts: { addr: string; storage: string; logLevel?: string }): string {
  const q = (s: string): string => JSON.stringify(s);
  return [
    "version: 0.1",
    "log:",
    `  level: ${q(opts.logLevel ?? "error")}`,
    "  formatter: text",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${q(opts.storage)}`,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: ${q(opts.addr)}`,
    // A fixed secret silences the "No HTTP secret provided" warning; uploads never span instances.
    '  secret: "berth-test-registry"',
    "health:",
    "  storagedriver:",
    "    enabled: false",
    "",
  ].join("\n");
}

type Probe = { ok: true } | { ok: false; why: string };

async function probe(url: string): Promise<Probe> {
  try {
    const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200 ? { ok: true } : { ok: false, why: `GET /v2/ answered ${res.status}` };
  } catch (err) {
    return { ok: false, why: `GET /v2/ failed: ${(err as Error).message}` };
  }
}

async function waitRegistry(daemon: DaemonProcess, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "not probed yet";
  for (;;) {
    const gone = daemon.exitDescription();
    if (gone !== undefined) {
      throw new Error(
        `docker-registry exited before it was ready (${gone})\n--- log tail ---\n${logTail(daemon.logs())}`,
      );
    }
    const result = await probe(url);
    if (result.ok) return;
    last = result.why;
    if (Date.now() > deadline) {
      throw new Error(
        `docker-registry not ready at ${url} after ${timeoutMs} ms (${last})\n` +
          `--- log tail ---\n${logTail(daemon.logs())}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts docker-registry on a free 127.0.0.1 port. The port is picked before the registry binds
 * it, so another process can take it in between: a start that fails with "address already in
 * use" is retried on a new port.
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  const dir = await makeTempDir("registry");
  const storage = join(dir, "storage");
  await mkdir(storage, { recursive: true });
  const configPath = join(dir, "config.yml");
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const host = `127.0.0.1:${port}`;
      const url = `http://${host}`;
      await writeFile(configPath, registryConfig({ addr: host, storage, logLevel: opts.logLevel }));
      const daemon = spawnDaemon(REGISTRY_PATH, ["serve", configPath]);
      try {
        await waitRegistry(daemon, url, opts.readyTimeoutMs ?? 20_000);
      } catch (err) {
        await daemon.stop("SIGKILL");
        if (attempt < 3 && /address already in use/.test(daemon.logs())) continue;
        throw err;
      }
      return {
        host,
        url,
        dir,
        storage,
        pid: daemon.pid,
        logs: () => daemon.logs(),
        async stop() {
          await daemon.stop("SIGTERM", 5000);
          await removeTempDir(dir);
        },
      };
    }
  } catch (err) {
    await removeTempDir(dir).catch(() => undefined);
    throw err;
  }
}
