// The entry point of a diff worker thread: runs apply and diff jobs posted by the worker pool and
// posts back their results or their errors (as error codes, which cross the thread boundary).
import { parentPort } from "node:worker_threads";
import { BerthError } from "../../errdefs/errors.js";
import { runApplyJob, type ApplyJob } from "./apply-job.js";
import { runDiffJob, type DiffJob } from "./diff-job.js";
import type { WorkerReply } from "./worker-pool.js";

const port = parentPort;
if (port === null) throw new Error("diff-worker must run in a worker thread");

type Request = { id: number; op: "apply"; args: ApplyJob } | { id: number; op: "diff"; args: DiffJob };

port.on("message", (req: Request) => {
  const run = req.op === "apply" ? runApplyJob(req.args) : runDiffJob(req.args);
  run.then(
    (result) => port.postMessage({ id: req.id, ok: true, result } satisfies WorkerReply),
    (err: unknown) => {
      const e = BerthError.from(err);
      const code = e.code === "unknown" && hasSysCode(err) ? "invalid-argument" : e.code;
      port.postMessage({ id: req.id, ok: false, error: { code, message: e.message } } satisfies WorkerReply);
    },
  );
});

/** Errors from the file system while applying untrusted input are the input's fault, as a rule. */
function hasSysCode(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code) && code !== "ENOSPC" && code !== "EIO";
}
