// Closed-loop unary throughput: N callers each issue the next call as soon as the last returns.
import type { UnaryCaller } from "./grpc-unary.js";
import { cpuSeconds } from "./process-usage.js";

export interface ThroughputOptions {
  concurrency: number;
  durationMs: number;
  /** Untimed calls first (connection setup, JIT, daemon caches). */
  warmupMs: number;
  /** The daemon's pid, to report its CPU time per request. */
  daemonPid: number;
}

export interface ThroughputResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  /** Daemon CPU microseconds (user+system) per request during the timed window. */
  daemonCpuMicrosPerRequest: number;
  /** This process's CPU microseconds per request: the client's share (same client for both daemons). */
  clientCpuMicrosPerRequest: number;
}

async function loop(caller: UnaryCaller, concurrency: number, until: number): Promise<number> {
  let done = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      await caller.call();
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done;
}

/** Fails (with the grpc error) on the first failed call: a benchmark of errors measures nothing. */
export async function measureThroughput(
  caller: UnaryCaller,
  opts: ThroughputOptions,
): Promise<ThroughputResult> {
  await caller.call(); // fail fast, before any timing, if the method is not there
  await loop(caller, opts.concurrency, performance.now() + opts.warmupMs);
  const cpuBefore = await cpuSeconds(opts.daemonPid);
  const clientBefore = process.cpuUsage();
  const start = performance.now();
  const requests = await loop(caller, opts.concurrency, start + opts.durationMs);
  const seconds = (performance.now() - start) / 1000;
  const client = process.cpuUsage(clientBefore);
  const cpu = (await cpuSeconds(opts.daemonPid)) - cpuBefore;
  return {
    requests,
    seconds,
    requestsPerSecond: requests / seconds,
    daemonCpuMicrosPerRequest: (cpu * 1e6) / requests,
    clientCpuMicrosPerRequest: (client.user + client.system) / requests,
  };
}
