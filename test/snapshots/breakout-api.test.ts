// The breakout corpus through the API: every case is a crafted layer written into berthd's content
// store and applied with Diff.Apply onto a snapshot from Snapshots.Prepare (overlayfs and native),
// as containerd's unpacker does, then checked from outside: the gRPC code and message, every file
// beside and under the daemon's root and state (sentinels in a sibling directory included)
// unchanged but the snapshot's own directory, no committed snapshot, and nothing left once the
// active snapshot and the case's lease are gone. A hostile image pulled with the stock
// `ctr images pull` must fail the same way.
//
// Two outcomes, as containerd has them (pkg/archive TestBreakouts):
// - refused: whiteouts of the root or a parent, hardlinks whose target is outside the root,
//   symlink loops, malformed or truncated archives, bombs past the configured limits, integrity
//   failures. The RPC fails and a client never reaches Snapshots.Commit.
// - contained: absolute and `..` entry names, symlinks (absolute, `..`, multi-hop, replacing a
//   directory) followed by writes through them. containerd resolves these inside the root (its
//   fs.RootPath) and applies the layer; so does berthd, and what matters is that every byte lands
//   inside the snapshot. Refusing them would break real images (absolute symlinks are everywhere).
//
// Integrity, as far as the daemon can check it: the descriptor's digest must name a stored blob
// (NotFound otherwise; Content.Write already refuses bytes that do not hash to their digest), its
// size must be the stored size (InvalidArgument), and the bytes read during the apply are hashed
// again (DataLoss when the file changed on disk). The uncompressed digest is checked against the
// blob's containerd.io/uncompressed label when it has one (DataLoss); otherwise Apply returns the
// diffID it computed and the client compares it with the config's diff_ids, as containerd's
// unpacker does ("wrong diff id calculated on extraction"): the pull case with lying diff_ids
// shows the stock ctr doing that against berthd. Descriptor annotations are not trusted.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { compress as zstdCompress } from "zstd-napi";
import {
  Content,
  Diff,
  Images,
  Leases,
  Snapshots,
  createClient,
  grpcStatusOf,
  writeBlob,
  type BerthClient,
} from "../../src/client/index.js";
import { craftTar, paxRecords, tarEntry, type CraftEntry } from "../../src/core/diff/tar-craft.js";
import { buildImage } from "../fixtures/image.js";
import { layerFromTar } from "../fixtures/layer.js";
import { pushImage } from "../fixtures/registry-push.js";
import { startBerthd, type BerthdHandle } from "../harness/berthd.js";
import { runCtr } from "../harness/ctr.js";
import { startRegistry, type RegistryHandle } from "../harness/registry.js";
import { makeTempDir, removeTempDir } from "../harness/temp-dir.js";

/** The differ's limits in this daemon's config: small, so that bombs hit them quickly. */
const MAX_LAYER_BYTES = 4 * 1024 * 1024;
const MAX_LAYER_ENTRIES = 500;

const SNAPSHOTTERS = ["overlayfs", "native"] as const;
type SnapshotterName = (typeof SNAPSHOTTERS)[number];
type Compression = "gzip" | "zstd" | "none";

const MEDIA: Record<Compression, string> = {
  none: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};

const sha256 = (b: Uint8Array): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** What a case's archive may refer to. */
interface Ctx {
  /** The test's directory: the daemon's root and state, and `outside`, live in it. */
  dir: string;
  /** A directory beside the daemon's root holding sentinel files. */
  outside: string;
  /** The relative path from the apply root up to dir ("../../../../.."). */
  up: string;
}

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

interface Layer {
  bytes: Buffer;
  tar: Buffer;
  desc: Desc;
}

interface ApiCase {
  name: string;
  /** The layer below, committed as the extract snapshot's parent (an overlay apply on overlayfs). */
  base?: (ctx: Ctx) => CraftEntry[];
  /** The layer under test: entries, or raw tar bytes. */
  tar: (ctx: Ctx) => CraftEntry[] | Buffer;
  /** The blob's compressions tried; gzip and none by default. */
  compressions?: readonly Compression[];
  /** Turns the tar into the blob's bytes (a truncated gzip); compression applies otherwise. */
  blob?: (tar: Buffer, compression: Compression) => Buffer;
  /** Labels on the stored blob. */
  labels?: (layer: Layer) => Record<string, string>;
  /** The descriptor Diff.Apply is given (a lie about the stored blob). */
  descriptor?: (layer: Layer) => Desc;
  /** Runs once the blob is stored (e.g. changes its file on disk). */
  afterWrite?: (blobFile: string, layer: Layer, ctx: Ctx) => void;
  /** The expected refusal; without it the layer applies, contained. */
  refused?: { code: GrpcStatus; message: RegExp };
  /**
   * For contained cases: what the apply root holds afterwards. upper: the root is an overlay
   * upperdir, where (as in containerd) symlinks of the layers below are not followed.
   */
  inside?: (root: string, ctx: Ctx, upper: boolean) => void;
  /** For contained cases: the Apply response, the layer stored and the descriptor given. */
  applied?: (result: Desc, layer: Layer, given: Desc) => void;
}

// ---- helpers for the cases ----

const ETC: CraftEntry[] = [
  { name: "etc", type: "dir" },
  { name: "etc/passwd", content: "inside\n" },
];

const invalid = (message: RegExp) => ({ code: GrpcStatus.INVALID_ARGUMENT, message });
const exhausted = (message: RegExp) => ({ code: GrpcStatus.RESOURCE_EXHAUSTED, message });
const badWhiteout = invalid(/layer tar entry ".*": invalid whiteout name: .*: invalid archive/);
const linkOutside = invalid(/layer tar entry "h": hardlink target ".*" does not exist in the layer or below/);

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

const fileIs = (root: string, p: string, content: string): void =>
  assert.equal(readFileSync(join(root, p), "utf8"), content, `${p} inside the snapshot`);

const isLinkTo = (root: string, p: string, target: string): void => {
  assert.ok(lstatSync(join(root, p)).isSymbolicLink(), `${p} should be a symlink`);
  assert.equal(readlinkSync(join(root, p)), target);
};

/** A whiteout as the apply leaves it: gone (a plain directory) or a 0:0 char device (an upperdir). */
const whitedOut = (root: string, p: string): void => {
  const st = lstatOrNull(join(root, p));
  assert.ok(st === null || (st.isCharacterDevice() && st.rdev === 0), `${p} should be whited out`);
};

// ---- the corpus ----

const REFUSED: ApiCase[] = [
  // whiteouts that escape or target the root
  {
    name: "WhiteoutRoot",
    base: () => ETC,
    tar: () => [{ name: ".wh..", content: "" }],
    refused: badWhiteout,
  },
  {
    name: "WhiteoutRootParent",
    base: () => ETC,
    tar: () => [{ name: ".wh...", content: "" }],
    refused: badWhiteout,
  },
  {
    name: "WhiteoutParent",
    base: () => ETC,
    tar: () => [{ name: "etc/.wh...", content: "" }],
    refused: badWhiteout,
  },
  {
    name: "WhiteoutCurrentDirectory",
    base: () => ETC,
    tar: () => [{ name: "etc/.wh..", content: "" }],
    refused: badWhiteout,
  },
  {
    name: "WhiteoutOfDotDotAfterWrites",
    tar: ({ up }) => [
      { name: "ok", content: "written before the bad entry" },
      { name: `${up}/.wh..`, content: "" },
    ],
    refused: badWhiteout,
  },
  // hardlinks out of the root
  {
    name: "HardlinkRelativeOutside",
    tar: ({ up }) => [{ name: "h", type: "link", linkname: `${up}/outside/sentinel` }],
    refused: linkOutside,
  },
  {
    name: "HardlinkAbsoluteOutside",
    tar: ({ outside }) => [{ name: "h", type: "link", linkname: `${outside}/sentinel` }],
    refused: linkOutside,
  },
  {
    name: "HardlinkThroughAbsoluteSymlinkOutside",
    tar: ({ outside }) => [
      { name: "d", type: "symlink", linkname: outside },
      { name: "h", type: "link", linkname: "d/sentinel" },
    ],
    refused: linkOutside,
  },
  {
    name: "HardlinkThroughRelativeSymlinkOutside",
    tar: ({ up }) => [
      { name: "d", type: "symlink", linkname: `${up}/outside` },
      { name: "h", type: "link", linkname: "d/sentinel" },
    ],
    refused: linkOutside,
  },
  {
    name: "HardlinkThroughMultiHopSymlinks",
    tar: ({ up }) => [
      { name: "hop2", type: "symlink", linkname: up },
      { name: "hop1", type: "symlink", linkname: "hop2/outside" },
      { name: "h", type: "link", linkname: "hop1/dir/file" },
    ],
    refused: linkOutside,
  },
  {
    name: "HardlinkThroughSymlinkedParentInBase",
    base: ({ outside }) => [{ name: "lnk", type: "symlink", linkname: outside }],
    tar: () => [{ name: "h", type: "link", linkname: "/lnk/sentinel" }],
    refused: linkOutside,
  },
  {
    name: "SymlinkLoopParent",
    tar: () => [
      { name: "a", type: "symlink", linkname: "b" },
      { name: "b", type: "symlink", linkname: "a" },
      { name: "a/x", content: "x" },
    ],
    refused: invalid(/layer tar entry "a\/x": .*ELOOP/),
  },
  {
    name: "XattrThroughHardlinkedSymlinkOutside",
    tar: ({ outside }) => [
      { name: "s", type: "symlink", linkname: `${outside}/sentinel` },
      { name: "h", type: "link", linkname: "s", pax: [["SCHILY.xattr.user.evil", "1"]] },
    ],
    refused: invalid(/layer tar entry "h": lsetxattr h: EPERM/),
  },
  // names
  {
    name: "NulInPaxPath",
    tar: ({ up }) => [
      { name: "x", content: "x", pax: [["path", Buffer.from(`etc/passwd\0${up}/outside/sentinel`)]] },
    ],
    refused: invalid(/invalid tar header: PAX path contains a NUL byte/),
  },
  {
    name: "NulInGnuLongName",
    tar: ({ up }) => [{ name: "x", content: "x", longName: Buffer.from(`etc/x\0${up}/outside/sentinel`) }],
    refused: invalid(/GNU long name contains a NUL byte/),
  },
  {
    name: "NonUtf8Name",
    tar: () => [{ name: Buffer.from([0x66, 0xff, 0x2f, 0x2e, 0x2e]), content: "x" }],
    refused: invalid(/is not valid UTF-8/),
  },
  {
    name: "PaxPathOver4096",
    tar: () => [{ name: "x", content: "x", pax: [["path", `${"d/".repeat(2100)}f`]] }],
    refused: invalid(/ENAMETOOLONG/),
  },
  {
    name: "UidAboveUint32",
    tar: () => [{ name: "f", content: "x", uid: 2 ** 32 }],
    refused: invalid(/uid\/gid 4294967296\/0 out of range/),
  },
  // sizes that lie, truncation
  {
    name: "PaxHeaderClaimsHugeSize",
    tar: () => Buffer.concat([tarEntry({ name: "x", type: "x", size: 1 << 30 }), Buffer.alloc(4096)]),
    refused: invalid(/extended header of 1073741824 bytes is larger than the 1048576-byte limit/),
  },
  {
    name: "HeaderSizeLargerThanData",
    tar: () =>
      Buffer.concat([tarEntry({ name: "f", content: "x".repeat(1000), size: 1 << 20 }), Buffer.alloc(1024)]),
    refused: invalid(/truncated tar: unexpected end of stream/),
  },
  {
    name: "HeaderSizeSmallerThanData",
    tar: () =>
      Buffer.concat([tarEntry({ name: "f", content: "y".repeat(5000), size: 10 }), Buffer.alloc(1024)]),
    refused: invalid(/invalid tar header: invalid octal number in checksum/),
  },
  {
    name: "TruncatedInData",
    tar: () => craftTar([{ name: "f", content: "x".repeat(5000) }]).subarray(0, 3000),
    refused: invalid(/truncated tar: unexpected end of stream after/),
  },
  {
    name: "TruncatedInHeader",
    tar: () =>
      craftTar([
        { name: "f", content: "x" },
        { name: "g", content: "y" },
      ]).subarray(0, 1024 + 100),
    refused: invalid(/truncated tar/),
  },
  {
    name: "TruncatedWithoutEndBlocks",
    tar: () => craftTar([{ name: "f", content: "x" }], { end: false }),
    refused: invalid(/without the end-of-archive blocks/),
  },
  {
    name: "TruncatedAfterPaxHeader",
    tar: () => tarEntry({ name: "x", type: "x", content: paxRecords([["path", "a"]]) }),
    refused: invalid(/truncated tar/),
  },
  {
    name: "EmptyBlob",
    tar: () => Buffer.alloc(0),
    compressions: ["none"],
    refused: invalid(/truncated tar/),
  },
  {
    name: "TruncatedGzip",
    tar: () => craftTar([{ name: "f", content: "x".repeat(100000) }]),
    compressions: ["gzip"],
    blob: (tar) => {
      const gz = gzipSync(tar);
      return gz.subarray(0, gz.length >> 1);
    },
    refused: invalid(/gzip: unexpected end of file/),
  },
  {
    name: "TruncatedZstd",
    tar: () =>
      craftTar([{ name: "f", content: Buffer.from(createHash("sha512").update("z").digest("hex")) }]),
    compressions: ["zstd"],
    blob: (tar) => {
      const z = zstdCompress(tar);
      return z.subarray(0, z.length - 8);
    },
    refused: invalid(/zstd: .*stream ended in the middle of a frame|truncated tar/),
  },
  // bombs, bounded by the configured max_layer_bytes / max_layer_entries
  {
    name: "DecompressionBombGzip",
    tar: () => craftTar([{ name: "bomb", content: Buffer.alloc(64 * 1024 * 1024) }]),
    compressions: ["gzip"],
    refused: exhausted(new RegExp(`layer tar holds more than ${MAX_LAYER_BYTES} bytes of data`)),
  },
  {
    name: "DecompressionBombZstd",
    tar: () => craftTar([{ name: "bomb", content: Buffer.alloc(64 * 1024 * 1024) }]),
    compressions: ["zstd"],
    refused: exhausted(new RegExp(`layer tar holds more than ${MAX_LAYER_BYTES} bytes of data`)),
  },
  {
    name: "BombSpreadOverFiles",
    tar: () =>
      craftTar(Array.from({ length: 64 }, (_, i) => ({ name: `f${i}`, content: Buffer.alloc(128 * 1024) }))),
    compressions: ["gzip"],
    refused: exhausted(new RegExp(`more than ${MAX_LAYER_BYTES} bytes of data \\(entry "f32"`)),
  },
  {
    name: "TooManyEntries",
    tar: () => craftTar(Array.from({ length: 2000 }, (_, i) => ({ name: `e${i}`, content: "" }))),
    refused: exhausted(new RegExp(`layer tar has more than ${MAX_LAYER_ENTRIES} entries`)),
  },
  // integrity
  {
    name: "DigestNotInStore",
    tar: () => craftTar([{ name: "f", content: "digest" }]),
    descriptor: (l) => ({ ...l.desc, digest: sha256(Buffer.concat([l.bytes, Buffer.from("x")])) }),
    refused: { code: GrpcStatus.NOT_FOUND, message: /sha256:[0-9a-f]{64}.*not found/ },
  },
  {
    name: "DescriptorSizeTooSmall",
    tar: () => craftTar([{ name: "f", content: "small" }]),
    descriptor: (l) => ({ ...l.desc, size: l.desc.size - 1 }),
    refused: invalid(/descriptor size \d+ does not match stored size \d+/),
  },
  {
    name: "DescriptorSizeTooLarge",
    tar: () => craftTar([{ name: "f", content: "large" }]),
    descriptor: (l) => ({ ...l.desc, size: l.desc.size + 512 }),
    refused: invalid(/descriptor size \d+ does not match stored size \d+/),
  },
  {
    name: "UnknownMediaType",
    tar: () => craftTar([{ name: "f", content: "m" }]),
    descriptor: (l) => ({ ...l.desc, mediaType: "application/vnd.example.layer.v1.tar+evil" }),
    refused: invalid(/unsupported media type application\/vnd\.example\.layer\.v1\.tar\+evil/),
  },
  {
    name: "UncompressedLabelMismatch",
    tar: () => craftTar([{ name: "f", content: "the label lies about me" }]),
    labels: () => ({ "containerd.io/uncompressed": sha256(Buffer.from("another tar")) }),
    refused: {
      code: GrpcStatus.DATA_LOSS,
      message: /uncompressed digest sha256:[0-9a-f]{64} does not match sha256:[0-9a-f]{64}/,
    },
  },
  {
    name: "BlobChangedOnDiskAfterCommit",
    // The stored bytes are swapped for a hostile tar of the same size: the apply hashes what it
    // reads and fails, and what it wrote before knowing stays inside the snapshot.
    tar: () => craftTar([{ name: "benign", content: "b".repeat(4096) }]),
    compressions: ["none"],
    afterWrite: (file, layer, { outside }) => {
      const hostile = craftTar([
        { name: "abs", type: "symlink", linkname: outside },
        { name: "abs/sentinel", content: "swapped" },
      ]);
      assert.ok(hostile.length <= layer.bytes.length);
      writeFileSync(file, Buffer.concat([hostile, Buffer.alloc(layer.bytes.length - hostile.length)]));
    },
    refused: { code: GrpcStatus.DATA_LOSS, message: /content digest mismatch, the blob hashes to sha256:/ },
  },
];

const CONTAINED: ApiCase[] = [
  // absolute and .. entry names
  {
    name: "AbsoluteEntryNames",
    tar: ({ outside }) => [
      { name: `${outside}/sentinel`, content: "inside after all" },
      { name: "/etc/berth-breakout", content: "x" },
    ],
    inside: (root, { outside }) => {
      fileIs(root, `${outside}/sentinel`, "inside after all");
      fileIs(root, "etc/berth-breakout", "x");
    },
  },
  {
    name: "DotDotEntryNames",
    tar: ({ up }) => [
      { name: `${up}/outside/sentinel`, content: "clamped" },
      { name: `a/${up}/${up}/top-sentinel`, content: "clamped too" },
    ],
    inside: (root) => {
      fileIs(root, "outside/sentinel", "clamped");
      fileIs(root, "top-sentinel", "clamped too");
    },
  },
  // absolute and ../ symlinks followed by writes
  {
    name: "SymlinkAbsolute",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "localetc", type: "symlink", linkname: "/etc" },
      { name: "/localetc/berth-unbroken", content: "unbroken" },
    ],
    inside: (root) => fileIs(root, "etc/berth-unbroken", "unbroken"),
  },
  {
    name: "SymlinkAbsoluteToOutsideThenWrite",
    tar: ({ outside }) => [
      { name: "abs", type: "symlink", linkname: outside },
      { name: "abs/sentinel", content: "owned" },
      { name: "abs/dir/new", content: "new" },
    ],
    inside: (root, { outside }) => {
      isLinkTo(root, "abs", outside);
      fileIs(root, `${outside}/sentinel`, "owned");
      fileIs(root, `${outside}/dir/new`, "new");
    },
  },
  {
    name: "SymlinkUpAndOutThenWrite",
    tar: ({ up }) => [
      { name: "rel", type: "symlink", linkname: `${up}/outside` },
      { name: "rel/sentinel", content: "owned too" },
      { name: "rel/link", content: "replaces the outside symlink?" },
    ],
    inside: (root) => {
      fileIs(root, "outside/sentinel", "owned too");
      fileIs(root, "outside/link", "replaces the outside symlink?");
    },
  },
  // multi-hop symlinks
  {
    name: "SymlinkMultipleAbsolute",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "dummy", type: "dir" },
      { name: "/dummy/etc", type: "symlink", linkname: "/etc" },
      { name: "localetc", type: "symlink", linkname: "/dummy/etc" },
      { name: "/localetc/berth-unbroken", content: "unbroken" },
    ],
    inside: (root) => fileIs(root, "etc/berth-unbroken", "unbroken"),
  },
  {
    name: "SymlinkMultipleRelativeOut",
    tar: ({ up }) => [
      { name: "hop2", type: "symlink", linkname: up },
      { name: "hop1", type: "symlink", linkname: "hop2/outside" },
      { name: "hop1/sentinel", content: "two hops" },
    ],
    inside: (root) => fileIs(root, "outside/sentinel", "two hops"),
  },
  // symlinked parent directories, from the layer below
  {
    name: "SymlinkedParentInBase",
    base: ({ outside }) => [{ name: "lnk", type: "symlink", linkname: outside }],
    tar: () => [
      { name: "lnk/sentinel", content: "through the lower layer's link" },
      { name: "lnk/dir/file", content: "deeper" },
    ],
    inside: (root, { outside }, upper) => {
      // An upperdir does not see the lower layer's link: the write makes a directory over it,
      // as containerd's overlay apply does; a full tree (native) resolves the link inside.
      const at = upper ? "lnk" : outside;
      fileIs(root, `${at}/sentinel`, "through the lower layer's link");
      fileIs(root, `${at}/dir/file`, "deeper");
    },
  },
  {
    name: "SymlinkParentDirectoryEntry",
    tar: ({ outside }) => [
      { name: "etc", type: "dir" },
      { name: "etc/passwd", content: "inside" },
      { name: "..", type: "symlink", linkname: outside },
      { name: "../sentinel", content: "dotdot" },
    ],
    inside: (root) => fileIs(root, "sentinel", "dotdot"),
  },
  // a symlink replacing a directory, and the reverse
  {
    name: "SymlinkReplacesDirectoryThenWrite",
    base: () => [
      { name: "d", type: "dir" },
      { name: "d/kept", content: "lower" },
    ],
    tar: ({ outside }) => [
      { name: "d", type: "symlink", linkname: outside },
      { name: "d/sentinel", content: "through the new link" },
    ],
    inside: (root, { outside }) => {
      isLinkTo(root, "d", outside);
      fileIs(root, `${outside}/sentinel`, "through the new link");
    },
  },
  {
    name: "SymlinkOverrideDirectoryHardlink",
    base: () => [...ETC, { name: "localetc", type: "dir" }],
    tar: () => [
      { name: "etc/passwd", content: "inside" },
      { name: "localetc", type: "symlink", linkname: "/etc" },
      { name: "/localetc/localpasswd", type: "link", linkname: "/etc/passwd" },
    ],
    inside: (root) => {
      isLinkTo(root, "localetc", "/etc");
      assert.equal(lstatSync(join(root, "etc/localpasswd")).ino, lstatSync(join(root, "etc/passwd")).ino);
    },
  },
  {
    name: "DirectoryReplacesSymlinkToOutside",
    base: ({ outside }) => [{ name: "localetc", type: "symlink", linkname: outside }],
    tar: () => [
      { name: "localetc/", type: "dir" },
      { name: "localetc/sentinel", content: "in a real directory" },
    ],
    inside: (root) => {
      assert.ok(lstatSync(join(root, "localetc")).isDirectory());
      fileIs(root, "localetc/sentinel", "in a real directory");
    },
  },
  {
    name: "FileReplacesSymlinkToOutside",
    tar: ({ outside }) => [
      { name: "f", type: "symlink", linkname: `${outside}/sentinel` },
      { name: "f", content: "replaced the link, not its target", mode: 0o777 },
    ],
    inside: (root) => fileIs(root, "f", "replaced the link, not its target"),
  },
  {
    name: "FifoReplacesSymlinkToOutside",
    tar: ({ outside }) => [
      { name: "f", type: "symlink", linkname: `${outside}/sentinel` },
      { name: "f", type: "fifo", mode: 0o777 },
    ],
    inside: (root) => assert.ok(lstatSync(join(root, "f")).isFIFO()),
  },
  // hardlinks to symlinks
  {
    name: "HardlinkToSymlinkToOutside",
    tar: ({ outside }) => [
      { name: "passwdlink", type: "symlink", linkname: `${outside}/sentinel` },
      { name: "localpasswd", type: "link", linkname: "/passwdlink", mode: 0o777, uid: 4321, gid: 4321 },
    ],
    inside: (root, { outside }) => {
      isLinkTo(root, "localpasswd", `${outside}/sentinel`);
      assert.equal(lstatSync(join(root, "localpasswd")).ino, lstatSync(join(root, "passwdlink")).ino);
    },
  },
  {
    name: "HardlinkToSymlinkBeforeTargetExists",
    tar: () => [
      { name: "etc", type: "dir" },
      { name: "localpasswd", type: "symlink", linkname: "/etc/passwd" },
      { name: "localpasswd-dup", type: "link", linkname: "localpasswd" },
      { name: "/etc/passwd", content: "after" },
    ],
    inside: (root) => isLinkTo(root, "localpasswd-dup", "/etc/passwd"),
  },
  // whiteouts through symlinks
  {
    name: "WhiteoutThroughSymlinkOutside",
    tar: ({ outside, up }) => [
      { name: "lnk", type: "symlink", linkname: outside },
      { name: "lnk/.wh.sentinel", content: "" },
      { name: "rel", type: "symlink", linkname: `${up}/outside` },
      { name: "rel/.wh.sentinel", content: "" },
    ],
    inside: (root, { outside }) => {
      whitedOut(root, `${outside}/sentinel`);
      whitedOut(root, "outside/sentinel");
    },
  },
  {
    name: "OpaqueThroughSymlinkOutside",
    tar: ({ outside, up }) => [
      { name: "lnk", type: "symlink", linkname: outside },
      { name: "lnk/.wh..wh..opq", content: "" },
      { name: "rel", type: "symlink", linkname: `${up}/outside` },
      { name: "rel/.wh..wh..opq", content: "" },
    ],
  },
  {
    name: "WhiteoutOfSymlinkInBase",
    base: ({ outside }) => [{ name: "localetc", type: "symlink", linkname: outside }],
    tar: () => [{ name: ".wh.localetc", content: "" }],
    inside: (root) => whitedOut(root, "localetc"),
  },
  {
    name: "WhiteoutThroughSymlinkInBase",
    base: ({ outside }) => [{ name: "localetc", type: "symlink", linkname: outside }],
    tar: () => [
      { name: "localetc/.wh.sentinel", content: "" },
      { name: "localetc/.wh..wh..opq", content: "" },
    ],
  },
  {
    name: "WhiteoutRelativePathThroughDeadSymlink",
    base: () => [...ETC, { name: "localetc", type: "symlink", linkname: "/dne" }],
    tar: ({ up }) => [{ name: `dne/${up}/.wh.etc`, content: "" }],
    inside: (root) => whitedOut(root, "etc"),
  },
  // metadata through symlinks
  {
    name: "ChmodChownThroughSymlink",
    tar: ({ outside }) => [
      { name: "s", type: "symlink", linkname: `${outside}/sentinel`, uid: 1234, gid: 1234 },
      { name: "h", type: "link", linkname: "s", mode: 0o777, uid: 4321, gid: 4321, mtime: 5 },
      { name: "s", type: "dir", mode: 0o777 },
    ],
    inside: (root) => {
      assert.ok(lstatSync(join(root, "h")).isSymbolicLink());
      assert.equal(lstatSync(join(root, "h")).uid, 4321);
    },
  },
  // integrity the daemon leaves to the client
  {
    name: "DiffIdAnnotationLies",
    tar: () => craftTar([{ name: "f", content: "annotated" }]),
    descriptor: (l) => ({
      ...l.desc,
      annotations: { "containerd.io/uncompressed": sha256(Buffer.from("not this tar")) },
    }),
    applied: (result, layer, given) => {
      // The daemon answers the diffID it computed; the client compares it with diff_ids.
      const claimed = given.annotations["containerd.io/uncompressed"];
      assert.ok(claimed !== undefined && claimed !== result.digest);
      assert.equal(result.digest, sha256(layer.tar));
      assert.equal(result.size, layer.tar.length);
      assert.equal(result.mediaType, MEDIA.none);
    },
  },
];

// ---- state outside the snapshot ----

const SQLITE = /\.(db|db-wal|db-shm)$/;

/**
 * Every path under top with its type, mode, owner, link count, size, times and content digest
 * (only the existence of SQLite files: reads touch them), skipping the subtrees skip names.
 */
function treeState(top: string, skip: (abs: string) => boolean, shapeOnly = false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (abs: string): void => {
    if (skip(abs)) return;
    const st = lstatSync(abs, { bigint: true });
    // Sockets (the daemon's, made when it likes) are nothing a layer can create.
    if (st.isSocket()) return;
    const rel = relative(top, abs) || ".";
    if (st.isFile() && SQLITE.test(abs)) {
      out.set(rel, "sqlite");
      return;
    }
    let extra = "";
    if (st.isFile()) extra = sha256(readFileSync(abs));
    else if (st.isSymbolicLink()) extra = `-> ${readlinkSync(abs)}`;
    const type = (Number(st.mode) & 0o170000).toString(8);
    const meta = `${st.mode} ${st.uid}:${st.gid} nlink=${st.nlink} size=${st.size} mtime=${st.mtimeNs} ctime=${st.ctimeNs}`;
    out.set(rel, shapeOnly ? `${type} ${extra}` : `${meta} ${extra}`);
    if (st.isDirectory()) for (const child of readdirSync(abs).sort()) walk(join(abs, child));
  };
  walk(top);
  return out;
}

function diffStates(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [p, v] of before) {
    const w = after.get(p);
    if (w === undefined) out.push(`- ${p} (${v})`);
    else if (w !== v) out.push(`~ ${p}: ${v} => ${w}`);
  }
  for (const [p, v] of after) if (!before.has(p)) out.push(`+ ${p} (${v})`);
  return out;
}

/** Host files a naive extractor would reach through the corpus's absolute paths. */
function hostState(): string {
  const lines: string[] = [];
  for (const p of ["/etc/passwd", "/etc/berth-unbroken", "/etc/berth-breakout", "/etc/localpasswd"]) {
    const st = lstatOrNull(p);
    lines.push(st === null ? `${p} absent` : `${p} ino=${st.ino} nlink=${st.nlink} mtime=${st.mtimeMs}`);
  }
  return lines.join("\n");
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function waitGone(path: string, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${what}: ${path} still exists`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function waitEmpty(path: string, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const left = readdirSync(path);
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${path} still holds ${left.join(", ")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function compress(tar: Buffer, c: Compression): Buffer {
  if (c === "gzip") return gzipSync(tar);
  if (c === "zstd") return zstdCompress(tar);
  return tar;
}

function applyRootOf(mounts: Array<{ type: string; source: string; options: string[] }>): string {
  assert.equal(mounts.length, 1, JSON.stringify(mounts));
  const m = mounts[0]!;
  if (m.type === "bind") return m.source;
  assert.equal(m.type, "overlay");
  const upper = m.options.find((o) => o.startsWith("upperdir="));
  assert.ok(upper, JSON.stringify(m.options));
  return upper.slice("upperdir=".length);
}

// ---- the suite ----

void describe("breakout corpus through Snapshots and Diff", { timeout: 300_000 }, () => {
  let dir: string;
  let outside: string;
  let root: string;
  let state: string;
  let berthd: BerthdHandle;
  let registry: RegistryHandle;
  let client: BerthClient;
  let seq = 0;
  const seen = new Set<string>();

  const contentDir = (): string => join(root, "io.containerd.content.v1.content");
  const snapshotsDir = (sn: SnapshotterName): string =>
    join(root, `io.containerd.snapshotter.v1.${sn}`, "snapshots");

  before(async () => {
    dir = await makeTempDir("breakout-api");
    root = join(dir, "root");
    state = join(dir, "state");
    outside = join(dir, "outside");
    mkdirSync(join(outside, "dir"), { recursive: true });
    writeFileSync(join(outside, "sentinel"), "host data", { mode: 0o640 });
    writeFileSync(join(outside, "dir", "file"), "more host data", { mode: 0o600 });
    symlinkSync("sentinel", join(outside, "link"));
    writeFileSync(join(dir, "top-sentinel"), "beside the daemon's root");
    for (const p of [join(outside, "sentinel"), join(outside, "dir", "file"), join(outside, "dir"), outside])
      utimesSync(p, 1_000_000, 1_000_000);
    const config = join(dir, "berthd.toml");
    writeFileSync(
      config,
      [
        "version = 2",
        '[plugins."io.containerd.differ.v1.walking"]',
        `  max_layer_bytes = ${MAX_LAYER_BYTES}`,
        `  max_layer_entries = ${MAX_LAYER_ENTRIES}`,
        "",
      ].join("\n"),
    );
    [berthd, registry] = await Promise.all([
      startBerthd({ root, state, extraArgs: ["-c", config] }),
      startRegistry(),
    ]);
    client = createClient(berthd.address);
  });

  after(async () => {
    client?.close();
    await Promise.allSettled([berthd?.stop(), registry?.stop()]);
    if (dir) await removeTempDir(dir);
  });

  /** Everything under dir but the apply root (and the content store's ingests). */
  // Skipped: the apply root itself, ingests, and the Berth shims' socket dir (the shim pool starts
  // spares there, with their sockets and log FIFOs, whenever it sees fit).
  const outsideState = (applyRoot: string): Map<string, string> =>
    treeState(
      dir,
      (abs) => abs === applyRoot || abs === join(contentDir(), "ingest") || abs === join(state, "s"),
    );

  async function storeLayer(
    c: BerthClient,
    tar: Buffer,
    bytes: Buffer,
    compression: Compression,
    labels = {},
  ) {
    const digest = sha256(bytes);
    await writeBlob(c.service(Content), bytes, { ref: `layer-${digest}`, expected: digest, labels });
    const layer: Layer = {
      bytes,
      tar,
      desc: { mediaType: MEDIA[compression], digest, size: bytes.length, annotations: {} },
    };
    return layer;
  }

  async function apply(c: BerthClient, desc: Desc, mounts: unknown[]) {
    const r = await c.service(Diff).apply({
      diff: { ...desc, size: BigInt(desc.size) },
      mounts: mounts as never,
    });
    assert.ok(r.applied);
    return { ...r.applied, size: Number(r.applied.size) } as Desc;
  }

  async function runCase(c: ApiCase, sn: SnapshotterName, compression: Compression): Promise<void> {
    const ns = `bo-${++seq}`;
    const hostBefore = hostState();
    const shapeBefore = treeState(dir, () => false, true);
    await client.service(Leases).create({ id: ns, labels: {} }, { namespace: ns });
    const lc = client.with({ namespace: ns, lease: ns });
    const snaps = lc.service(Snapshots);
    let finished = false;
    try {
      await caseBody();
      finished = true;
    } finally {
      if (!finished) {
        // A failed case must not fail the next ones: best-effort removal of what it holds.
        for (const key of ["extract", "base-extract", "base"])
          await snaps.remove({ snapshotter: sn, key }).catch(() => undefined);
        await client
          .service(Leases)
          .delete({ id: ns, sync: true }, { namespace: ns })
          .catch(() => undefined);
      }
    }

    async function caseBody(): Promise<void> {
      let parent = "";
      if (c.base !== undefined) {
        // The layer below: applied and committed as a client would (it is no part of the case).
        const mounts = (await snaps.prepare({ snapshotter: sn, key: "base-extract", parent: "" })).mounts;
        const baseRoot = applyRootOf(mounts);
        const baseCtx: Ctx = { dir, outside, up: relative(baseRoot, dir) };
        const tar = craftTar(c.base(baseCtx));
        const layer = await storeLayer(lc, tar, gzipSync(tar), "gzip");
        await apply(lc, layer.desc, mounts);
        await snaps.commit({ snapshotter: sn, name: "base", key: "base-extract" });
        parent = "base";
      }
      const mounts = (await snaps.prepare({ snapshotter: sn, key: "extract", parent })).mounts;
      const applyRoot = applyRootOf(mounts);
      if (sn === "overlayfs")
        assert.equal(mounts[0]!.type, parent === "" ? "bind" : "overlay", "the apply path under test");
      const ctx: Ctx = { dir, outside, up: relative(applyRoot, dir) };
      const built = c.tar(ctx);
      const tar = Buffer.isBuffer(built) ? built : craftTar(built);
      const bytes = c.blob ? c.blob(tar, compression) : compress(tar, compression);
      // Every case's blobs go with its lease (checked below), so labels given here are the blob's.
      const labels = c.labels?.({
        bytes,
        tar,
        desc: { mediaType: MEDIA[compression], digest: sha256(bytes), size: bytes.length, annotations: {} },
      });
      const layer = await storeLayer(lc, tar, bytes, compression, labels);
      const blobFile = join(contentDir(), "blobs", "sha256", layer.desc.digest.slice("sha256:".length));
      c.afterWrite?.(blobFile, layer, ctx);
      const desc = c.descriptor ? c.descriptor(layer) : layer.desc;

      const before = outsideState(applyRoot);
      let failure: Error | null = null;
      let applied: Desc | undefined;
      try {
        applied = await apply(lc, desc, mounts);
      } catch (err) {
        failure = err as Error;
      }
      if (c.refused !== undefined) {
        assert.ok(failure !== null, `expected ${GrpcStatus[c.refused.code]}, the layer applied`);
        const message = failure.message;
        assert.equal(
          grpcStatusOf(failure),
          c.refused.code,
          `code: ${GrpcStatus[grpcStatusOf(failure) ?? 2]}: ${message}`,
        );
        assert.match(message, c.refused.message);
        seen.add(`${c.name}: ${message.replace(/sha256:[0-9a-f]{64}/g, "sha256:…")}`);
      } else {
        assert.equal(failure, null, `the layer was refused: ${failure?.message}`);
        assert.ok(applied);
        assert.equal(applied.digest, sha256(tar), "Apply answers the diffID of the tar");
        c.applied?.(applied, layer, desc);
        c.inside?.(applyRoot, ctx, mounts[0]!.type === "overlay");
      }
      // Nothing outside the snapshot's directory changed: not the sentinels beside the root, not the
      // daemon's other files, not the parent snapshot.
      assert.ok(lstatSync(applyRoot).isDirectory(), "the apply root is still a directory");
      assert.deepEqual(diffStates(before, outsideState(applyRoot)), [], "changes outside the snapshot");
      // What the shim pool's socket dir holds is the pool's own: sockets and their log FIFOs.
      for (const name of readdirSync(join(state, "s")))
        assert.match(name, /^[0-9a-f]{24,32}(\.log)?$/, `state/s/${name}`);
      assert.equal(hostState(), hostBefore, "host files changed");

      // Never committed: the case's namespace holds the active extract snapshot (and the base).
      const infos = (await collect(snaps.list({ snapshotter: sn }))).flatMap((r) => r.info);
      assert.deepEqual(
        infos.map((i) => `${i.name} ${i.kind}`).sort(),
        [...(parent ? ["base 3"] : []), "extract 2"],
        "snapshots after the apply (kind 2 = active, 3 = committed)",
      );

      // Removal leaves nothing of it; the lease's end leaves nothing of the case at all.
      const snapshotDir = sn === "overlayfs" ? dirname(applyRoot) : applyRoot;
      await snaps.remove({ snapshotter: sn, key: "extract" });
      await waitGone(snapshotDir, "Snapshots.Remove");
      assert.deepEqual(
        (await collect(snaps.list({ snapshotter: sn }))).flatMap((r) => r.info.map((i) => i.name)),
        parent ? ["base"] : [],
      );
      if (parent) await snaps.remove({ snapshotter: sn, key: "base" });
      await client.service(Leases).delete({ id: ns, sync: true }, { namespace: ns });
      await waitEmpty(snapshotsDir(sn), "snapshots after the case");
      await waitEmpty(join(contentDir(), "blobs", "sha256"), "blobs after the lease");
      assert.deepEqual(
        diffStates(
          shapeBefore,
          treeState(dir, () => false, true),
        ),
        [],
        "what the case left",
      );
    }
  }

  for (const sn of SNAPSHOTTERS) {
    for (const c of [...REFUSED, ...CONTAINED]) {
      for (const compression of c.compressions ?? (["gzip", "none"] as const)) {
        const how = c.refused ? "refused" : "contained";
        void test(`${sn} ${compression}: ${c.name} is ${how}`, () => runCase(c, sn, compression));
      }
    }
  }

  /**
   * Pushes image to the registry, pulls it with the stock ctr into a fresh namespace, and checks
   * that the pull fails with message, that the sentinels beside the root are untouched, that once
   * ctr's lease is gone no snapshot is left (committed or not), and that removing the image
   * leaves nothing of the pull: no blob, no snapshot directory.
   */
  async function hostilePull(repo: string, image: ReturnType<typeof buildImage>, message: RegExp) {
    await pushImage(registry.url, repo, "latest", image);
    const namespace = `pull-${repo.replace(/\W/g, "-")}`;
    const outsideOnly = (): Map<string, string> => treeState(dir, (abs) => abs === root || abs === state);
    const sentinels = outsideOnly();
    const shape = treeState(dir, () => false, true);
    const host = hostState();
    const ref = `${registry.host}/${repo}:latest`;
    const r = await runCtr(berthd.address, ["images", "pull", "--plain-http", ref], {
      namespace,
    });
    assert.notEqual(r.code, 0, `the pull succeeded:\n${r.stdout}`);
    assert.match(r.stderr, message);
    seen.add(`ctr pull ${repo}: ${r.stderr.trim().split("\n").pop()}`);
    assert.deepEqual(diffStates(sentinels, outsideOnly()), [], "changes beside the daemon's root");
    assert.equal(hostState(), host, "host files changed");

    const c = client.with({ namespace });
    // The hostile layer's snapshot was never committed; the base layer's, committed before it,
    // goes with ctr's lease, as on containerd.
    const hostileChain = image.chainIds[image.chainIds.length - 1];
    const deadline = Date.now() + 10_000;
    for (;;) {
      const infos = (await collect(c.service(Snapshots).list({ snapshotter: "overlayfs" }))).flatMap(
        (x) => x.info,
      );
      assert.ok(!infos.some((i) => i.name === hostileChain), "the hostile layer was committed");
      if (infos.length === 0) break;
      if (Date.now() > deadline)
        assert.fail(
          `snapshots left after the failed pull: ${infos.map((i) => `${i.name} ${i.kind}`).join(", ")}`,
        );
      await new Promise((res) => setTimeout(res, 50));
    }
    // ctr 1.6 fetches (and records the image) before it unpacks, on containerd too: the record
    // stays, unpacked nowhere. Removing it must take everything else with it.
    const images = (await c.service(Images).list({})).images.map((i) => i.name);
    assert.deepEqual(images, [ref]);
    const rm = await runCtr(berthd.address, ["images", "rm", "--sync", ref], { namespace });
    assert.equal(rm.code, 0, rm.stderr);
    await waitEmpty(snapshotsDir("overlayfs"), "snapshot dirs after the failed pull");
    await waitEmpty(join(contentDir(), "blobs", "sha256"), "blobs after the failed pull");
    assert.deepEqual(
      diffStates(
        shape,
        treeState(dir, () => false, true),
      ),
      [],
      "what the pull left",
    );
  }

  void test("ctr images pull: a layer writing through symlinks, then a ../ hardlink out, is refused", async () => {
    const up = "../".repeat(12);
    const base = layerFromTar(craftTar(ETC));
    const hostile = layerFromTar(
      craftTar([
        { name: "abs", type: "symlink", linkname: outside },
        { name: "abs/sentinel", content: "owned" },
        { name: "rel", type: "symlink", linkname: `${up}outside` },
        { name: "rel/dir/file", content: "owned too" },
        { name: "h", type: "link", linkname: `${up}outside/sentinel` },
      ]),
    );
    await hostilePull(
      "berth/hostile-hardlink",
      buildImage({ layers: [base, hostile] }),
      new RegExp(
        `ctr: failed to extract layer ${hostile.diffId}: layer tar entry "h": hardlink target ` +
          `"(\\.\\./)+outside/sentinel" does not exist in the layer or below`,
      ),
    );
  });

  void test("ctr images pull: a layer an absolute hardlink out of the root is refused", async () => {
    const hostile = layerFromTar(craftTar([{ name: "h", type: "link", linkname: `${outside}/sentinel` }]));
    await hostilePull(
      "berth/hostile-absolute",
      buildImage({ layers: [hostile] }),
      /failed to extract layer sha256:[0-9a-f]{64}: layer tar entry "h": hardlink target ".*\/outside\/sentinel" does not exist in the layer or below/,
    );
  });

  void test("ctr images pull: diff_ids that lie are caught by the client from Apply's answer", async () => {
    const real = layerFromTar(craftTar([{ name: "f", content: "real" }]));
    const lie = { ...real, diffId: sha256(Buffer.from("not this layer")) };
    await hostilePull(
      "berth/lying-diffid",
      buildImage({ layers: [lie] }),
      // containerd's unpacker names the diffID it got back from Apply.
      new RegExp(`ctr: wrong diff id calculated on extraction "${real.diffId}"`),
    );
  });

  void test("the refusals' messages", () => {
    // Printed for the record (one per case and message), so a reviewer sees what a user sees.
    for (const line of [...seen].sort())
      console.log(`  ${line.length > 240 ? `${line.slice(0, 240)}…` : line}`);
    assert.ok(seen.size >= REFUSED.length);
  });
});
