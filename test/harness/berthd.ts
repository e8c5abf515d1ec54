// Starts the berthd under test (bin/berthd of this checkout) on a private socket, root and state.
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnDaemon } from "./daemon-process.js";
import { descendantsOf, killPids, pidsWithArgs, waitGone } from "./process-tree.js";
import { makeTempDir, removeTempDir } from "./temp-dir.js";
import { waitReady } from "./wait-ready.js";

/** bin/berthd of the repository this file lives in (test/harness/ -> repo root). */
export const BERTHD_PATH = fileURLToPath(new URL("../../bin/berthd", import.meta.url));

export interface BerthdOptions {
  /** The executable; BERTHD_PATH by default (another build, or a stand-in in the harness's own tests). */
  binary?: string;
  /** Reuse a root (e.g. to restart on the same data); the caller then owns its removal. */
  root?: string;
  state?: string;
  /** Socket path; a fresh one in a temp dir by default. */
  address?: string;
  extraArgs?: readonly string[];
  env?: Record<string, string>;
  /** Readiness deadline, 20 s by default. */
  readyTimeoutMs?: number;
}

export interface BerthdHandle {
  address: string;
  root: string;
  state: string;
  pid: number;
  logs(): string;
  /** Sends signal (SIGTERM by default), resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGKILLs the daemon (a crash) and waits for it to be gone. */
  kill9(): Promise<void>;
  /**
   * Shims survive a daemon stop by design (a restart reconnects to them). This SIGKILLs the
   * processes started with `-address <our socket>` and their descendants; returns their pids.
   */
  killShims(): Promise<number[]>;
}

/**
 * Runs `bin/berthd --root R --state S --address SOCK --log-level debug ...extraArgs` and waits for
 * `ctr version` to succeed. Dirs the harness created itself (socket dir, and root/state when not
 * given) are removed once the daemon has stopped; given root/state survive for a restart.
 */
export async function startBerthd(opts: BerthdOptions = {}): Promise<BerthdHandle> {
  const binary = opts.binary ?? BERTHD_PATH;
  await access(binary).catch(() => {
    throw new Error(`${binary} is missing: run \`npm run build\` first`);
  });
  const dir = await makeTempDir("berthd");
  const root = opts.root ?? join(dir, "root");
  const state = opts.state ?? join(dir, "state");
  const address = opts.address ?? join(dir, "berthd.sock");
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });

  const daemon = spawnDaemon(
    binary,
    [
      "--root",
      root,
      "--state",
      state,
      "--address",
      address,
      "--log-level",
      "debug",
      ...(opts.extraArgs ?? []),
    ],
    { env: { ...process.env, ...opts.env } },
  );
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await removeTempDir(dir);
  };
  const stop = async (signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> => {
    const code = await daemon.stop(signal, 15_000);
    await cleanup();
    return code;
  };

  try {
    await waitReady({
      address,
      what: "berthd",
      deadlineMs: opts.readyTimeoutMs ?? 20_000,
      exited: () => daemon.exitDescription(),
      logs: () => daemon.logs(),
    });
  } catch (err) {
    await daemon.stop("SIGKILL", 0).catch(() => null);
    await cleanup().catch(() => undefined);
    throw err;
  }
  return {
    address,
    root,
    state,
    pid: daemon.pid,
    logs: () => daemon.logs(),
    stop,
    async kill9() {
      await daemon.stop("SIGKILL", 0);
      await cleanup();
    },
    async killShims() {
      const shims = (await pidsWithArgs("-address", address)).filter((pid) => pid !== daemon.pid);
      const victims = [...shims, ...(await descendantsOf(shims))];
      killPids(victims);
      await waitGone(victims);
      return victims;
    },
  };
}
