// Applies an OCI layer tar to a directory the way containerd 1.6's archive.Apply does, with every
// write made through file descriptors: each entry's parent directory is opened with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) on the root, and the entry itself is created,
// replaced and given its metadata by (dirfd, single name) calls that never follow a final symlink.
// Whatever the archive holds (absolute names, "..", symlinks planted earlier in the same layer),
// nothing is written outside the root. Runs synchronously per chunk (inside a diff worker).
import {
  chmodSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  readdirSync,
  writeSync,
  type BigIntStats,
} from "node:fs";
import { Readable } from "node:stream";
import { BerthError, canceled, invalidArgument } from "../../errdefs/errors.js";
import { SysError, hasCode } from "../../sys/errno.js";
import {
  AT,
  O,
  S,
  close,
  fchownat,
  fgetxattr,
  fhasxattr,
  flistxattr,
  fsetxattr,
  futimens,
  linkat,
  lsetxattrAt,
  makedev,
  mkdirat,
  mknodat,
  IN_ROOT,
  RESOLVE,
  openInRoot,
  openat,
  openat2,
  openatRaw,
  readlinkat,
  symlinkat,
  unlinkatRaw,
  utimensat,
  UTIME_OMIT,
  type RawName,
  type TimeSpec,
} from "../../sys/fs-at.js";
import { TarReader, type TarHeader, type TarSink, type TarTime } from "./tar-reader.js";

export interface ApplyTarOptions {
  /**
   * "delete": whiteouts remove what they name (a plain directory, e.g. a bind mount or the native
   * snapshotter). "overlay": root is an overlayfs upperdir; whiteouts become 0:0 character devices
   * and opaque markers the trusted.overlay.opaque xattr, as containerd's OverlayConvertWhiteout.
   */
  whiteouts: "overlay" | "delete";
  /** Lower directories, nearest first: missing parents copy their owner, mode, times, xattrs. */
  parents?: string[];
  /** Most entries the archive may hold (ResourceExhausted beyond). */
  maxEntries?: number;
  /** Most bytes of entry data the archive may hold, a bound on decompression bombs. */
  maxBytes?: number;
  signal?: AbortSignal;
  /** Entries or xattrs skipped as containerd skips them (trusted.* xattrs, ENOTSUP). */
  onWarning?: (message: string) => void;
  /** Record the implied directories (see ApplyTarResult.implied); for unpack-ahead. */
  trackImplied?: boolean;
}

/**
 * The directories an apply created because entries needed them as parents (containerd's mkparent):
 * with parent layers, these take their owner, mode, times and xattrs from the first parent holding
 * the same path. Paths are relative to the root. exact is false when the lists cannot be trusted
 * (a parent resolved through a symlink, or too many of them): an unpack-ahead result is then only
 * used where there are no parent layers.
 */
export interface ImpliedDirs {
  /** Named by no entry of the layer, in the order they were made. */
  dirs: { path: string; /** Had entries made or removed in it after it was made. */ touched: boolean }[];
  /** Made as parents, then named by a directory entry of the layer (which set their attributes). */
  named: string[];
  exact: boolean;
}

export interface ApplyTarResult {
  /** Entries read (every header but PAX and GNU long-name ones). */
  entries: number;
  /** Bytes of entry data, as containerd's Apply reports its size. */
  bytes: number;
  /** With trackImplied. */
  implied?: ImpliedDirs;
}

const WHITEOUT = ".wh.";
const WHITEOUT_META = ".wh..wh.";
const WHITEOUT_OPAQUE = ".wh..wh..opq";
const XATTR_CREATE = 1;
const ENOTSUP = 95;
const ENODATA = 61;
/** Writes this large go straight to the file; smaller ones are gathered first. */
const DIRECT_WRITE = 64 * 1024;
const STAGING = 1 << 20;
const MAX_CACHED_DIRS = 128;
const MAX_SYMLINKS = 40;
/** Implied directories tracked at most (beyond, the lists are not exact and tracking stops). */
const MAX_IMPLIED = 1024;
/** Go's time.Unix(0, 1<<63-1): later times are bounded to the epoch, as containerd does. */
const MAX_TIME_SEC = 9223372036;
const MAX_TIME_NSEC = 854775807;

/**
 * Applies the tar read from input to root and returns how many entries and data bytes it held.
 * Stops reading at the tar's end-of-archive blocks, leaving anything after them in input.
 */
export async function applyTar(
  input: AsyncIterable<Uint8Array> | Readable,
  root: string,
  opts: ApplyTarOptions,
): Promise<ApplyTarResult> {
  const signal = opts.signal;
  if (signal?.aborted) throw canceled();
  const applier = new Applier(root, opts);
  const reader = new TarReader(applier);
  const iterator = (input as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]();
  try {
    while (!reader.done) {
      const next = await iterator.next();
      if (signal?.aborted) throw canceled();
      if (next.done === true) {
        reader.end();
        break;
      }
      const value = next.value;
      if (typeof value === "string") throw invalidArgument("layer tar stream yielded text, not bytes");
      reader.push(
        Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength),
      );
    }
    applier.finish();
    const implied = applier.impliedDirs();
    return { entries: applier.entries, bytes: applier.bytes, ...(implied ? { implied } : {}) };
  } catch (err) {
    if (input instanceof Readable) input.destroy();
    throw err;
  } finally {
    applier.close();
  }
}

interface Dir {
  fd: number;
  /** st_dev:st_ino of the directory, the identity used for opaque bookkeeping. */
  id: string;
  /**
   * The owner every regular file created here gets, learned from the first one (undefined: none
   * created yet; null: this directory's files get chown and chmod always). Set only when that
   * file's mode came out as its open mode less the umask and the directory has no default ACL,
   * so that later files' modes are known too. It depends on the process's credentials, the
   * directory's group and set-group-ID bit and the mount, none of which an apply changes but
   * through a directory entry, which forgets it (see directory()).
   */
  created?: { uid: number; gid: number } | null;
}

interface DirTimes {
  name: string;
  dev: bigint;
  ino: bigint;
  atime: TimeSpec;
  mtime: TimeSpec;
}

interface OpenFile {
  fd: number;
  header: TarHeader;
  /** Owner and mode it was created with, when known without asking the kernel (see Dir.created). */
  created: { uid: number; gid: number; mode: number } | null;
}

/** The process's umask, read once (a worker may read it, not set it). */
let umaskValue: number | undefined;
function umask(): number {
  umaskValue ??= process.umask();
  return umaskValue;
}

function errnoOf(err: unknown): number | undefined {
  return err instanceof SysError ? err.errno : undefined;
}

/** containerd's cleaned name, with ".." clamped at the root: [] when it names the root. */
export function entryComponents(name: string): string[] {
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return out;
}

/** filepath.Clean of a relative or absolute path, as components ("..": only leading ones kept). */
function cleanLexically(path: string): string[] {
  const out: string[] = [];
  const rooted = path.startsWith("/");
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." && out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (part === ".." && rooted) continue;
    else out.push(part);
  }
  return out;
}

function isLater(a: TarTime, b: TarTime): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}

/** containerd's boundTime: times before the epoch or past Go's range become the epoch. */
function bound(t: TarTime): TimeSpec {
  if (t.sec < 0 || t.sec > MAX_TIME_SEC || (t.sec === MAX_TIME_SEC && t.nsec > MAX_TIME_NSEC))
    return { sec: 0, nsec: 0 };
  return { sec: t.sec, nsec: t.nsec };
}

function entryTimes(h: TarHeader): { atime: TimeSpec; mtime: TimeSpec } {
  const latest = h.atime !== undefined && isLater(h.atime, h.mtime) ? h.atime : h.mtime;
  return { atime: bound(latest), mtime: bound(h.mtime) };
}

/** Turns a failure on one entry into a BerthError that names the entry. */
function entryError(name: string, err: unknown): BerthError {
  const what = `layer tar entry ${JSON.stringify(name)}`;
  if (err instanceof BerthError) {
    if (err.code === "canceled" || err.code === "resource-exhausted") return err;
    return new BerthError(err.code, `${what}: ${err.message}`, { cause: err });
  }
  if (err instanceof SysError || hasCode(err, "ENOSPC")) {
    const code = (err as { code: string }).code;
    const message = (err as Error).message;
    if (code === "ENOSPC" || code === "EDQUOT" || code === "EMFILE" || code === "ENFILE")
      return new BerthError("resource-exhausted", `${what}: ${message}`, { cause: err });
    if (code === "EIO") return new BerthError("unknown", `${what}: ${message}`, { cause: err });
    return invalidArgument(`${what}: ${message}`, err);
  }
  return new BerthError("unknown", `${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

function resourceExhausted(message: string): BerthError {
  return new BerthError("resource-exhausted", message);
}

/**
 * Opens rel in the first of parentFds holding it as a directory and passes the fd to use. Nothing
 * happens when no parent has it, or when the nearest parent holding the name has a non-directory.
 */
function withParentDir(parentFds: readonly number[], rel: string, use: (lfd: number) => void): void {
  for (const pfd of parentFds) {
    let lfd: number;
    try {
      lfd = openInRoot(pfd, rel, O.RDONLY | O.DIRECTORY);
    } catch (err) {
      if (hasCode(err, "ENOENT")) continue;
      if (hasCode(err, "ENOTDIR")) return; // replaced by a non-directory: keep the defaults
      throw err;
    }
    try {
      use(lfd);
    } finally {
      close(lfd);
    }
    return;
  }
}

/** The xattrs copyUpXAttrs copies from a parent directory: all but trusted.* (none where unsupported). */
function copyableXattrs(lfd: number): string[] {
  try {
    return flistxattr(lfd).filter((k) => !k.startsWith("trusted."));
  } catch (err) {
    if (errnoOf(err) !== ENOTSUP && errnoOf(err) !== ENODATA) throw err;
    return [];
  }
}

/**
 * containerd's copyDirInfo + copyUpXAttrs: the directory fd (at rel in the layer) takes owner,
 * mode, times and xattrs (but trusted.*) from the first of parentFds holding rel. keepMtime leaves
 * fd's modification time as it is (unpack-ahead: what the files created in it since have made it).
 */
export function copyParentDirInfo(
  parentFds: readonly number[],
  rel: string,
  fd: number,
  keepMtime: boolean,
): void {
  withParentDir(parentFds, rel, (lfd) => {
    const st = fstatSync(lfd, { bigint: true });
    fchownSync(fd, Number(st.uid), Number(st.gid));
    fchmodSync(fd, Number(st.mode) & 0o7777);
    futimens(
      fd,
      { sec: st.atimeNs / 1_000_000_000n, nsec: Number(st.atimeNs % 1_000_000_000n) },
      keepMtime
        ? { sec: 0, nsec: UTIME_OMIT }
        : { sec: st.mtimeNs / 1_000_000_000n, nsec: Number(st.mtimeNs % 1_000_000_000n) },
    );
    for (const key of copyableXattrs(lfd)) {
      try {
        fsetxattr(fd, key, fgetxattr(lfd, key), XATTR_CREATE);
      } catch (err) {
        const e = errnoOf(err);
        if (e !== ENOTSUP && e !== ENODATA && !hasCode(err, "EEXIST")) throw err;
      }
    }
  });
}

/**
 * What copyParentDirInfo would bring to the directory at rel from its parent layer beyond owner,
 * mode and times: shapesChildren when the parent's directory shapes what is created inside it (a
 * set-group-ID bit, a default ACL), copiesXattrs when it has xattrs to copy. Neither when no
 * parent layer has a directory there.
 */
export function parentDirInfluence(
  parentFds: readonly number[],
  rel: string,
): { shapesChildren: boolean; copiesXattrs: boolean } {
  const out = { shapesChildren: false, copiesXattrs: false };
  withParentDir(parentFds, rel, (lfd) => {
    const mode = Number(fstatSync(lfd).mode);
    out.shapesChildren = (mode & 0o2000) !== 0 || fhasxattr(lfd, "system.posix_acl_default");
    out.copiesXattrs = copyableXattrs(lfd).length > 0;
  });
  return out;
}

class Applier implements TarSink {
  entries = 0;
  bytes = 0;

  private rootfd: number;
  private readonly parentFds: number[] = [];
  private readonly cache = new Map<string, Dir>();
  /** Delete mode: the directory entries this layer wrote, as "<dir id>/<name>". */
  private readonly unpacked: Set<string> | null;
  private readonly dirs: DirTimes[] = [];
  private readonly staging = Buffer.allocUnsafe(STAGING);
  private stagingFill = 0;
  private file: OpenFile | null = null;
  /** The parent in use by the current entry: kept open across cache invalidations. */
  private pinned: Dir | null = null;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  /** With trackImplied: implied directories (paths in the root), in creation order. */
  private readonly implied: Set<string> | null;
  private readonly impliedTouched = new Set<string>();
  private readonly impliedNamed = new Set<string>();
  private impliedExact = true;
  /** The path (in the root) of the entry being applied, and of its parent directory. */
  private entryPath = "";
  private entryParent = "";

  constructor(
    root: string,
    private readonly opts: ApplyTarOptions,
  ) {
    this.maxEntries = opts.maxEntries ?? Number.POSITIVE_INFINITY;
    this.maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY;
    this.unpacked = opts.whiteouts === "delete" ? new Set() : null;
    this.implied = opts.trackImplied === true ? new Set() : null;
    this.rootfd = openat(AT.FDCWD, root, O.RDONLY | O.DIRECTORY);
    try {
      for (const p of opts.parents ?? []) this.parentFds.push(openat(AT.FDCWD, p, O.PATH | O.DIRECTORY));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  // ---- TarSink ----

  entry(h: TarHeader): void {
    this.entries++;
    if (this.entries > this.maxEntries)
      throw resourceExhausted(`layer tar has more than ${this.maxEntries} entries`);
    if (h.size > 0) {
      if (this.bytes + h.size > this.maxBytes)
        throw resourceExhausted(
          `layer tar holds more than ${this.maxBytes} bytes of data (entry ${JSON.stringify(h.name)} brings it to ${this.bytes + h.size})`,
        );
      this.bytes += h.size;
    }
    if (this.opts.signal?.aborted) throw canceled();
    try {
      this.apply(h);
    } catch (err) {
      throw entryError(h.name, err);
    } finally {
      this.pinned = null;
    }
  }

  data(chunk: Buffer): void {
    const file = this.file;
    if (file === null) return;
    try {
      if (chunk.length >= DIRECT_WRITE) {
        this.flush(file.fd);
        writeAll(file.fd, chunk);
      } else {
        if (this.stagingFill + chunk.length > STAGING) this.flush(file.fd);
        chunk.copy(this.staging, this.stagingFill);
        this.stagingFill += chunk.length;
      }
    } catch (err) {
      throw entryError(file.header.name, err);
    }
  }

  entryEnd(): void {
    const file = this.file;
    if (file === null) return;
    this.file = null;
    try {
      this.flush(file.fd);
      const h = file.header;
      const c = file.created;
      // A new file's chown that changes nothing has no effect (no set-ID bits, capabilities or
      // ACLs yet to drop); chmod is skipped when the mode is already right and no xattr (an ACL)
      // may change it.
      if (c === null || c.uid !== h.uid || c.gid !== h.gid) fchownSync(file.fd, h.uid, h.gid);
      this.setXattrs(h, (key, value) => fsetxattr(file.fd, key, value));
      if (c === null || h.xattrs.length > 0 || c.mode !== (h.mode & 0o7777))
        fchmodSync(file.fd, h.mode & 0o7777);
      const { atime, mtime } = entryTimes(h);
      futimens(file.fd, atime, mtime);
    } catch (err) {
      throw entryError(file.header.name, err);
    } finally {
      close(file.fd);
    }
  }

  // ---- entries ----

  private apply(h: TarHeader): void {
    if (h.sparse) throw invalidArgument("sparse files are not supported");
    if (h.type === "unsupported")
      throw invalidArgument(
        `unhandled tar header type ${h.typeflag} (${JSON.stringify(String.fromCharCode(h.typeflag))})`,
      );
    const comps = entryComponents(h.name);
    // containerd: "file ignored: resolved to root".
    if (comps.length === 0) return;
    const base = comps[comps.length - 1]!;
    const parent = comps.slice(0, -1);
    this.entryPath = comps.join("/");
    this.entryParent = parent.join("/");

    if (base.startsWith(WHITEOUT)) {
      if (base !== WHITEOUT_OPAQUE && base.startsWith(WHITEOUT_META)) {
        this.opts.onWarning?.(`${h.name}: whiteout metadata entry ignored`);
        return;
      }
      const original = base.slice(WHITEOUT.length);
      if (base !== WHITEOUT_OPAQUE && (original === "" || original === "." || original === ".."))
        throw invalidArgument(`invalid whiteout name: ${base}: invalid archive`);
      const dir = this.parentDir(parent);
      if (base === WHITEOUT_OPAQUE) this.opaque(dir);
      else {
        this.entryPath = [...parent, original].join("/");
        // Deleted, or hidden under a whiteout device: no longer an implied directory either way.
        this.forgetImplied();
        this.whiteout(dir, original, h);
        this.touchImplied(this.entryParent);
      }
      return;
    }
    // A directory the layer names itself is not implied, even when an earlier entry made it.
    if (h.type === "dir" && this.implied?.delete(this.entryPath) === true)
      this.impliedNamed.add(this.entryPath);

    if (h.uid < 0 || h.uid > 0xfffffffe || h.gid < 0 || h.gid > 0xfffffffe)
      throw invalidArgument(`uid/gid ${h.uid}/${h.gid} out of range`);
    const dir = this.parentDir(parent);
    switch (h.type) {
      case "file": {
        // Created with its permission bits, so that chmod is only needed when the umask (or a
        // set-ID or sticky bit) is in the way.
        const mode = h.mode & 0o777;
        const fd = this.create(dir, base, () =>
          openat(dir.fd, base, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, mode),
        );
        this.file = { fd, header: h, created: null };
        this.file.created = this.createdAs(dir, fd, mode);
        break;
      }
      case "dir":
        this.directory(dir, base, comps, h);
        break;
      case "symlink":
        this.create(dir, base, () => symlinkat(h.linkname, dir.fd, base));
        this.metadataAt(dir, base, h, false);
        break;
      case "link":
        this.hardlink(dir, base, h);
        break;
      case "char":
      case "block":
      case "fifo": {
        const kind = h.type === "char" ? S.IFCHR : h.type === "block" ? S.IFBLK : S.IFIFO;
        if (h.devmajor < 0 || h.devmajor > 0xffffffff || h.devminor < 0 || h.devminor > 0xffffffff)
          throw invalidArgument(`device number ${h.devmajor}:${h.devminor} out of range`);
        const dev = makedev(h.devmajor, h.devminor);
        this.create(dir, base, () => mknodat(dir.fd, base, kind | (h.mode & 0o7777), dev));
        this.metadataAt(dir, base, h, true);
        break;
      }
    }
    this.unpacked?.add(`${dir.id}/${base}`);
    if (h.type !== "dir") this.touchImplied(this.entryParent);
  }

  /** Creates base in dir; an existing entry in the way is removed (with its tree) first. */
  private create<T>(dir: Dir, base: string, make: () => T): T {
    try {
      return make();
    } catch (err) {
      if (!hasCode(err, "EEXIST")) throw err;
    }
    this.forgetImplied();
    this.removeAll(dir, base);
    return make();
  }

  private directory(dir: Dir, base: string, comps: string[], h: TarHeader): void {
    let fd = -1;
    try {
      mkdirat(dir.fd, base, 0o700);
      this.touchImplied(this.entryParent);
    } catch (err) {
      if (!hasCode(err, "EEXIST")) throw err;
      // An existing directory is merged: only its metadata changes. What files created in it
      // get may change with it, under whichever name it is cached.
      for (const d of this.cache.values()) d.created = undefined;
      try {
        fd = openat(dir.fd, base, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      } catch (err2) {
        if (!hasCode(err2, "ENOTDIR") && !hasCode(err2, "ELOOP")) throw err2;
        this.removeAll(dir, base);
        mkdirat(dir.fd, base, 0o700);
      }
    }
    if (fd === -1) fd = openat(dir.fd, base, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    let st: BigIntStats;
    try {
      st = fstatSync(fd, { bigint: true });
      // A chown that changes nothing is skipped (on a directory it has no other effect); chmod is
      // skipped when the mode is already right and no xattr (an ACL) may have changed it.
      if (Number(st.uid) !== h.uid || Number(st.gid) !== h.gid) fchownSync(fd, h.uid, h.gid);
      this.setXattrs(h, (key, value) => fsetxattr(fd, key, value));
      if (h.xattrs.length > 0 || (Number(st.mode) & 0o7777) !== (h.mode & 0o7777))
        fchmodSync(fd, h.mode & 0o7777);
      // Times are set at the end, once nothing more is created inside.
      this.dirs.push({ name: comps.join("/"), dev: st.dev, ino: st.ino, ...entryTimes(h) });
    } catch (err) {
      close(fd);
      throw err;
    }
    // Its entries most likely follow: the descriptor is kept as their parent's.
    this.cacheDir(comps.join("/"), { fd, id: dirId(st) });
  }

  /**
   * The owner and mode of the file fd just created in dir with mode, when dir's earlier files
   * tell; the first file of a directory is looked at (one fstat, and the directory's default ACL).
   */
  private createdAs(dir: Dir, fd: number, mode: number): OpenFile["created"] {
    const expected = mode & ~umask();
    if (dir.created === undefined) {
      dir.created = null;
      const st = fstatSync(fd);
      if ((st.mode & 0o7777) === expected && !fhasxattr(dir.fd, "system.posix_acl_default"))
        dir.created = { uid: st.uid, gid: st.gid };
    }
    return dir.created === null ? null : { ...dir.created, mode: expected };
  }

  /** Caches dir under key (a name as the archive spells it), replacing what was there. */
  private cacheDir(key: string, dir: Dir): void {
    const old = this.cache.get(key);
    if (old !== undefined) {
      this.cache.delete(key);
      if (old !== this.pinned) close(old.fd);
    }
    if (this.cache.size >= MAX_CACHED_DIRS) this.invalidate();
    this.cache.set(key, dir);
  }

  private hardlink(dir: Dir, base: string, h: TarHeader): void {
    // containerd's hardlinkRootPath: the target's parent resolves inside the root, its final
    // component is taken as is (a hardlink to a symlink links the symlink).
    const slash = h.linkname.lastIndexOf("/");
    const targetDir = h.linkname.slice(0, slash + 1);
    const targetBase = h.linkname.slice(slash + 1);
    if (targetBase === "" || targetBase === "." || targetBase === "..")
      throw invalidArgument(`hardlink target ${JSON.stringify(h.linkname)} is a directory`);
    let tfd = -1;
    try {
      tfd = this.openDir(entryComponents(targetDir), false, O.PATH | O.DIRECTORY);
      this.create(dir, base, () => linkat(tfd, targetBase, dir.fd, base, 0));
    } catch (err) {
      if (hasCode(err, "ENOENT") || hasCode(err, "ENOTDIR"))
        throw invalidArgument(
          `hardlink target ${JSON.stringify(h.linkname)} does not exist in the layer or below`,
          err,
        );
      throw err;
    } finally {
      if (tfd !== -1) close(tfd);
    }
    this.metadataAt(dir, base, h, true);
  }

  /** chown, xattrs, chmod (never through a symlink) and times, by name in dir. */
  private metadataAt(dir: Dir, base: string, h: TarHeader, chmod: boolean): void {
    // The O_PATH fd pins the inode looked at here; chmod through /proc/self/fd reaches exactly it.
    const pfd = chmod || h.type === "link" ? openat(dir.fd, base, O.PATH | O.NOFOLLOW) : -1;
    try {
      const st = pfd === -1 ? null : fstatSync(pfd);
      // A hardlink shares its inode with an earlier entry: a no-op chown would still strip the
      // security.capability that entry set (the kernel drops it on every chown).
      // A new symlink already has the owner its directory gives new files, when that is known
      // (see Dir.created): a chown to it would change nothing.
      const known = h.type === "symlink" ? dir.created : undefined;
      const owned = known?.uid === h.uid && known.gid === h.gid;
      if (!owned && (h.type !== "link" || st === null || st.uid !== h.uid || st.gid !== h.gid))
        fchownat(dir.fd, base, h.uid, h.gid, AT.SYMLINK_NOFOLLOW);
      this.setXattrs(h, (key, value) => lsetxattrAt(dir.fd, base, key, value));
      if (chmod && st !== null && (st.mode & S.IFMT) !== S.IFLNK)
        chmodSync(`/proc/self/fd/${pfd}`, h.mode & 0o7777);
    } finally {
      if (pfd !== -1) close(pfd);
    }
    const { atime, mtime } = entryTimes(h);
    utimensat(dir.fd, base, atime, mtime, AT.SYMLINK_NOFOLLOW);
  }

  private setXattrs(h: TarHeader, set: (key: string, value: Buffer) => void): void {
    for (const [key, value] of h.xattrs) {
      // containerd: "admin attributes from archive not supported" (would forge overlay state).
      if (key.startsWith("trusted.")) {
        this.opts.onWarning?.(`${h.name}: ignored xattr ${key} in archive`);
        continue;
      }
      try {
        set(key, value);
      } catch (err) {
        if (errnoOf(err) !== ENOTSUP) throw err;
        this.opts.onWarning?.(`${h.name}: ignored xattr ${key} in archive (not supported)`);
      }
    }
  }

  // ---- whiteouts ----

  private whiteout(dir: Dir, name: string, h: TarHeader): void {
    if (this.opts.whiteouts === "delete") {
      this.removeAll(dir, name);
      return;
    }
    if (h.uid < 0 || h.uid > 0xfffffffe || h.gid < 0 || h.gid > 0xfffffffe)
      throw invalidArgument(`uid/gid ${h.uid}/${h.gid} out of range`);
    mknodat(dir.fd, name, S.IFCHR, 0n);
    fchownat(dir.fd, name, h.uid, h.gid, AT.SYMLINK_NOFOLLOW);
  }

  private opaque(dir: Dir): void {
    if (this.opts.whiteouts === "overlay") {
      fsetxattr(dir.fd, "trusted.overlay.opaque", Buffer.from("y"));
      return;
    }
    // Remove everything below dir that this layer did not write (so far), descending into the
    // directories it did write, as containerd's filepath.Walk over unpackedPaths.
    this.invalidate();
    this.prune(dir.fd, dir.id);
  }

  private prune(fd: number, id: string): void {
    for (const name of readdirSync(`/proc/self/fd/${fd}`, { encoding: "buffer" })) {
      const key = `${id}/${name.toString()}`;
      if (!this.unpacked!.has(key)) {
        removeAllAt(fd, name);
        continue;
      }
      let sub: number;
      try {
        sub = openatRaw(fd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      } catch (err) {
        if (hasCode(err, "ENOTDIR") || hasCode(err, "ELOOP") || hasCode(err, "ENOENT")) continue;
        throw err;
      }
      try {
        this.prune(sub, dirId(fstatSync(sub, { bigint: true })));
      } finally {
        close(sub);
      }
    }
  }

  private removeAll(dir: Dir, name: RawName): void {
    this.invalidate();
    removeAllAt(dir.fd, name);
  }

  // ---- parent directories ----

  /** Opens (creating if missing, as containerd's mkparent) the directory comps names in the root. */
  private parentDir(comps: string[]): Dir {
    const key = comps.join("/");
    let dir = this.cache.get(key);
    if (dir === undefined) {
      const fd = this.openDir(comps, true);
      try {
        dir = { fd, id: dirId(fstatSync(fd, { bigint: true })) };
      } catch (err) {
        close(fd);
        throw err;
      }
      this.cacheDir(key, dir);
    }
    this.pinned = dir;
    return dir;
  }

  /**
   * Opens the directory comps names, resolved as continuity's fs.RootPath resolves it (symlinks
   * followed inside the root, their targets cleaned lexically, missing components taken as plain
   * names); with create, missing directories are made as containerd's mkparent makes them.
   */
  private openDir(comps: string[], create: boolean, flags = O.RDONLY | O.DIRECTORY): number {
    // Fast path: a path without symlinks resolves the same in the kernel and in RootPath.
    try {
      return openat2(this.rootfd, comps.length === 0 ? "." : comps.join("/"), {
        flags,
        resolve: IN_ROOT | RESOLVE.NO_SYMLINKS,
      });
    } catch (err) {
      if (!hasCode(err, "ENOENT") && !hasCode(err, "ELOOP")) throw err;
    }
    const resolved = this.rootPath(comps);
    if (create) this.mkparent(resolved);
    return openInRoot(this.rootfd, resolved.join("/"), flags);
  }

  /**
   * continuity's RootPath, one component at a time: each component is looked at (never followed)
   * from a directory fd opened in the root; a symlink's target replaces it, cleaned lexically,
   * absolute targets restarting at the root and ".." never rising above it.
   */
  private rootPath(comps: string[]): string[] {
    const resolved: string[] = [];
    const pending = comps.slice().reverse();
    let links = 0;
    let missing = false;
    while (pending.length > 0) {
      const c = pending.pop()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        resolved.pop();
        missing = false;
        continue;
      }
      let st: BigIntStats | null = null;
      let dfd = -1;
      try {
        if (!missing) {
          dfd = openInRoot(this.rootfd, resolved.join("/"), O.PATH | O.DIRECTORY);
          const cfd = openat(dfd, c, O.PATH | O.NOFOLLOW);
          try {
            st = fstatSync(cfd, { bigint: true });
          } finally {
            close(cfd);
          }
        }
      } catch (err) {
        if (!hasCode(err, "ENOENT")) {
          if (dfd !== -1) close(dfd);
          throw err;
        }
      }
      if (st === null) {
        // Not there (yet): a plain name, as RootPath treats it.
        if (dfd !== -1) close(dfd);
        missing = true;
        resolved.push(c);
        continue;
      }
      const type = Number(st.mode) & S.IFMT;
      if (type === S.IFLNK) {
        let target: string;
        try {
          target = readlinkat(dfd, c);
        } finally {
          close(dfd);
        }
        if (++links > MAX_SYMLINKS) throw new SysError(40 /* ELOOP */, "resolve", comps.join("/"));
        // Entry paths no longer name what they reach: implied paths cannot be matched to them.
        this.impliedExact = false;
        if (target.startsWith("/")) resolved.length = 0;
        for (const part of cleanLexically(target).reverse()) pending.push(part);
        continue;
      }
      close(dfd);
      if (type !== S.IFDIR) throw new SysError(20 /* ENOTDIR */, "resolve", [...resolved, c].join("/"));
      resolved.push(c);
    }
    return resolved;
  }

  /** containerd's mkparent over a resolved path: missing directories are created 0755. */
  private mkparent(resolved: string[]): void {
    for (let i = 0; i < resolved.length; i++) {
      const c = resolved[i]!;
      const dfd = openInRoot(this.rootfd, resolved.slice(0, i).join("/"), O.PATH | O.DIRECTORY);
      try {
        let type = -1;
        try {
          const cfd = openat(dfd, c, O.PATH | O.NOFOLLOW);
          try {
            type = fstatSync(cfd).mode & S.IFMT;
          } finally {
            close(cfd);
          }
        } catch (err) {
          if (!hasCode(err, "ENOENT")) throw err;
        }
        if (type === S.IFDIR) continue;
        if (type !== -1) throw new SysError(20 /* ENOTDIR */, "mkparent", resolved.slice(0, i + 1).join("/"));
        mkdirat(dfd, c, 0o755);
        const nfd = openat(dfd, c, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
        try {
          fchmodSync(nfd, 0o755);
          const rel = resolved.slice(0, i + 1).join("/");
          this.copyParentInfo(rel, nfd);
          this.touchImplied(resolved.slice(0, i).join("/"));
          this.noteImplied(rel);
        } finally {
          close(nfd);
        }
      } finally {
        close(dfd);
      }
    }
  }

  // ---- implied directories (trackImplied) ----

  private noteImplied(rel: string): void {
    if (this.implied === null || !this.impliedExact) return;
    if (this.implied.size + this.impliedNamed.size >= MAX_IMPLIED) this.impliedExact = false;
    else this.implied.add(rel);
  }

  /** Something was made or removed in the directory at path. */
  private touchImplied(path: string): void {
    if (this.implied?.has(path) === true) this.impliedTouched.add(path);
  }

  /** The entry at entryPath replaces or deletes what was there: implied directories in it go. */
  private forgetImplied(): void {
    const implied = this.implied;
    if (implied === null || !this.impliedExact || implied.size + this.impliedNamed.size === 0) return;
    const path = this.entryPath;
    const prefix = `${path}/`;
    for (const set of [implied, this.impliedNamed, this.impliedTouched])
      for (const p of set) if (p === path || p.startsWith(prefix)) set.delete(p);
  }

  impliedDirs(): ImpliedDirs | undefined {
    if (this.implied === null) return undefined;
    return {
      dirs: [...this.implied].map((path) => ({ path, touched: this.impliedTouched.has(path) })),
      named: [...this.impliedNamed],
      exact: this.impliedExact,
    };
  }

  /** containerd's copyDirInfo + copyUpXAttrs from the first parent layer holding rel. */
  private copyParentInfo(rel: string, fd: number): void {
    copyParentDirInfo(this.parentFds, rel, fd, false);
  }

  /** Drops cached directory fds (after a removal, a cached path may name something else). */
  private invalidate(): void {
    for (const [key, dir] of this.cache) {
      if (dir === this.pinned) continue;
      close(dir.fd);
      this.cache.delete(key);
    }
  }

  // ---- data ----

  private flush(fd: number): void {
    if (this.stagingFill === 0) return;
    const n = this.stagingFill;
    this.stagingFill = 0;
    writeAll(fd, this.staging.subarray(0, n));
  }

  /** Directory times, set last (after their contents), to the directories this layer wrote. */
  finish(): void {
    for (const d of this.dirs) {
      // Still cached: nothing was removed since it was opened (a removal empties the cache), so
      // the name still leads there; no lookup needed. The inode check below holds either way.
      const cached = this.cache.get(d.name);
      let fd: number;
      try {
        fd = cached !== undefined ? cached.fd : this.openDirectory(d.name);
      } catch (err) {
        if (hasCode(err, "ENOENT") || hasCode(err, "ENOTDIR") || hasCode(err, "ELOOP")) continue;
        throw entryError(d.name, err);
      }
      try {
        const st = fstatSync(fd, { bigint: true });
        // Replaced later in the layer (GNU tar checks the same): leave the newcomer alone.
        if (st.dev === d.dev && st.ino === d.ino) futimens(fd, d.atime, d.mtime);
      } catch (err) {
        throw entryError(d.name, err);
      } finally {
        if (cached === undefined) close(fd);
      }
    }
  }

  /** Opens the directory name (as the archive spells it) without following its last component. */
  private openDirectory(name: string): number {
    // Fast path: a path without symlinks resolves the same in the kernel and in RootPath.
    try {
      return openat2(this.rootfd, name, {
        flags: O.RDONLY | O.DIRECTORY,
        resolve: IN_ROOT | RESOLVE.NO_SYMLINKS,
      });
    } catch (err) {
      if (!hasCode(err, "ENOENT") && !hasCode(err, "ELOOP") && !hasCode(err, "ENOTDIR")) throw err;
    }
    const comps = name.split("/");
    const base = comps.pop()!;
    const pfd = this.openDir(comps, false, O.PATH | O.DIRECTORY);
    try {
      return openat(pfd, base, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    } finally {
      close(pfd);
    }
  }

  close(): void {
    if (this.file !== null) {
      close(this.file.fd);
      this.file = null;
    }
    this.pinned = null;
    this.invalidate();
    for (const fd of this.parentFds.splice(0)) close(fd);
    if (this.rootfd >= 0) close(this.rootfd);
    this.rootfd = -1;
  }
}

function dirId(st: BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/** os.RemoveAll of name in dirfd, by fds: a symlink is removed, never followed. */
function removeAllAt(dirfd: number, name: RawName): void {
  try {
    unlinkatRaw(dirfd, name, 0);
    return;
  } catch (err) {
    if (hasCode(err, "ENOENT")) return;
    if (!hasCode(err, "EISDIR") && !hasCode(err, "EPERM")) throw err;
  }
  let fd: number;
  try {
    fd = openatRaw(dirfd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
  } catch (err) {
    if (hasCode(err, "ENOENT")) return;
    throw err;
  }
  try {
    for (const child of readdirSync(`/proc/self/fd/${fd}`, { encoding: "buffer" })) removeAllAt(fd, child);
  } finally {
    close(fd);
  }
  try {
    unlinkatRaw(dirfd, name, AT.REMOVEDIR);
  } catch (err) {
    if (!hasCode(err, "ENOENT")) throw err;
  }
}
