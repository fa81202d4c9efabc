// Raw requests to the control API, below the HTTP client: what a confused or hostile local
// program might send. Used by the API's fuzzing tests (in process and against the daemon),
// with a guest that shows its VM is still alive afterwards.
import { connect } from "node:net";
import type { ApiClient } from "../../host/api/api";
import { prng } from "../prng";

/** M-mode, no firmware (load at 0x80000000): copies every byte the UART receives back to it. */
export const ECHO_GUEST = `
  li t0, 0x10000000
1:
  lbu t1, 5(t0)
  andi t1, t1, 1
  beqz t1, 1b
  lbu t2, 0(t0)
  sb t2, 0(t0)
  j 1b
`;

/** Type `text` on the VM's console and wait for it to come back. */
export async function consoleEchoes(client: ApiClient, name: string, text: string): Promise<void> {
  const con = await client.console(name);
  let seen = "";
  con.on("data", (d: Buffer) => { seen += d.toString("latin1"); });
  con.write(text);
  const t0 = Date.now();
  while (!seen.includes(text)) {
    if (Date.now() - t0 > 10_000) throw new Error(`${name}'s console did not echo '${text}'; it sent: ${JSON.stringify(seen.slice(-200))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  con.destroy();
}

/** A probe: bytes sent in these writes, then how the client leaves. */
export interface Probe {
  label: string;
  writes: Buffer[];
  /**
   * "read": wait for the answer; "half-close": send FIN, then read; "destroy": close at once, so
   * that the daemon's answer meets a closed socket (EPIPE: a Unix socket's reset).
   */
  then: "read" | "half-close" | "destroy";
}

/**
 * Send `writes` on a fresh connection to `socketPath` and collect what comes back until the
 * server closes or has been silent for `idleMs` (a request waiting for more body never ends).
 */
export function exchange(socketPath: string, writes: (Buffer | string)[], then: Probe["then"] = "read", idleMs = 300): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect(socketPath);
    let idle: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(idle);
      s.destroy();
      resolve(Buffer.concat(chunks).toString("latin1"));
    };
    const quiet = () => { clearTimeout(idle); idle = setTimeout(done, idleMs); };
    s.on("data", (d: Buffer) => { chunks.push(d); quiet(); });
    s.on("error", done); // the server may reset a connection it refuses
    s.on("close", done);
    s.on("connect", () => {
      for (const w of writes) s.write(w);
      if (then === "destroy") return done();
      if (then === "half-close") s.end();
      quiet();
    });
  });
}

/** The status codes of every response in `reply` (pipelined requests get several). */
export const statuses = (reply: string) => [...reply.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

// Uniform in [0, 1), seeded: good enough to pick from lists.
function rng(seed: number): () => number {
  const next = prng(seed);
  return () => next() / 2 ** 32;
}

/**
 * Malformed requests: first a fixed set that covers every kind once (bad percent-encodings,
 * odd targets, bad methods and versions, header injection, huge headers, bad framing, bodies
 * that are not JSON or not the right JSON, console upgrades gone wrong, pipelining, half-closed
 * and reset connections), then random combinations of their parts up to `count`.
 *
 * `vm` names a VM that must survive: nothing here may stop or destroy it even if well formed
 * (it is only the target of console upgrades, unknown actions and moves with bad bodies).
 */
export function malformedRequests(count: number, seed: number, vm: string): Probe[] {
  const random = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));

  const targets = [
    "%", "/%", "/%zz", "/%e0%80", "/vms/%", "/vms/%zz/stats", "/vms/%c0%af/console", "/vms/%ff%fe",
    "//", "///", "//vms//", "http://a/b", "http://x/vms/%/console", "https://[::1/vms", "*",
    "/vms/..", "/vms/../host", "/vms/%2e%2e/console", "/vms/%2F/console", "/host?%", "/vms?x=%zz#%",
    "/" + "a".repeat(20_000), "/vms/" + "%41".repeat(3000), "/vms/ghost/console", "/vms/ghost/start",
    "/vms/ghost/move", "/vms/\xff", "/vms/a b", "", `/vms/${vm}/frobnicate`, `/vms/${vm}/%`, "/vms/x/y/z/w",
  ];
  const methods = ["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "CONNECT", "BREW", "", "G\0T", "get", "GET GET"];
  const versions = ["HTTP/1.1", "HTTP/1.0", "HTTP/9.9", "HTTP/1.1 extra", "", "FOO"];
  const headerSets: string[][] = [
    [], ["Host: x"],
    ["X: a\rInjected: b"], ["X: a\nY: b"], ["Bad Header"], [" Leading: space"], ["X : y"], ["Host: a", "Host: b"], ["X: \0"],
    ["X-Big: " + "b".repeat(70_000)], Array.from({ length: 2000 }, (_, i) => `X-${i}: v`),
    ["Content-Length: -1"], ["Content-Length: abc"], ["Content-Length: 5", "Content-Length: 6"],
    ["Content-Length: 99999999999999999999"], ["Content-Length: 10"],
    ["Transfer-Encoding: chunked"], ["Transfer-Encoding: chunked", "Content-Length: 3"], ["Transfer-Encoding: gzip, chunked"],
    ["Expect: 100-continue", "Content-Length: 2"], ["Expect: teapot"],
  ];
  const upgradeSets: string[][] = [
    ["Connection: Upgrade", "Upgrade: wasmvisor-console"], ["Upgrade: wasmvisor-console"],
    ["Connection: Upgrade", "Upgrade: websocket"], ["Connection: Upgrade", "Upgrade:"],
    ["Connection: Upgrade, keep-alive", "Upgrade: wasmvisor-console, h2c"], ["Connection: upgrade", "Upgrade: WASMVISOR-CONSOLE"],
  ];
  const consoleTargets = ["/vms/ghost/console", "/vms/%/console", "/vms/../console", "/vms/%2e%2e/console", "//", "/vms/%zz/console", `/vms/${vm}/console`, "http://x/vms/%/console"];
  const chunkedBodies = ["zz\r\nabc\r\n0\r\n\r\n", "ffffffffffffffffffff\r\nabc\r\n", "5\r\nabc\r\n", "3;ext=\0\r\nabc\r\n0\r\n\r\n", "-1\r\n\r\n", "0\r\n\r\n", "3\r\n{}\n\r\n0\r\n\r\n"];
  const definitionBodies = [
    "not json", "{", "[]", "null", "1", "\"str\"", "{\"name\":5}", "{\"name\":\"x y\"}", "{\"name\":\"../x\"}",
    "{\"name\":\"bad-memory\",\"memory\":\"lots\"}", "{\"name\":\"bad-smp\",\"smp\":1e309}", "{\"__proto__\":{\"name\":\"p\"}}",
    "[".repeat(5000) + "]".repeat(5000), "{\"name\":\"bad-kernel\",\"kernel\":\"/nonexistent/kernel\"}",
  ];
  const moveBodies = ["{\"pcpu\":\"0\"}", "{\"pcpu\":-1}", "{\"pcpu\":1.5}", "{\"pcpu\":1e309}", "{\"pcpu\":99}", "[]", "null", "{}", "{\"pcpu\":null}", "nope"];

  const request = (method: string, target: string, version: string, headers: string[], body = "") =>
    `${method} ${target} ${version}\r\n${headers.map((h) => h + "\r\n").join("")}\r\n${body}`;
  const withLength = (method: string, target: string, body: string, extra: string[] = []) =>
    request(method, target, "HTTP/1.1", [...extra, `Content-Length: ${Buffer.byteLength(body)}`], body);
  const probe = (label: string, text: string | Buffer, then: Probe["then"] = "read"): Probe =>
    ({ label, writes: [typeof text === "string" ? Buffer.from(text, "latin1") : text], then });

  const fixed: Probe[] = [
    ...targets.map((t) => probe(`GET ${t.slice(0, 40)}`, request("GET", t, "HTTP/1.1", []))),
    ...consoleTargets.flatMap((t) => upgradeSets.map((u) => probe(`upgrade ${t} [${u}]`, request("GET", t, "HTTP/1.1", u)))),
    ...consoleTargets.map((t) => probe(`upgrade ${t}, then closed`, request("GET", t, "HTTP/1.1", upgradeSets[0], "typed ahead"), "destroy")),
    ...consoleTargets.map((t) => probe(`upgrade ${t}, then half-close`, request("GET", t, "HTTP/1.1", upgradeSets[0]), "half-close")),
    ...methods.map((m) => probe(`method '${m}'`, request(m, "/host", "HTTP/1.1", []))),
    ...versions.map((v) => probe(`version '${v}'`, request("GET", "/vms", v, []))),
    ...headerSets.map((h) => probe(`headers ${h.join(" | ").slice(0, 60)}`, request("POST", "/vms", "HTTP/1.1", h, "{}"))),
    ...chunkedBodies.map((b) => probe(`chunked ${JSON.stringify(b)}`, request("POST", "/vms", "HTTP/1.1", ["Transfer-Encoding: chunked"], b))),
    ...definitionBodies.map((b) => probe(`definition ${b.slice(0, 40)}`, withLength("POST", "/vms", b))),
    ...moveBodies.map((b) => probe(`move ${b}`, withLength("POST", `/vms/${vm}/move`, b))),
    probe("body larger than the limit", withLength("POST", "/vms", "x".repeat(1.5 * 2 ** 20))),
    probe("body shorter than its Content-Length", request("POST", "/vms", "HTTP/1.1", ["Content-Length: 100"], "{}")),
    probe("pipelined: good, bad, good", request("GET", "/host", "HTTP/1.1", []) + request("GET", "/vms/%zz", "HTTP/1.1", []) + request("GET", "/vms", "HTTP/1.1", [])),
    probe("pipelined after an upgrade", request("GET", "/vms/%/console", "HTTP/1.1", upgradeSets[0]) + request("GET", "/host", "HTTP/1.1", [])),
    probe("half a request line, then FIN", "GET /ho", "half-close"),
    probe("headers cut off, then FIN", "GET /host HTTP/1.1\r\nHost: x", "half-close"),
    probe("a body cut off, then closed", request("POST", "/vms", "HTTP/1.1", ["Content-Length: 50"], "{\"na"), "destroy"),
    probe("nothing at all, then FIN", "", "half-close"),
    probe("only CRLFs", "\r\n".repeat(5000)),
    probe("TLS hello", Buffer.from("160301020001000001fc0303", "hex")),
  ];

  const randomProbe = (i: number): Probe => {
    const then = pick(["read", "read", "read", "half-close", "destroy"] as const);
    let text: Buffer;
    switch (i % 5) {
      case 0: text = bytes(1 + Math.floor(random() * 4096)); break;
      case 1: text = Buffer.from(request(pick(methods), pick(targets), pick(versions), pick(headerSets), random() < 0.5 ? "" : bytes(64).toString("latin1")), "latin1"); break;
      case 2: text = Buffer.from(request("GET", pick(consoleTargets), "HTTP/1.1", pick(upgradeSets), random() < 0.5 ? "" : bytes(32).toString("latin1")), "latin1"); break;
      case 3: text = Buffer.from(random() < 0.5
        ? withLength("POST", "/vms", pick(definitionBodies))
        : request("POST", pick(["/vms", `/vms/${vm}/move`]), "HTTP/1.1", ["Transfer-Encoding: chunked"], pick(chunkedBodies)), "latin1"); break;
      default: text = Buffer.from(Array.from({ length: 2 + Math.floor(random() * 4) }, () =>
        pick([request("GET", "/host", "HTTP/1.1", []), request("GET", pick(targets), "HTTP/1.1", []), withLength("POST", `/vms/${vm}/move`, pick(moveBodies))])).join(""), "latin1");
    }
    // Some arrive in pieces, split anywhere.
    const cuts = random() < 0.3 ? [...new Set(Array.from({ length: 3 }, () => Math.floor(random() * text.length)))].sort((a, b) => a - b) : [];
    const writes = [0, ...cuts].map((at, k, all) => text.subarray(at, k + 1 < all.length ? all[k + 1] : text.length)).filter((w) => w.length);
    return { label: `random #${i} (${then}): ${JSON.stringify(text.subarray(0, 60).toString("latin1"))}`, writes, then };
  };
  return [...fixed, ...Array.from({ length: Math.max(0, count - fixed.length) }, (_, i) => randomProbe(i))];
}

/** Run probes `parallel` at a time; resolves with each probe's reply. */
export async function sendAll(socketPath: string, probes: Probe[], parallel = 16): Promise<{ probe: Probe; reply: string }[]> {
  const results: { probe: Probe; reply: string }[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < probes.length) {
      const probe = probes[next++];
      results.push({ probe, reply: await exchange(socketPath, probe.writes, probe.then) });
    }
  }));
  return results;
}

/** Collects, until stop(), what would have ended a real daemon (a test runner catches it instead). */
export function watchUncaught(): { errors: unknown[]; stop(): void } {
  const errors: unknown[] = [];
  const record = (e: unknown) => void errors.push(e);
  process.on("uncaughtException", record);
  process.on("unhandledRejection", record);
  return {
    errors,
    stop: () => {
      process.off("uncaughtException", record);
      process.off("unhandledRejection", record);
    },
  };
}
