// Unix sockets with raw file descriptors, and passing descriptors over them (SCM_RIGHTS). This is
// how runc's --console-socket hands the shim a container's pty master. Sockets are non-blocking and
// watched by the event loop through koffi's uv_poll binding, so nothing here ever blocks the loop.
import { unlinkSync } from "node:fs";
import { libc, check, koffi } from "./libc.js";
import { SysError } from "./errno.js";

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_CMSG_CLOEXEC = 0x40000000;
const MSG_NOSIGNAL = 0x4000;
const EAGAIN = 11;
const EINTR = 4;
const TIOCSWINSZ = 0x5414;
const TIOCGWINSZ = 0x5413;

const Iovec = koffi.struct("berth_iovec", { iov_base: "void *", iov_len: "size_t" });
const Msghdr = koffi.struct("berth_msghdr", {
  msg_name: "void *",
  msg_namelen: "uint32_t",
  msg_iov: koffi.pointer(Iovec),
  msg_iovlen: "size_t",
  msg_control: "void *",
  msg_controllen: "size_t",
  msg_flags: "int",
});

const socketCall = libc.func("int socket(int domain, int type, int protocol)");
const socketpairCall = libc.func("int socketpair(int domain, int type, int protocol, _Out_ int *sv)");
const bindCall = libc.func("int bind(int fd, const uint8_t *addr, uint32_t len)");
const connectCall = libc.func("int connect(int fd, const uint8_t *addr, uint32_t len)");
const listenCall = libc.func("int listen(int fd, int backlog)");
const accept4Call = libc.func("int accept4(int fd, void *addr, void *len, int flags)");
const recvmsgCall = libc.func("recvmsg", "ssize_t", ["int", koffi.inout(koffi.pointer(Msghdr)), "int"]);
const sendmsgCall = libc.func("sendmsg", "ssize_t", ["int", koffi.pointer(Msghdr), "int"]);
const closeCall = libc.func("int close(int fd)");
const ioctlCall = libc.func("int ioctl(int fd, unsigned long request, ...)");

// cmsghdr on 64-bit Linux: cmsg_len (size_t), cmsg_level (int), cmsg_type (int), then data.
const CMSG_HDR = 16;
const cmsgSpace = (n: number): number => CMSG_HDR + ((n + 7) & ~7);

function sockaddrUn(path: string): Buffer {
  const bytes = Buffer.from(path);
  // sun_path is 108 bytes and must keep its terminating NUL.
  if (bytes.length >= 108) throw new SysError(36 /* ENAMETOOLONG */, "bind", path);
  const addr = Buffer.alloc(2 + 108);
  addr.writeUInt16LE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}

function closeQuietly(fd: number): void {
  closeCall(fd);
}

/** A unix stream socket fd: non-blocking and close-on-exec (so spawned runc never inherits it). */
export function unixSocket(): number {
  return check(socketCall(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number, "socket");
}

/** A connected pair of unix stream sockets (close-on-exec; blocking unless nonBlocking). */
export function socketpair(nonBlocking = false): [number, number] {
  const sv = [-1, -1];
  const type = SOCK_STREAM | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0);
  check(socketpairCall(AF_UNIX, type, 0, sv) as number, "socketpair");
  return [sv[0] as number, sv[1] as number];
}

/** Binds a new non-blocking socket at path and listens. The caller closes it and unlinks path. */
export function listenUnix(path: string, backlog = 4): number {
  const fd = unixSocket();
  try {
    const addr = sockaddrUn(path);
    check(bindCall(fd, addr, addr.length) as number, "bind", path);
    check(listenCall(fd, backlog) as number, "listen", path);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  return fd;
}

/** Connects a blocking socket to path (for tests and for clients that send right away). */
export function connectUnix(path: string): number {
  const fd = check(socketCall(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) as number, "socket");
  const addr = sockaddrUn(path);
  const r = connectCall(fd, addr, addr.length) as number;
  if (r < 0) {
    const errno = koffi.errno();
    closeQuietly(fd);
    throw new SysError(errno, "connect", path);
  }
  return fd;
}

/** accept4(2), non-blocking and close-on-exec; null when no connection is pending. */
export function acceptUnix(listenFd: number): number | null {
  const fd = accept4Call(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC) as number;
  if (fd < 0) {
    const errno = koffi.errno();
    if (errno === EAGAIN || errno === EINTR) return null;
    throw new SysError(errno, "accept4");
  }
  return fd;
}

export interface ReceivedMessage {
  /** The bytes that came with the message (runc sends the pty's name, e.g. "/dev/pts/3"). */
  data: Buffer;
  /** The descriptor received (close-on-exec), or null when the message carried none. */
  fd: number | null;
  /** True at end of stream (the peer closed without sending anything). */
  eof: boolean;
}

/**
 * recvmsg(2) of one message with up to one SCM_RIGHTS descriptor. Returns null when a
 * non-blocking socket has nothing to read. Extra descriptors in the message are closed.
 */
export function recvFd(sockfd: number, maxData = 4096): ReceivedMessage | null {
  const data = Buffer.alloc(maxData);
  const control = Buffer.alloc(cmsgSpace(4 * 4)); // room for a few fds so none is lost to CTRUNC
  const msg = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: data, iov_len: data.length }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: control.length,
    msg_flags: 0,
  };
  const n = Number(recvmsgCall(sockfd, msg, MSG_CMSG_CLOEXEC) as number | bigint);
  if (n < 0) {
    const errno = koffi.errno();
    if (errno === EAGAIN || errno === EINTR) return null;
    throw new SysError(errno, "recvmsg");
  }
  const fds: number[] = [];
  const controlLen = Number(msg.msg_controllen);
  for (let off = 0; off + CMSG_HDR <= controlLen; ) {
    const len = Number(control.readBigUInt64LE(off));
    if (len < CMSG_HDR) break;
    const level = control.readInt32LE(off + 8);
    const type = control.readInt32LE(off + 12);
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
    }
    off += cmsgSpace(len - CMSG_HDR);
  }
  const [fd = null, ...extra] = fds;
  for (const e of extra) closeQuietly(e);
  if ((msg.msg_flags & MSG_CTRUNC) !== 0 && fd === null) throw new SysError(105 /* ENOBUFS */, "recvmsg");
  return { data: data.subarray(0, n), fd, eof: n === 0 && fd === null };
}

/** sendmsg(2) of data with fd attached as SCM_RIGHTS (the sending side of recvFd). */
export function sendFd(sockfd: number, fd: number, data: Uint8Array = Buffer.from("fd")): void {
  const control = Buffer.alloc(cmsgSpace(4));
  control.writeBigUInt64LE(BigInt(CMSG_HDR + 4), 0);
  control.writeInt32LE(SOL_SOCKET, 8);
  control.writeInt32LE(SCM_RIGHTS, 12);
  control.writeInt32LE(fd, CMSG_HDR);
  const payload = Buffer.from(data);
  const msg = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: payload, iov_len: payload.length }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: control.length,
    msg_flags: 0,
  };
  check(sendmsgCall(sockfd, msg, MSG_NOSIGNAL) as number | bigint, "sendmsg");
}

export function closeSocket(fd: number): void {
  check(closeCall(fd) as number, "close");
}

export interface FdWatch {
  /** Stops watching. Call it before closing the fd. */
  close(): void;
  /** Lets the process exit while the watch is active (like Timer.unref). */
  unref(): void;
  ref(): void;
}

/**
 * Calls onReady each time fd is readable (or writable), from the event loop (libuv uv_poll through
 * koffi.node.poll). uv_poll sets O_NONBLOCK on fd. Close the watch before closing the fd.
 */
export function watchFd(
  fd: number,
  events: { readable?: boolean; writable?: boolean },
  onReady: (err: Error | null) => void,
): FdWatch {
  // koffi 3.3 calls the callback as (status, events) although its typings say (events).
  const callback = ((status: number) => {
    onReady(status < 0 ? new SysError(-status, "uv_poll") : null);
  }) as unknown as (ev: unknown) => void;
  const handle = koffi.node.poll(
    fd,
    { readable: events.readable ?? true, writable: events.writable ?? false },
    callback,
  );
  let closed = false;
  return {
    close: () => {
      if (!closed) handle.close();
      closed = true;
    },
    unref: () => handle.unref(),
    ref: () => handle.ref(),
  };
}

export interface ReceiveOptions {
  /** Give up after this long (default: wait forever). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Waits (without blocking the loop) for one connection on a listening socket and one message
 * carrying a descriptor on it; closes the connection and returns the descriptor and the data.
 */
export function receiveFd(
  listenFd: number,
  opts: ReceiveOptions = {},
): Promise<{ fd: number; data: Buffer }> {
  return new Promise((resolve, reject) => {
    let conn = -1;
    let watch: FdWatch | null = null;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: unknown, result?: { fd: number; data: Buffer }): void => {
      watch?.close();
      watch = null;
      if (conn >= 0) closeQuietly(conn);
      conn = -1;
      if (timer !== undefined) clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (err !== null) reject(err as Error);
      else resolve(result as { fd: number; data: Buffer });
    };
    const onAbort = (): void => finish(opts.signal?.reason ?? new Error("aborted"));
    const onMessage = (err: Error | null): void => {
      if (err !== null) return finish(err);
      try {
        const m = recvFd(conn);
        if (m === null) return undefined;
        if (m.fd !== null) return finish(null, { fd: m.fd, data: m.data });
        if (m.eof) return finish(new Error("console socket: peer closed without sending a descriptor"));
        // Data without a descriptor: keep reading (runc sends both in one message).
      } catch (e) {
        finish(e);
      }
      return undefined;
    };
    const onConnection = (err: Error | null): void => {
      if (err !== null) return finish(err);
      try {
        const fd = acceptUnix(listenFd);
        if (fd === null) return undefined;
        watch?.close();
        conn = fd;
        watch = watchFd(conn, { readable: true }, onMessage);
      } catch (e) {
        finish(e);
      }
      return undefined;
    };
    if (opts.signal?.aborted === true) return onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(
        () => finish(new SysError(110 /* ETIMEDOUT */, "console socket: no descriptor received")),
        opts.timeoutMs,
      );
    }
    watch = watchFd(listenFd, { readable: true }, onConnection);
    return undefined;
  });
}

/**
 * A listening unix socket for runc's --console-socket (go-runc's NewTempConsoleSocket). Pass
 * `path` to runc, then `await receiveMaster()`; close() unlinks the path.
 */
export class ConsoleSocket {
  readonly path: string;
  private fd: number;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.fd = fd;
  }

  static listen(path: string): ConsoleSocket {
    return new ConsoleSocket(path, listenUnix(path, 1));
  }

  /** The pty master fd (close-on-exec; the caller owns it) and the pty's name, e.g. /dev/pts/3. */
  async receiveMaster(opts: ReceiveOptions = {}): Promise<{ fd: number; name: string }> {
    if (this.fd < 0) throw new Error("console socket closed");
    const { fd, data } = await receiveFd(this.fd, opts);
    return { fd, name: data.toString("utf8").replace(/\0+$/, "") };
  }

  close(): void {
    if (this.fd < 0) return;
    closeQuietly(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** Sets a pty's window size (ioctl TIOCSWINSZ on the master): the shim's ResizePty. */
// struct winsize: ws_row, ws_col, ws_xpixel, ws_ypixel (u16 each).
export function setWinsize(fd: number, rows: number, cols: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(cols, 2);
  check(ioctlCall(fd, TIOCSWINSZ, "void *", ws) as number, "ioctl(TIOCSWINSZ)");
}

export function getWinsize(fd: number): { rows: number; cols: number } {
  const ws = Buffer.alloc(8);
  check(ioctlCall(fd, TIOCGWINSZ, "void *", ws) as number, "ioctl(TIOCGWINSZ)");
  return { rows: ws.readUInt16LE(0), cols: ws.readUInt16LE(2) };
}
