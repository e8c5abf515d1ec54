// A mount as containerd's API carries it (containerd.types.Mount): what to mount, not where.
export interface Mount {
  /** File system type: "bind", "overlay", "tmpfs", ... */
  type: string;
  source: string;
  /** Subdirectory of the mount point (containerd 1.7+ field; empty in 1.6). */
  target?: string;
  /** fstab-style options: "rbind", "ro", "lowerdir=...", ... */
  options: string[];
}
