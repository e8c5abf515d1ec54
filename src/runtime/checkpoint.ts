// CRIU checkpoints as containerd 1.6 keeps them: the shim checkpoints a task into a scratch
// directory; berthd writes that directory as a tar (media type ...criu.checkpoint.criu.tar) and the
// container's spec (an Any, ...checkpoint.config.v1+proto) into the content store and returns both
// descriptors. For a restore the checkpoint tar is unpacked into a fresh directory for the shim:
// regular files only, flat, never through a link (the tar is hostile input like any other).
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { extract, pack } from "tar-stream";
import { CheckpointOptionsSchema } from "../gen/containerd/runc/options/oci_pb.js";
import type { Descriptor } from "../gen/containerd/types/descriptor_pb.js";
import { invalidArgument } from "../errdefs/errors.js";
import { hasCode } from "../sys/errno.js";
import type { RequestContext } from "../core/context.js";
import type { Store } from "../core/content/content.js";
import { ingestFile } from "../core/content/ingest-file.js";
import type { AnyValue } from "../core/any-value.js";
import type { RuntimeTask } from "./task-manager.js";

export const checkpointMediaType = "application/vnd.containerd.container.criu.checkpoint.criu.tar";
export const checkpointConfigMediaType = "application/vnd.containerd.container.checkpoint.config.v1+proto";

/** A checkpoint tar holds CRIU image files: bounded, so a hostile one cannot fill the disk. */
const maxCheckpointEntries = 100_000;

/** CRIU checkpoints to and from the content store (containerd's Tasks.Checkpoint and restore). */
export interface Checkpointer {
  checkpoint(
    rc: RequestContext,
    task: RuntimeTask,
    opts: { options?: Any; spec: AnyValue },
  ): Promise<Descriptor[]>;
  /** Unpacks a checkpoint descriptor into a directory for the shim; release removes it. */
  unpack(rc: RequestContext, checkpoint: Descriptor): Promise<{ dir: string; release: () => Promise<void> }>;
}

export interface CheckpointerOptions {
  contentFor(ctx: RequestContext): Store;
  /** A private directory (0700) for scratch checkpoint and restore directories. */
  workDir: string;
}

const uniqueRef = (what: string) =>
  `${what}-${process.hrtime.bigint()}-${randomBytes(6).toString("base64url")}`;

/** Tars the flat directory dir into path; returns its size and digest. */
async function tarDirectory(dir: string, path: string): Promise<{ size: number; digest: string }> {
  const p = pack();
  const hash = createHash("sha256");
  let size = 0;
  const out = createWriteStream(path, { mode: 0o600 });
  const done = pipeline(
    p,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    out,
  );
  for (const name of (await readdir(dir)).sort()) {
    const st = await stat(join(dir, name));
    if (!st.isFile()) continue;
    const entry = p.entry({ name, size: st.size, mode: st.mode & 0o777, mtime: st.mtime });
    await pipeline(createReadStream(join(dir, name)), entry);
  }
  p.finalize();
  await done;
  return { size, digest: `sha256:${hash.digest("hex")}` };
}

export function createCheckpointer(o: CheckpointerOptions): Checkpointer {
  const ready = mkdir(o.workDir, { recursive: true, mode: 0o700 });

  async function store(
    ctx: RequestContext,
    path: string,
    blob: { size: number; digest: string },
    mediaType: string,
  ): Promise<Descriptor> {
    await ingestFile(o.contentFor(ctx), path, uniqueRef("checkpoint"), blob);
    return { mediaType, digest: blob.digest, size: BigInt(blob.size), annotations: {} } as Descriptor;
  }

  return {
    async checkpoint(rc, task: RuntimeTask, req: { options?: Any; spec: AnyValue }) {
      await ready;
      const dir = await mkdtemp(join(o.workDir, "ctd-checkpoint-"));
      try {
        let imagePath = "";
        if (req.options && req.options.typeUrl.endsWith(CheckpointOptionsSchema.typeName))
          imagePath = fromBinary(CheckpointOptionsSchema, req.options.value).imagePath;
        await task.shim.checkpoint({ id: task.id, path: dir, options: req.options });
        // With an image path the checkpoint stays where the client asked, and nothing is stored.
        if (imagePath !== "") return [];
        const tarPath = `${dir}.tar`;
        const specPath = `${dir}.spec`;
        try {
          const tar = await tarDirectory(dir, tarPath);
          const spec = toBinary(
            AnySchema,
            create(AnySchema, { typeUrl: req.spec.typeUrl, value: req.spec.value }),
          );
          await writeFile(specPath, spec, { mode: 0o600 });
          const specBlob = {
            size: spec.length,
            digest: `sha256:${createHash("sha256").update(spec).digest("hex")}`,
          };
          return [
            await store(rc, tarPath, tar, checkpointMediaType),
            await store(rc, specPath, specBlob, checkpointConfigMediaType),
          ];
        } finally {
          await rm(tarPath, { force: true });
          await rm(specPath, { force: true });
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },

    async unpack(rc, desc) {
      if (desc.mediaType !== checkpointMediaType)
        throw invalidArgument(`unsupported checkpoint media type ${JSON.stringify(desc.mediaType)}`);
      await ready;
      const dir = await mkdtemp(join(o.workDir, "ctd-restore-"));
      const release = () => rm(dir, { recursive: true, force: true });
      try {
        const storeOf = o.contentFor(rc);
        const ex = extract();
        const reading = pipeline(Readable.from(storeOf.read(desc.digest, 0, Number(desc.size))), ex);
        // Leaving the loop early (a refused entry) destroys the stream: that rejection is expected.
        reading.catch(() => undefined);
        let entries = 0;
        for await (const entry of ex) {
          const h = entry.header;
          if (++entries > maxCheckpointEntries) throw invalidArgument("checkpoint has too many entries");
          const name = h.name.replace(/^\.\//, "");
          if (h.type !== "file" || name === "" || name.includes("/") || name === "." || name === "..") {
            entry.resume();
            if (h.type === "directory" && (name === "" || name === "." || name === "./")) continue;
            throw invalidArgument(`checkpoint entry ${JSON.stringify(h.name)} is not a plain file`);
          }
          // "wx": a name seen twice, or anything already there, is refused rather than followed.
          await pipeline(entry, createWriteStream(join(dir, name), { flags: "wx", mode: 0o600 })).catch(
            (err: unknown) => {
              if (hasCode(err, "EEXIST"))
                throw invalidArgument(`checkpoint entry ${JSON.stringify(name)} appears twice`);
              throw err;
            },
          );
        }
        await reading;
        return { dir, release };
      } catch (err) {
        await release();
        throw err;
      }
    },
  };
}
