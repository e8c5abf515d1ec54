// Times `ctr content ingest` of a file (stdin redirected from it, as `ctr ... < file` would) and
// removes the blob again so that the next round writes it afresh.
import { spawn } from "node:child_process";
import { open } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { CTR_PATH, ctrOk } from "../test/harness/ctr.js";
import type { BlobFile } from "./blob-file.js";
import { cpuSeconds } from "./process-usage.js";

export interface IngestResult {
  seconds: number;
  /** 10^6 bytes per second. */
  megabytesPerSecond: number;
  /** Daemon CPU seconds (user+system) spent on the ingest. */
  daemonCpuSeconds: number;
}

function ctrEnv(): NodeJS.ProcessEnv {
  // As the harness does: only the flags decide where ctr goes.
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CONTAINERD_")));
}

/** Runs ctr with the file as its stdin (no copy through this process); rejects with stderr unless it exits 0. */
async function ctrWithStdinFile(
  address: string,
  args: readonly string[],
  path: string,
  timeoutMs: number,
): Promise<void> {
  const file = await open(path, "r");
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(CTR_PATH, ["--address", address, ...args], {
        env: ctrEnv(),
        stdio: [file.fd, "ignore", "pipe"],
      });
      let stderr = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`ctr content ingest timed out after ${timeoutMs} ms: ${stderr.trim()}`));
      }, timeoutMs);
      child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`ctr content ingest exited ${code}: ${stderr.trim()}`));
      });
    });
  } finally {
    await file.close();
  }
}

/** One timed ingest into `namespace`, checked with `content ls`, then `content rm` and a collection. */
export async function ingestOnce(
  address: string,
  daemonPid: number,
  namespace: string,
  blob: BlobFile,
): Promise<IngestResult> {
  const ref = `bench-${randomBytes(6).toString("hex")}`;
  const args = [
    "--namespace",
    namespace,
    "content",
    "ingest",
    "--expected-size",
    String(blob.size),
    "--expected-digest",
    blob.digest,
    ref,
  ];
  const cpuBefore = await cpuSeconds(daemonPid);
  const start = performance.now();
  // Generous: even 10 MB/s gets a 1 GiB blob through; a hang must still end the bench.
  await ctrWithStdinFile(address, args, blob.path, Math.max(60_000, (blob.size / 10e6) * 1000));
  const seconds = (performance.now() - start) / 1000;
  const daemonCpuSeconds = (await cpuSeconds(daemonPid)) - cpuBefore;

  const listed = await ctrOk(address, ["content", "ls", "-q"], { namespace });
  if (!listed.split("\n").includes(blob.digest)) {
    throw new Error(`ingest exited 0 but ${blob.digest} is not in \`content ls\`:\n${listed}`);
  }
  await ctrOk(address, ["content", "rm", blob.digest], { namespace });
  // The blob leaves the disk at the next garbage collection, which a daemon may put off (after a
  // long one, as the Diff.Apply section's leases end with); while it is there, the next round's
  // ingest only links it. A lease removed with --sync collects now.
  const lease = `bench-gc-${randomBytes(6).toString("hex")}`;
  await ctrOk(address, ["leases", "create", "--id", lease], { namespace });
  await ctrOk(address, ["leases", "rm", "--sync", lease], { namespace });
  return { seconds, megabytesPerSecond: blob.size / 1e6 / seconds, daemonCpuSeconds };
}
