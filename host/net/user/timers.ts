/**
 * Lets the process exit while `timer` is pending: a NIC's timers must not keep a host alive.
 * Node's timers are objects with unref(); a browser's are numbers, with nothing to do.
 */
export function unrefTimer(timer: ReturnType<typeof setTimeout>): void {
  (timer as { unref?: () => void }).unref?.();
}
