// containerd.services.content.v1.Content over the namespaced content store, including the
// bidirectional Write protocol exactly as containerd's server runs it (see the reference, §1.5).
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Content,
  WriteAction,
  type WriteContentRequest,
  type WriteContentResponse,
} from "../gen/containerd/services/content/v1/content_pb.js";
import { ContentDeleteSchema } from "../gen/containerd/events/content_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WriteContentResponseSchema } from "../gen/containerd/services/content/v1/content_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced, type CallContext } from "./call-context.js";
import type { Info, Status, Store } from "../core/content/content.js";
import type { RequestContext } from "../core/context.js";
import type { Exchange } from "../core/events/exchange.js";
import { packEvent } from "./event-payloads.js";
import { safeNumber } from "./descriptor.js";
import { BerthError, alreadyExists, dataLoss, invalidArgument, outOfRange } from "../errdefs/errors.js";
import { digestProblem } from "../core/content/digest.js";
import { quote } from "../core/metadata/store-support.js";

export { Content };

/** The namespaced content store, bound to a request's namespace and lease. */
export type ContentStoreFor = (ctx: RequestContext) => Store;

const infoToProto = (i: Info) => ({
  digest: i.digest,
  size: BigInt(i.size),
  createdAt: timestampFromDate(i.createdAt),
  updatedAt: timestampFromDate(i.updatedAt),
  labels: i.labels,
});

const statusToProto = (s: Status) => ({
  ref: s.ref,
  offset: BigInt(s.offset),
  total: BigInt(s.total),
  expected: s.expected,
  startedAt: timestampFromDate(s.startedAt),
  updatedAt: timestampFromDate(s.updatedAt),
});

const listBatch = 100;

/**
 * containerd's content service validates digests before anything else (even the namespace), each
 * RPC with its own wording around go-digest's error text.
 */
function checkDigest(digest: string, message: (problem: string) => string): void {
  const problem = digestProblem(digest);
  if (problem !== undefined) throw new BerthError("invalid-argument", message(problem));
}

export function contentService(deps: { storeFor: ContentStoreFor; events: Exchange }) {
  const { storeFor, events } = deps;
  const impl: ServiceImpl<(typeof Content)["method"]> = {
    info: async (req, ctx) => {
      checkDigest(req.digest, () => `${quote(req.digest)} failed validation`);
      return { info: infoToProto(await storeFor(namespaced(ctx)).info(req.digest)) };
    },
    update: async (req, ctx) => {
      // containerd's Info is never nil on the wire (gogo non-nullable): an absent one has digest "".
      const digest = req.info?.digest ?? "";
      checkDigest(digest, () => `${quote(digest)} failed validation`);
      const info = await storeFor(namespaced(ctx)).update(
        { digest, labels: req.info?.labels ?? {} },
        req.updateMask?.paths ?? [],
      );
      return { info: infoToProto(info) };
    },
    list: async function* (req, ctx) {
      const infos: Info[] = [];
      await storeFor(namespaced(ctx)).walk((i) => {
        infos.push(i);
      }, req.filters);
      for (let i = 0; i < infos.length; i += listBatch) {
        yield { info: infos.slice(i, i + listBatch).map(infoToProto) };
      }
    },
    delete: async (req, ctx) => {
      checkDigest(req.digest, (problem) => problem);
      const rc = namespaced(ctx);
      await storeFor(rc).delete(req.digest);
      events.publish(rc.namespace, "/content/delete", packEvent(ContentDeleteSchema, { digest: req.digest }));
      return {};
    },
    read: async function* (req, ctx) {
      checkDigest(req.digest, (problem) => `${req.digest}: ${problem}`);
      const store = storeFor(namespaced(ctx));
      const info = await store.info(req.digest);
      let offset = req.offset < 0n ? 0 : safeNumber(req.offset, "offset");
      if (offset > info.size) throw outOfRange(`read past object length ${info.size} bytes`);
      let size = safeNumber(req.size, "size");
      if (size <= 0 || offset + size > info.size) size = info.size - offset;
      if (size === 0) return;
      for await (const chunk of store.read(req.digest, offset, size)) {
        yield { offset: BigInt(offset), data: chunk };
        offset += chunk.length;
      }
    },
    status: async (req, ctx) => ({ status: statusToProto(await storeFor(namespaced(ctx)).status(req.ref)) }),
    listStatuses: async (req, ctx) => ({
      statuses: (await storeFor(namespaced(ctx)).listStatuses(req.filters)).map(statusToProto),
    }),
    abort: async (req, ctx) => {
      await storeFor(namespaced(ctx)).abort(req.ref);
      return {};
    },
    write: (reqs, ctx) => writeSession(storeFor, reqs, ctx),
  };
  return impl;
}

type WriteResponse = MessageInitShape<typeof WriteContentResponseSchema>;

/**
 * One Write stream: the first message names the ref and locks its writer; each message gets one
 * response; a COMMIT verifies size and digest; when the client half-closes, the last response is
 * sent once more (clients ignore it, containerd does it).
 */
async function* writeSession(
  storeFor: ContentStoreFor,
  reqs: AsyncIterable<WriteContentRequest>,
  ctx: CallContext,
): AsyncGenerator<WriteResponse> {
  const it = reqs[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return;
  let req: WriteContentRequest = first.value;
  const ref = req.ref;
  // containerd's status text here has no ": invalid argument" suffix.
  if (ref === "") throw new BerthError("invalid-argument", "first message must have a reference");
  let total = safeNumber(req.total, "total");
  let expected = req.expected;
  const store = storeFor(namespaced(ctx));
  const wr = await store.writer({ ref, total, expected });
  let closed = false;
  const close = async () => {
    if (!closed) {
      closed = true;
      await wr.close();
    }
  };
  let last: WriteResponse | undefined;
  try {
    for (;;) {
      const ws = await wr.status();
      const msg: WriteResponse & { offset: bigint } = { action: req.action, offset: BigInt(ws.offset) };
      if (req.expected !== "") {
        expected = req.expected;
        const exists = await store.info(req.expected).then(
          () => true,
          () => false,
        );
        if (exists) {
          await close();
          await store.abort(ref).catch(() => undefined);
          throw alreadyExists(`blob with expected digest ${req.expected} exists`);
        }
      }
      if (req.total > 0n) total = safeNumber(req.total, "total");

      switch (req.action) {
        case WriteAction.STAT:
          msg.digest = wr.digest();
          msg.startedAt = timestampFromDate(ws.startedAt);
          msg.updatedAt = timestampFromDate(ws.updatedAt);
          msg.total = BigInt(total);
          break;
        case WriteAction.WRITE:
        case WriteAction.COMMIT: {
          const reqOffset = safeNumber(req.offset, "offset");
          if (reqOffset > 0 && reqOffset !== ws.offset)
            throw outOfRange(`write @${reqOffset} must occur at current offset ${ws.offset}`);
          if (reqOffset === 0 && ws.offset > 0) {
            await wr.truncate();
            msg.offset = 0n;
          }
          if (req.data.length > 0) {
            const before = Number(msg.offset);
            const after = await wr.write(req.data);
            if (after - before !== req.data.length)
              throw dataLoss(`wrote ${after - before} of ${req.data.length} bytes`);
            msg.offset = BigInt(after);
          }
          // A committed writer no longer knows its digest; commit returns it, and clients check it
          // against the digest they expected (content.Copy fails on "unexpected digest" otherwise).
          msg.digest =
            req.action === WriteAction.COMMIT
              ? await wr.commit(total, expected, Object.keys(req.labels).length > 0 ? req.labels : undefined)
              : wr.digest();
          break;
        }
        default:
          throw invalidArgument(`unknown write action ${String(req.action)}`);
      }
      last = msg;
      yield msg;
      const next = await it.next();
      if (next.done) break;
      req = next.value;
    }
  } finally {
    await close();
  }
  if (last) yield last;
}

export type { WriteContentResponse };
