// Runs a program from the bench process without forking it. child_process.spawn forks the whole
// bench process, and by the container section that process has been through the pull and apply
// sections: at 397 MiB of RSS, running /bin/true through child_process took it 7.1 ms against 1.4 ms
// through posix_spawn (the container section logs both), inside every timed `ctr run --rm` of both
// daemons. posix_spawn (src/sys/spawn.ts) clones with CLONE_VM | CLONE_VFORK, whatever the size of
// the process. The child is reaped here through a pidfd: libuv reaps only the children it spawned.
import { Socket } from "node:net";
import { posixSpawn } from "../src/sys/spawn.js";
import { pipe2 } from "../src/sys/pipe.js";
import {
  closeFd,
  exitStatus,
  pidfdOpen,
  pidfdSendSignal,
  reapPidfd,
  type WaitResult,
} from "../src/sys/process.js";
import { watchFd } from "../src/sys/socket.js";

export interface LightResult {
  /** Exit code, or 128 + the signal that ended the program. */
  code: number;
  stdout: string;
  stderr: string;
}

const SIGKILL = 9;

function collect(fd: number): { text: () => string; closed: Promise<void> } {
  const socket = new Socket({ fd, readable: true, writable: false });
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return { text: () => Buffer.concat(chunks).toString(), closed };
}

/**
 * Runs path (absolute) with args, env as given, stdin from /dev/null; resolves with its exit code
 * and output once it has exited and closed both pipes. Rejects when it cannot be started, or after
 * timeoutMs (it is killed then).
 */
export function runLight(
  path: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<LightResult> {
  const [outR, outW] = pipe2();
  const [errR, errW] = pipe2();
  let pid: number;
  try {
    const envList = Object.entries(env)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${v}`);
    pid = posixSpawn(path, [path, ...args], envList, [null, outW, errW]);
  } catch (err) {
    for (const fd of [outR, outW, errR, errW]) closeFd(fd);
    return Promise.reject(err as Error);
  }
  // Only the child writes to the pipes: its exit ends them.
  closeFd(outW);
  closeFd(errW);
  const pidfd = pidfdOpen(pid);
  const stdout = collect(outR);
  const stderr = collect(errR);
  const exited = new Promise<WaitResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        pidfdSendSignal(pidfd, SIGKILL);
      } catch {
        // exited meanwhile
      }
      reject(new Error(`${path} ${args.join(" ")} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    // The pidfd turns readable when the process exits.
    const watch = watchFd(pidfd, { readable: true }, () => {
      const r = reapPidfd(pidfd);
      if (r === null) return;
      watch.close();
      closeFd(pidfd);
      clearTimeout(timer);
      resolve(r);
    });
  });
  return Promise.all([exited, stdout.closed, stderr.closed]).then(([r]) => ({
    code: exitStatus(r),
    stdout: stdout.text(),
    stderr: stderr.text(),
  }));
}
