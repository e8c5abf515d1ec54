// SO_PEERCRED: who is on the other end of a connected unix socket (pid, uid, gid, as the kernel
// recorded them at connect time). containerd's ttrpc servers refuse peers of another uid and gid.
import { libc, check } from "./libc.js";

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

const getsockoptCall = libc.func(
  "int getsockopt(int fd, int level, int optname, _Out_ uint8_t *optval, _Inout_ uint32_t *optlen)",
);

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export function peerCredentials(fd: number): PeerCredentials {
  const buf = Buffer.alloc(12);
  const len = [12];
  check(getsockoptCall(fd, SOL_SOCKET, SO_PEERCRED, buf, len) as number, "getsockopt(SO_PEERCRED)");
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}
