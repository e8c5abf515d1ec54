import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { promisify } from "node:util";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tty from "node:tty";
import { setTimeout as sleep } from "node:timers/promises";
import {
  ConsoleSocket,
  closeSocket,
  connectUnix,
  getWinsize,
  listenUnix,
  receiveFd,
  recvFd,
  sendFd,
  setWinsize,
  socketpair,
} from "./socket.js";
import { setChildSubreaper, reapPid } from "./process.js";
import { hasCode } from "./errno.js";
import { canRunContainers, makeTestBundle } from "../shim/test-bundle.js";

const run = promisify(execFile);

void test("SCM_RIGHTS round trip over a socketpair: the received fd is the same object", () => {
  const [a, b] = socketpair();
  const [r, w] = socketpair();
  try {
    sendFd(a, w, Buffer.from("peer"));
    const m = recvFd(b);
    assert.ok(m !== null && m.fd !== null);
    assert.equal(m.data.toString(), "peer");
    assert.notEqual(m.fd, w);
    writeSync(m.fd, "through the passed fd");
    closeSync(m.fd);
    const buf = Buffer.alloc(64);
    assert.equal(buf.subarray(0, readSync(r, buf)).toString(), "through the passed fd");
  } finally {
    for (const fd of [a, b, r, w]) closeSocket(fd);
  }
});

void test("recvFd: no fd attached, EAGAIN on an empty non-blocking socket, EOF", () => {
  const [a, b] = socketpair(true);
  try {
    assert.equal(recvFd(b), null);
    writeSync(a, "plain");
    const m = recvFd(b);
    assert.deepEqual(
      { fd: m?.fd, data: m?.data.toString(), eof: m?.eof },
      { fd: null, data: "plain", eof: false },
    );
    closeSocket(a);
    assert.equal(recvFd(b)?.eof, true);
  } finally {
    closeSocket(b);
  }
});

void test("receiveFd: accepts one connection on a listening socket without blocking the loop", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-sock-"));
  const path = join(dir, "s.sock");
  const lfd = listenUnix(path);
  const devnull = openSync("/dev/null", "r");
  try {
    const got = receiveFd(lfd, { timeoutMs: 5000 });
    let settled = false;
    got.then(
      () => (settled = true),
      () => (settled = true),
    );
    // Nobody has connected yet: a blocking accept would hang here; the loop must keep running.
    await sleep(30);
    assert.equal(settled, false);
    const c = connectUnix(path);
    sendFd(c, devnull, Buffer.from("null"));
    const { fd, data } = await got;
    assert.equal(data.toString(), "null");
    assert.equal(fstatSync(fd).rdev, fstatSync(devnull).rdev);
    closeSync(fd);
    closeSocket(c);
  } finally {
    closeSocket(lfd);
    closeSync(devnull);
    rmSync(dir, { recursive: true, force: true });
  }
});

void test("receiveFd: timeout, abort, and a peer that closes without an fd", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-sock-"));
  const path = join(dir, "s.sock");
  const lfd = listenUnix(path);
  try {
    await assert.rejects(receiveFd(lfd, { timeoutMs: 20 }), (e) => hasCode(e, "ETIMEDOUT"));
    const ac = new AbortController();
    const p = receiveFd(lfd, { signal: ac.signal });
    ac.abort(new Error("runc create failed"));
    await assert.rejects(p, /runc create failed/);
    const q = receiveFd(lfd, { timeoutMs: 5000 });
    closeSocket(connectUnix(path));
    await assert.rejects(q, /closed without sending a descriptor/);
  } finally {
    closeSocket(lfd);
    rmSync(dir, { recursive: true, force: true });
  }
});

void test(
  "runc --console-socket: receive the pty master, talk to the shell through tty.ReadStream",
  { skip: !canRunContainers() && "needs root, runc and busybox" },
  async () => {
    setChildSubreaper(true);
    const b = makeTestBundle({ args: ["sh"], terminal: true });
    const sock = ConsoleSocket.listen(join(b.work, "console.sock"));
    try {
      const master = sock.receiveMaster({ timeoutMs: 10_000 });
      const pidFile = join(b.work, "init.pid");
      await run("runc", [
        "--root",
        b.runcRoot,
        "create",
        "--bundle",
        b.bundle,
        "--console-socket",
        sock.path,
        "--pid-file",
        pidFile,
        b.id,
      ]);
      const { fd, name } = await master;
      assert.match(name, /^\/dev\/(ptmx|pts\/\d+)$/);
      setWinsize(fd, 33, 101);
      assert.deepEqual(getWinsize(fd), { rows: 33, cols: 101 });

      // A pty master is a TTY to libuv: net.Socket({fd}) refuses it, tty.ReadStream is a full duplex.
      const term = new tty.ReadStream(fd);
      let out = "";
      term.on("data", (d: Buffer) => (out += d.toString()));
      const ended = new Promise<string>((resolve) => {
        // When the last slave fd closes, read(2) on the master usually fails with EIO (an 'error'
        // event), sometimes returns 0 ('end'): both are the end of output.
        term.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
        term.on("end", () => resolve("end"));
      });
      await run("runc", ["--root", b.runcRoot, "start", b.id]);
      term.write("stty size; echo h''i; exit 5\n");
      assert.match(await ended, /^(EIO|end)$/);
      term.destroy();
      assert.match(out, /33 101\r\n/);
      assert.match(out, /\r\nhi\r\n/);

      const pid = Number(readFileSync(pidFile, "utf8"));
      for (let i = 0; i < 500; i++) {
        const r = reapPid(pid);
        if (r !== null) {
          assert.equal(r.status, 5);
          break;
        }
        await sleep(10);
      }
      await run("runc", ["--root", b.runcRoot, "delete", b.id]);
    } finally {
      sock.close();
      b.cleanup();
    }
  },
);
