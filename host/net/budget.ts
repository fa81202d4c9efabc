/**
 * How many host sockets a VM's guest may make the host open. One budget is shared by all of a
 * VM's user-mode NICs, so a VM with several NICs cannot multiply its share of the process's
 * file descriptors.
 */

/** Host sockets one VM may hold when nobody says otherwise. */
export const DEFAULT_VM_SOCKETS = 128;

export class SocketBudget {
  private taken = 0;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 0) throw new Error(`socket budget ${limit} is not a whole number >= 0`);
  }

  /** Claims one socket; false when the budget is spent. */
  take(): boolean {
    if (this.taken >= this.limit) return false;
    this.taken++;
    return true;
  }

  /** Gives back a socket claimed by take(). */
  release(): void {
    // More releases than takes means a socket was counted twice somewhere: fail loudly.
    if (this.taken === 0) throw new Error("socket budget released more often than taken");
    this.taken--;
  }

  get used(): number {
    return this.taken;
  }
}
