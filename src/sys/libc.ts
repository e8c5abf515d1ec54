// The one place that loads libc through koffi. Every other file in src/sys declares its calls
// here; nothing outside src/sys imports koffi. Calls are synchronous: use them off the main event
// loop (in workers) for anything that may block on I/O.
import koffi from "koffi";
import { SysError } from "./errno.js";

export const libc = koffi.load("libc.so.6");

koffi.alias("ssize_t", "int64_t");
koffi.alias("mode_t", "uint32_t");
koffi.alias("dev_t", "uint64_t");
koffi.alias("uid_t", "uint32_t");
koffi.alias("gid_t", "uint32_t");

export const OpenHow = koffi.struct("open_how", {
  flags: "uint64_t",
  mode: "uint64_t",
  resolve: "uint64_t",
});

export const Timespec = koffi.struct("berth_timespec", {
  tv_sec: "int64_t",
  tv_nsec: "int64_t",
});

/** Calls fn; when it returns a negative number, throws a SysError built from errno right away. */
export function check<T extends number | bigint>(result: T, syscall: string, path?: string): T {
  if (result < 0) throw new SysError(koffi.errno(), syscall, path);
  return result;
}

export { koffi };
