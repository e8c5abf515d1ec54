import { test } from "node:test";
import assert from "node:assert/strict";
import { isCode } from "../errdefs/errors.js";
import { validateProcess } from "./process-spec.js";

const refused = (p: unknown) =>
  assert.throws(
    () => validateProcess(p),
    (e: unknown) => isCode(e, "invalid-argument"),
  );

void test("a cwd under a process's fd directory is refused, however spelled", () => {
  for (const cwd of [
    "/proc/self/fd/7",
    "/proc/self/fd",
    "//proc//self/fd/3",
    "/proc/1/fd/4",
    "/proc/thread-self/fd/3",
    "/proc/self/task/1/fd/3",
  ])
    refused({ cwd });
  validateProcess({ cwd: "/" });
  validateProcess({ cwd: "/proc/self" });
  validateProcess({ cwd: "/work/fd" });
});

void test("uids and gids past int32 are refused; ordinary ones pass", () => {
  for (const user of [
    { uid: 2147483648 },
    { gid: 4294967295 },
    { uid: -1 },
    { uid: 1.5 },
    { uid: "0" },
    { additionalGids: [10, 2 ** 31] },
  ])
    refused({ user });
  validateProcess({ user: { uid: 0, gid: 0, additionalGids: [1, 2147483647] } });
  validateProcess({ user: { uid: 65534, gid: 65534 } });
});
