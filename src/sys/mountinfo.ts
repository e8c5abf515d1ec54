// /proc/<pid>/mountinfo's text encoding, shared by the mount code and the cgroup lookups.

/** Decodes mountinfo's octal escapes (\040 for a space, \011 tab, \012 newline, \134 backslash). */
export function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
