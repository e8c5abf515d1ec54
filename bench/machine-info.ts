// What the numbers were measured on: CPU, memory, kernel, Node, the ctr client, and the load.
import { execFileSync } from "node:child_process";
import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { CTR_PATH } from "../test/harness/ctr.js";

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  ctr: string;
  /** 1-minute load average when the bench started: anything else running skews every number. */
  loadAverage: number;
}

export function machineInfo(): MachineInfo {
  let ctr = "unknown";
  try {
    // `ctr --version` prints "ctr github.com/containerd/containerd <version>".
    ctr = execFileSync(CTR_PATH, ["--version"], { encoding: "utf8" }).trim().split(" ").pop() ?? ctr;
  } catch {
    // reported as unknown
  }
  return {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    ctr,
    loadAverage: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}
