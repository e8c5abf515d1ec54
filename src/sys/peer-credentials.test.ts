import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { peerCredentials } from "./peer-credentials.js";

void test("the peer of a unix socket connection is this very process", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-peercred-"));
  const path = join(dir, "s");
  const accepted = new Promise<Socket>((resolve) => {
    const server = createServer((s) => {
      resolve(s);
      server.close();
    });
    server.listen(path);
  });
  await new Promise((r) => setTimeout(r, 20));
  const client = connect(path);
  const sock = await accepted;
  try {
    const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
    const cred = peerCredentials(fd);
    assert.deepEqual(cred, { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  } finally {
    client.destroy();
    sock.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
