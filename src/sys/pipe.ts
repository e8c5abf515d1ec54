// pipe2(2): real pipes for a container's stdin (the shim writes one end, the container reads the
// other), which Node's child_process cannot make (it hands children unix socketpairs).
import { libc, check } from "./libc.js";

const pipe2Call = libc.func("int pipe2(_Out_ int *fds, int flags)");

export const O_CLOEXEC = 0o2000000;

/** Returns [readEnd, writeEnd]; both close-on-exec unless flags say otherwise. */
export function pipe2(flags = O_CLOEXEC): [number, number] {
  const fds = [0, 0];
  check(pipe2Call(fds, flags) as number, "pipe2");
  return [fds[0] as number, fds[1] as number];
}
