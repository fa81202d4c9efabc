// A turn of the event loop for a pCPU's run loop, on any platform: a message to ourselves (a
// macrotask without the timers' clamping: setTimeout(0) waits 1-4 ms, and browsers clamp a timer
// set from a timer to 4 ms). Every ~20 ms the turn also waits for a timer, set from the message's
// task so that it is not clamped: a thread that only yields through messages starves timers and
// I/O (Node handles messages posted while its port is drained in the same batch; a browser
// worker lets timers and sockets wait tens of milliseconds).
const channel = typeof MessageChannel === "function" ? new MessageChannel() : null;
const waiting: (() => void)[] = [];
if (channel) {
  channel.port1.onmessage = () => waiting.shift()?.();
  // Node: an idle port must not keep the process alive.
  (channel.port1 as { unref?: () => void }).unref?.();
  (channel.port2 as { unref?: () => void }).unref?.();
}

let lastFullTurn = 0;
export function yieldTurn(): Promise<void> {
  const now = performance.now();
  const full = now - lastFullTurn >= 20;
  if (full) lastFullTurn = now;
  if (!channel) return new Promise((resolve) => setTimeout(resolve, 0));
  return new Promise((resolve) => {
    waiting.push(full ? () => setTimeout(resolve, 0) : resolve);
    channel.port2.postMessage(0);
  });
}
