// wasmvisor's isolation service worker, for sites that cannot set response headers (static hosts
// such as GitHub Pages). wasmvisor needs a cross-origin isolated page (SharedArrayBuffer, Atomics);
// this worker gives every same-origin response in its scope the two headers that make it so:
//
//   Cross-Origin-Opener-Policy: same-origin
//   Cross-Origin-Embedder-Policy: require-corp
//
// Put it beside the page (a service worker controls only pages at or below its own path) and
// register it from the page as docs/EMBEDDING.md shows; the page reloads once to come through it.
// Cross-origin responses pass untouched: under require-corp they load only if their server sends
// Cross-Origin-Resource-Policy or they are fetched with CORS (crossorigin="anonymous").
/* eslint-env serviceworker */

const ISOLATION_HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

// Take over at once: the page that registered this worker reloads to be served by it.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (new URL(request.url).origin !== self.location.origin) return;
  // fetch() refuses this combination (devtools sends it); the browser handles it as without us.
  if (request.cache === "only-if-cached" && request.mode !== "same-origin") return;
  event.respondWith(withIsolation(request));
});

async function withIsolation(request) {
  const response = await fetch(request);
  // Opaque responses (a redirect the page follows itself) have no headers to add to.
  if (response.type === "opaqueredirect" || response.status === 0) return response;
  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(ISOLATION_HEADERS)) headers.set(name, value);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}
