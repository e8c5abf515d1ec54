// posix_spawn(3): starting a program without fork(2). Node's child_process forks the whole
// process (libuv's fork, then exec in the child): for a Node process of 60 MB that is a page-table
// copy and copy-on-write faults, ~1.5-3 ms of the event loop per spawn. glibc's posix_spawn clones
// with CLONE_VM | CLONE_VFORK instead: the child borrows the parent's memory until it execs, in a
// fraction of that. The caller reaps the child itself (it is not libuv's): the shim's reaper
// watches it through a pidfd.
import { libc } from "./libc.js";
import { SysError } from "./errno.js";

const posixSpawnCall = libc.func(
  "int posix_spawn(_Out_ int *pid, const char *path, void *actions, void *attr, const char **argv, const char **envp)",
);
const actionsInit = libc.func("int posix_spawn_file_actions_init(void *actions)");
const actionsDestroy = libc.func("int posix_spawn_file_actions_destroy(void *actions)");
const actionsAddDup2 = libc.func("int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)");
const actionsAddOpen = libc.func(
  "int posix_spawn_file_actions_addopen(void *actions, int fd, const char *path, int oflag, uint32_t mode)",
);
const attrInit = libc.func("int posix_spawnattr_init(void *attr)");
const attrDestroy = libc.func("int posix_spawnattr_destroy(void *attr)");
const attrSetFlags = libc.func("int posix_spawnattr_setflags(void *attr, short flags)");
const attrSetSigDefault = libc.func("int posix_spawnattr_setsigdefault(void *attr, void *set)");
const attrSetSigMask = libc.func("int posix_spawnattr_setsigmask(void *attr, void *set)");
const sigEmptySet = libc.func("int sigemptyset(void *set)");

// glibc's posix_spawn_file_actions_t is 80 bytes, posix_spawnattr_t 336, sigset_t 128 (x86-64
// and arm64): the buffers are larger than any of them.
const ACTIONS_SIZE = 256;
const ATTR_SIZE = 512;
const SIGSET_SIZE = 128;

const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const O_RDWR = 2;

/**
 * Every signal, glibc's own two (SIGCANCEL, SIGSETXID: 32 and 33) included, which its sigfillset
 * leaves out and its posix_spawn would otherwise leave ignored across the exec (a Go program such
 * as runc keeps them so, and hands them on to the container). Signal n is bit n - 1.
 */
const allSignals = Buffer.alloc(SIGSET_SIZE, 0xff);
const noSignals = Buffer.alloc(SIGSET_SIZE);
sigEmptySet(noSignals);

/** What the child gets on fds 0, 1 and 2: a descriptor of ours (dup2'ed), or /dev/null. */
export type SpawnStdio = readonly [number | null, number | null, number | null];

function checkRet(r: number, what: string, path?: string): void {
  if (r !== 0) throw new SysError(r, what, path);
}

/**
 * Starts path (an absolute path: no PATH search) with argv (argv[0] included) and env ("K=V"
 * strings), its fds 0-2 as stdio says and no other descriptor (everything of ours is
 * close-on-exec), every signal at its default disposition and none blocked (as libuv does for its
 * children). Returns the pid. Throws SysError with the exec's errno (ENOENT, EACCES, ...) when the
 * program cannot be started: glibc reports the child's exec failure to the caller.
 */
export function posixSpawn(
  path: string,
  argv: readonly string[],
  env: readonly string[],
  stdio: SpawnStdio,
): number {
  // A source fd among 0-2 could be overwritten by an earlier dup2 of the same call.
  for (const fd of stdio) if (fd !== null && fd < 3) throw new SysError(22 /* EINVAL */, "posix_spawn", path);
  const actions = Buffer.alloc(ACTIONS_SIZE);
  const attr = Buffer.alloc(ATTR_SIZE);
  checkRet(actionsInit(actions) as number, "posix_spawn_file_actions_init");
  try {
    checkRet(attrInit(attr) as number, "posix_spawnattr_init");
    try {
      stdio.forEach((fd, target) => {
        checkRet(
          (fd === null
            ? actionsAddOpen(actions, target, "/dev/null", O_RDWR, 0)
            : actionsAddDup2(actions, fd, target)) as number,
          "posix_spawn_file_actions",
        );
      });
      checkRet(attrSetSigDefault(attr, allSignals) as number, "posix_spawnattr_setsigdefault");
      checkRet(attrSetSigMask(attr, noSignals) as number, "posix_spawnattr_setsigmask");
      checkRet(
        attrSetFlags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK) as number,
        "posix_spawnattr_setflags",
      );
      const pid = [0];
      checkRet(
        posixSpawnCall(pid, path, actions, attr, [...argv, null], [...env, null]) as number,
        "posix_spawn",
        path,
      );
      return pid[0] as number;
    } finally {
      attrDestroy(attr);
    }
  } finally {
    actionsDestroy(actions);
  }
}
