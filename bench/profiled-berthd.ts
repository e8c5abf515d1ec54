// A stand-in for bin/berthd that runs the same build under `node --cpu-prof` (Node refuses
// --cpu-prof in NODE_OPTIONS, so the flag has to be on node's own command line).
import { writeBerthdWrapper } from "./berthd-wrapper.js";

/** Writes `<dir>/berthd-profiled` and returns its path; profiles land in profileDir on exit. */
export function writeProfiledBerthd(dir: string, profileDir: string): Promise<string> {
  return writeBerthdWrapper(dir, { cpuProfileDir: profileDir, name: "berthd-profiled" });
}
