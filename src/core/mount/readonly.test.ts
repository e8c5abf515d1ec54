import { test } from "node:test";
import assert from "node:assert/strict";
import { readonlyMounts } from "./readonly.js";

void test("bind mounts become ro", () => {
  assert.deepEqual(readonlyMounts([{ type: "bind", source: "/a", options: ["rw", "rbind"] }]), [
    { type: "bind", source: "/a", options: ["rbind", "ro"] },
  ]);
});

void test("an overlay's upper dir becomes its nearest lower dir", () => {
  const m = {
    type: "overlay",
    source: "overlay",
    options: ["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs:/s/0/fs"],
  };
  assert.deepEqual(readonlyMounts([m]), [
    { type: "overlay", source: "overlay", options: ["index=off", "lowerdir=/s/2/fs:/s/1/fs:/s/0/fs"] },
  ]);
  assert.equal(m.options.length, 4, "the input is not modified");
});
