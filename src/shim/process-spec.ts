// Checks an OCI process (config.json's `process`, or an exec's spec) before runc sees it: the
// attack classes containerd and runc were bitten by. A cwd under /proc/self/fd (or /proc/<pid>/fd,
// /proc/thread-self/fd) reaches a leaked host descriptor (CVE-2024-21626); a uid or gid past
// 2^31-1 wraps to root in code that stores it as int32 (CVE-2024-40635), so both are refused.
import { invalidArgument } from "../errdefs/errors.js";

const maxId = 2 ** 31 - 1;

interface OciProcess {
  cwd?: unknown;
  user?: { uid?: unknown; gid?: unknown; additionalGids?: unknown };
}

function checkId(what: string, v: unknown): void {
  if (v === undefined) return;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > maxId)
    throw invalidArgument(`${what} ${JSON.stringify(v)} is out of range (0 to ${maxId})`);
}

export function validateProcess(p: unknown): void {
  if (p === undefined || p === null) return;
  if (typeof p !== "object") throw invalidArgument("process must be an object");
  const proc = p as OciProcess;
  if (proc.cwd !== undefined) {
    if (typeof proc.cwd !== "string") throw invalidArgument("process cwd must be a string");
    const cwd = proc.cwd.replace(/\/+/g, "/");
    if (/^\/proc\/(self|thread-self|\d+)(\/task\/\d+)?\/fd(\/|$)/.test(cwd))
      throw invalidArgument(`process cwd ${JSON.stringify(proc.cwd)} is under /proc/<pid>/fd`);
  }
  checkId("uid", proc.user?.uid);
  checkId("gid", proc.user?.gid);
  const extra = proc.user?.additionalGids;
  if (extra !== undefined) {
    if (!Array.isArray(extra)) throw invalidArgument("additionalGids must be an array");
    for (const g of extra) checkId("additional gid", g);
  }
}
