// A VM's life cycle, the one state machine both the control plane (which answers for a VM)
// and its pCPU (which runs it) follow: created → running ⇄ paused → stopped, or failed when the
// guest crashed or got stuck. A stopped or failed VM stays for inspection until destroyed.
import { conflict } from "./types";

export type VmState = "created" | "running" | "paused" | "stopped" | "failed";
export const ACTIONS = ["start", "pause", "resume", "stop", "reset"] as const;
export type Action = (typeof ACTIONS)[number];

// reset: back to power-on (the guest's images reloaded), in the state it was in.
const TRANSITIONS: Record<Action, { from: readonly VmState[]; to: VmState | "same" }> = {
  start: { from: ["created"], to: "running" },
  pause: { from: ["running"], to: "paused" },
  resume: { from: ["paused"], to: "running" },
  stop: { from: ["created", "running", "paused"], to: "stopped" },
  reset: { from: ["running", "paused"], to: "same" },
};

/** Whether the VM has ended (stopped or failed): it runs no more. */
export const ended = (state: VmState): boolean => state === "stopped" || state === "failed";

/** The state `action` leads to from `state`; a 409 saying what it needs if it is not allowed. */
export function transition(name: string, state: VmState, action: Action, reason?: string): VmState {
  const t = TRANSITIONS[action];
  if (!t.from.includes(state)) {
    throw conflict(`cannot ${action} ${name}: it is ${state}${reason ? ` (${reason})` : ""}; ${action} needs it ${t.from.join(" or ")}`);
  }
  return t.to === "same" ? state : t.to;
}
