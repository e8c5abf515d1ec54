import { test } from "node:test";
import assert from "node:assert/strict";
import { rpcTimes } from "./image-pull.js";

void test("rpcTimes sums berthd's debug rpc lines by method, most time first", () => {
  const log = [
    '{"level":"debug","path":"/containerd.services.content.v1.Content/Info","code":"OK","ms":0.5,"msg":"rpc"}',
    '{"level":"info","msg":"garbage collected d=3ms"}',
    '{"level":"debug","path":"/containerd.services.diff.v1.Diff/Apply","code":"OK","ms":10,"msg":"rpc"}',
    '{"level":"debug","path":"/containerd.services.content.v1.Content/Info","code":"OK","ms":1.5,"msg":"rpc"}',
    "(node:1) Warning: not json",
    '{"msg":"rpc", broken',
  ].join("\n");
  assert.deepEqual(rpcTimes(log), [
    { method: "diff.v1.Diff/Apply", calls: 1, totalMs: 10, meanMs: 10 },
    { method: "content.v1.Content/Info", calls: 2, totalMs: 2, meanMs: 1 },
  ]);
});
