// Process control for the shim: child subreaper (prctl), pidfds, waitid and kill. Container
// processes are reparented to the shim and are not libuv's children, so the shim reaps them here.
import { readdirSync, readFileSync } from "node:fs";
import { libc, check, koffi } from "./libc.js";
import { SysError } from "./errno.js";

const prctlCall = libc.func("int prctl(int option, ...)");
// glibc 2.36 has wrappers for both pidfd calls (no raw syscall() needed).
const pidfdOpenCall = libc.func("int pidfd_open(int pid, unsigned int flags)");
const pidfdSendSignalCall = libc.func(
  "int pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags)",
);
const waitidCall = libc.func("int waitid(int idtype, uint32_t id, _Out_ uint8_t *info, int options)");
const killCall = libc.func("int kill(int pid, int sig)");
const closeCall = libc.func("int close(int fd)");

/** prctl options used here (linux/prctl.h). */
export const PR = { SET_CHILD_SUBREAPER: 36, GET_CHILD_SUBREAPER: 37 } as const;

/** waitid idtype_t. */
export const P = { ALL: 0, PID: 1, PGID: 2, PIDFD: 3 } as const;

/** waitid options. */
export const W = {
  NOHANG: 0x1,
  STOPPED: 0x2,
  EXITED: 0x4,
  CONTINUED: 0x8,
  NOWAIT: 0x01000000,
} as const;

/** si_code values for SIGCHLD (CLD_*). */
export const CLD = { EXITED: 1, KILLED: 2, DUMPED: 3, TRAPPED: 4, STOPPED: 5, CONTINUED: 6 } as const;

/** pidfd_open flags: PIDFD_NONBLOCK is O_NONBLOCK. */
export const PIDFD_NONBLOCK = 0o4000;

// siginfo_t on 64-bit Linux: 128 bytes; si_signo, si_errno, si_code (ints at 0, 4, 8), then the
// union at offset 16 (8-aligned). For SIGCHLD the union starts with si_pid, si_uid, si_status.
const SIGINFO_SIZE = 128;
const OFF_SIGNO = 0;
const OFF_CODE = 8;
const OFF_PID = 16;
const OFF_UID = 20;
const OFF_STATUS = 24;

export interface WaitResult {
  pid: number;
  uid: number;
  /** True when the process called exit (CLD_EXITED); false when a signal ended it. */
  exited: boolean;
  /** The exit code when exited, else 0. */
  status: number;
  /** The terminating signal when !exited, else 0. */
  signal: number;
  coreDumped: boolean;
  /** The raw si_code (CLD_*). */
  code: number;
}

/** Makes this process the child subreaper: orphaned descendants are reparented to it. */
export function setChildSubreaper(on = true): void {
  const r = prctlCall(
    PR.SET_CHILD_SUBREAPER,
    "unsigned long",
    on ? 1 : 0,
    "unsigned long",
    0,
    "unsigned long",
    0,
    "unsigned long",
    0,
  ) as number;
  check(r, "prctl(PR_SET_CHILD_SUBREAPER)");
}

export function isChildSubreaper(): boolean {
  const out = Buffer.alloc(4);
  const r = prctlCall(
    PR.GET_CHILD_SUBREAPER,
    "void *",
    out,
    "unsigned long",
    0,
    "unsigned long",
    0,
    "unsigned long",
    0,
  ) as number;
  check(r, "prctl(PR_GET_CHILD_SUBREAPER)");
  return out.readInt32LE(0) !== 0;
}

/**
 * pidfd_open(2): a file descriptor that names this very process, never a later one with the same
 * pid. It becomes readable when the process exits. The caller closes it (closeFd).
 */
export function pidfdOpen(pid: number, flags = 0): number {
  return check(pidfdOpenCall(pid, flags) as number, "pidfd_open", String(pid));
}

/** Sends sig to the process a pidfd names (ESRCH once it has been reaped). */
export function pidfdSendSignal(pidfd: number, sig: number): void {
  check(pidfdSendSignalCall(pidfd, sig, null, 0) as number, "pidfd_send_signal");
}

export function kill(pid: number, sig: number): void {
  check(killCall(pid, sig) as number, "kill", String(pid));
}

export function closeFd(fd: number): void {
  check(closeCall(fd) as number, "close");
}

function decodeSiginfo(buf: Buffer): WaitResult | null {
  const pid = buf.readInt32LE(OFF_PID);
  // With WNOHANG and no child ready, waitid returns 0 and leaves si_pid 0 (the buffer is zeroed).
  if (pid === 0 || buf.readInt32LE(OFF_SIGNO) === 0) return null;
  const code = buf.readInt32LE(OFF_CODE);
  const value = buf.readInt32LE(OFF_STATUS);
  const exited = code === CLD.EXITED;
  const killed = code === CLD.KILLED || code === CLD.DUMPED;
  return {
    pid,
    uid: buf.readUInt32LE(OFF_UID),
    exited,
    status: exited ? value : 0,
    signal: killed ? value : 0,
    coreDumped: code === CLD.DUMPED,
    code,
  };
}

/**
 * waitid(2). Returns null when WNOHANG was given and no child has changed state (and, for a
 * non-blocking pidfd, on EAGAIN). Throws SysError (ECHILD when the id is not a waitable child).
 */
export function waitid(idtype: number, id: number, options: number): WaitResult | null {
  const buf = Buffer.alloc(SIGINFO_SIZE);
  const r = waitidCall(idtype, id, buf, options) as number;
  if (r < 0) {
    const errno = koffi.errno();
    if (errno === 11 /* EAGAIN: O_NONBLOCK pidfd of a live process */) return null;
    throw new SysError(errno, "waitid", String(id));
  }
  return decodeSiginfo(buf);
}

/** Reaps pid if it has exited (WEXITED | WNOHANG); null while it runs. */
export function reapPid(pid: number, options = W.EXITED | W.NOHANG): WaitResult | null {
  return waitid(P.PID, pid, options);
}

/** Reaps the process named by pidfd if it has exited; null while it runs. */
export function reapPidfd(pidfd: number, options = W.EXITED | W.NOHANG): WaitResult | null {
  return waitid(P.PIDFD, pidfd, options);
}

/** True when some child has exited and waits to be reaped (peeks: WNOWAIT reaps nothing). */
export function anyChildExited(): boolean {
  try {
    return waitid(P.ALL, 0, W.EXITED | W.NOHANG | W.NOWAIT) !== null;
  } catch (err) {
    if (err instanceof SysError && err.code === "ECHILD") return false; // no children at all
    throw err;
  }
}

/** The status containerd reports: the exit code, or 128 + signal for a killed process. */
export function exitStatus(r: WaitResult): number {
  return r.exited ? r.status : 128 + r.signal;
}

/**
 * Direct children of this process (all threads: /proc/self/task/<tid>/children). Includes
 * libuv's own children (child_process) and reparented orphans alike.
 */
export function listChildren(): number[] {
  const pids = new Set<number>();
  let tasks: string[];
  try {
    tasks = readdirSync("/proc/self/task");
  } catch {
    return [];
  }
  for (const tid of tasks) {
    let text: string;
    try {
      text = readFileSync(`/proc/self/task/${tid}/children`, "utf8");
    } catch {
      continue; // the thread ended between readdir and read
    }
    for (const word of text.split(" ")) {
      if (word !== "") pids.add(Number(word));
    }
  }
  return [...pids];
}
