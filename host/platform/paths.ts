// Where platforms whose paths are names (in memory, a browser's storage and server) check that a
// path is inside the host's image directories. Node's platform resolves real files instead
// (symbolic links, other users: node/image-files.ts).

/** Throws a one-line Error naming `what` unless `path` is in one of `dirs` (anywhere if undefined). */
export function checkInDirs(path: string, what: string, dirs?: readonly string[]): void {
  // A name with ".." could still name a file outside the directories.
  if (dirs && (path.split("/").includes("..") || !dirs.some((d) => path.startsWith(d.endsWith("/") ? d : `${d}/`)))) {
    throw new Error(`${what} ${path}: not in an image directory of this host (${dirs.join(", ")})`);
  }
}
