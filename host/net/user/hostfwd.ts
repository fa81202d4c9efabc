/**
 * hostfwd: a listener on a host port per rule, whose clients become TCP connections to a guest
 * port, opened from 10.0.2.2 (TcpRelay.accept). The listeners are outside the SocketBudget
 * (userNetFixedFds counts them); each accepted client takes a unit of it.
 */

import type { HostSockets, TcpListener } from "../host-sockets";
import { ip4ToString } from "../packet";
import type { GuestLink } from "./link";
import { HOST_LOOPBACK } from "./network";
import { checkHostFwd, type HostFwd } from "./options";
import type { TcpRelay } from "./tcp";

export interface HostFwdStatus {
  proto: "tcp";
  hostAddr: string;
  /** The bound port once listening (the requested one before). */
  hostPort: number;
  guestAddr: string;
  guestPort: number;
  listening: boolean;
}

export class HostForwards {
  private readonly forwards: { status: HostFwdStatus; listener: TcpListener }[] = [];
  /** Resolves once every port listens, with the bound ports; rejects if one cannot. */
  readonly ready: Promise<HostFwdStatus[]>;

  constructor(
    rules: HostFwd[],
    private readonly sockets: HostSockets,
    private readonly tcp: TcpRelay,
    private readonly link: GuestLink,
  ) {
    // Check every rule before listening on any port, so a bad one leaks nothing.
    const guestIps = rules.map(checkHostFwd);
    const listens = rules.map((rule, i) => this.listen(rule, guestIps[i]));
    this.ready = Promise.all(listens).then(() => this.statuses());
    this.ready.catch(() => {}); // reported through onError as well
  }

  statuses(): HostFwdStatus[] {
    return this.forwards.map((f) => ({ ...f.status }));
  }

  close(): void {
    for (const f of this.forwards) {
      f.status.listening = false;
      f.listener.close();
    }
  }

  private listen(rule: HostFwd, guestIp: number): Promise<void> {
    const hostAddr = rule.hostAddr || HOST_LOOPBACK;
    const status: HostFwdStatus = {
      proto: "tcp",
      hostAddr,
      hostPort: rule.hostPort,
      guestAddr: ip4ToString(guestIp),
      guestPort: rule.guestPort,
      listening: false,
    };
    return new Promise<void>((resolve, reject) => {
      const listener = this.sockets.listenTcp(
        { host: hostAddr, port: rule.hostPort },
        {
          onConnection: this.link.guard((incoming) => this.tcp.accept(incoming, guestIp, rule.guestPort)),
          onListening: (port) => {
            if (!this.link.isClosed) {
              status.hostPort = port;
              status.listening = true;
            }
            resolve();
          },
          onError: (err) => {
            if (status.listening) {
              this.link.report(err);
              return;
            }
            const e = new Error(`hostfwd tcp:${hostAddr}:${rule.hostPort}-${status.guestAddr}:${rule.guestPort}: cannot listen: ${err.message}`);
            if (!this.link.isClosed) this.link.report(e);
            reject(e);
          },
        },
      );
      this.forwards.push({ status, listener });
    });
  }
}
