// The two daemons every bench section measures: berthd through its wrapper (logging to a file, as
// under a service manager) and a private containerd, both stopped by the section's cleanups.
import { join } from "node:path";
import type { BerthdHandle } from "../test/harness/berthd.js";
import { startContainerd, type ContainerdHandle } from "../test/harness/containerd.js";
import { startWrappedBerthd } from "./berthd-wrapper.js";
import type { Cleanups } from "./cleanups.js";

export interface DaemonPairOptions {
  /** berthd's log file. */
  logFile: string;
  /** berthd's log level; "info" by default (debug costs a log line per call). */
  logLevel?: string;
  /** Where berthd writes V8 CPU profiles on exit, if anywhere. */
  cpuProfileDir?: string | undefined;
  /** When given, each daemon's state dir is `<stateDir>/<daemon>` (the caller removes it). */
  stateDir?: string;
}

export async function startDaemonPair(
  dir: string,
  cleanups: Cleanups,
  opts: DaemonPairOptions,
): Promise<{ berthd: BerthdHandle; containerd: ContainerdHandle }> {
  const berthd = await startWrappedBerthd(dir, {
    logFile: opts.logFile,
    ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
    ...(opts.cpuProfileDir ? { cpuProfileDir: opts.cpuProfileDir } : {}),
    ...(opts.stateDir ? { state: join(opts.stateDir, "berthd") } : {}),
  });
  // Shims outlive berthd by design (a restart reconnects to them): end them first.
  cleanups.add("stop berthd", () => berthd.stop());
  cleanups.add("kill berthd's shims", () => berthd.killShims());
  const containerd = await startContainerd({
    logLevel: "info",
    ...(opts.stateDir ? { state: join(opts.stateDir, "containerd") } : {}),
  });
  cleanups.add("stop containerd", () => containerd.stop());
  return { berthd, containerd };
}
