// The examples of docs/EMBEDDING.md, for the tests that run them as they are written there.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../host/platform/node/core";

/** The code block of docs/EMBEDDING.md after its `<!-- example: name ... -->` marker. */
export function guideExample(name: string): string {
  const guide = readFileSync(join(packageRoot(), "docs/EMBEDDING.md"), "utf8");
  const m = new RegExp(`<!-- example: ${name}\\b[^>]*-->\\n\`\`\`\\w*\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(guide);
  if (!m) throw new Error(`docs/EMBEDDING.md has no example '${name}'`);
  return `${m[1]}\n`;
}
