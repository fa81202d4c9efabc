/**
 * What user-mode networking needs from the host it runs on: TCP connections and listeners, UDP
 * sockets and name resolution. Node provides them with its own sockets
 * (host/platform/node/host-sockets.ts); a browser could carry them over a WebSocket relay.
 *
 * Events go to the handler objects given when a socket is made, always from a later task or
 * microtask, never from inside a call into these interfaces: the stack sets up its side of a
 * connection after the call that made it returns.
 */

/** An address and port on the host's side: "127.0.0.1", "192.0.2.1", "2001:db8::1". */
export interface HostAddress {
  host: string;
  port: number;
}

export interface HostSockets {
  /** Opens a TCP connection; either side may half-close (FIN) while the other goes on sending. */
  connectTcp(to: HostAddress, handlers: TcpHandlers): TcpStream;
  /**
   * Listens for TCP connections (port 0: any free port). Exactly one of onListening and onError
   * answers the attempt, even when the listener is closed before it is bound.
   */
  listenTcp(at: HostAddress, handlers: TcpListenHandlers): TcpListener;
  /** A UDP socket of that address family, bound to a free port by its first send. */
  openUdp(family: 4 | 6, handlers: UdpHandlers): UdpSocket;
  /** The host's DNS servers ("192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53"); [] if it cannot tell. */
  dnsServers(): string[];
  /**
   * The host's own resolver (getaddrinfo): the `family` addresses of `name`. Rejects with an
   * error whose `code` is ENOTFOUND for no such name, ENODATA for no address of that family.
   */
  lookup(name: string, family: 4 | 6): Promise<string[]>;
  /** A hosts file's text, or null when there is none or it cannot be read. */
  readHostsFile(path: string): string | null;
}

export interface TcpHandlers {
  /** The connection is up (connectTcp only). */
  onConnect?(): void;
  /** Bytes from the peer, never while paused. The stack keeps the array: hand over a fresh one. */
  onData(data: Uint8Array): void;
  /** The peer sends no more (FIN); writing goes on. */
  onEnd(): void;
  /** What write() had queued beyond the host's buffer has gone out: bufferedAmount fell. */
  onDrain(): void;
  /**
   * The stream is gone: refused, failed, reset, closed both ways, or close() or reset() was
   * called. Called once, last. Why does not matter to the guest, which sees a reset or an end.
   */
  onClose(): void;
}

export interface TcpStream {
  /** Bytes write() queued that the host has not taken yet (the guest's window shrinks by them). */
  readonly bufferedAmount: number;
  /** Queues bytes for the peer, keeping `data` until sent; ignored after end() or once closed. */
  write(data: Uint8Array): void;
  /** Half-closes: a FIN follows the queued bytes. Idempotent. */
  end(): void;
  /** Stops onData and onEnd until resume(): flow control towards the guest. */
  pause(): void;
  resume(): void;
  /** Aborts with a reset, so that the peer sees the connection fail rather than end. */
  reset(): void;
  /** Closes at once, without a reset. Idempotent. */
  close(): void;
}

export interface TcpListenHandlers {
  /** Listening on `port` (the one picked when 0 was asked for). */
  onListening(port: number): void;
  /** Could not listen or, once listening, the listener failed. */
  onError(err: Error): void;
  /** A client connected; its connection waits, paused, for accept(), reset() or close(). */
  onConnection(incoming: IncomingTcp): void;
}

export interface IncomingTcp {
  /** Takes the connection: events go to `handlers`; it stays paused until resume(). */
  accept(handlers: TcpHandlers): TcpStream;
  /** Turns it away with a reset: the client sees its connection refused, not an empty reply. */
  reset(): void;
  close(): void;
}

export interface TcpListener {
  /** Stops listening (as soon as bound, if still binding). Idempotent. */
  close(): void;
}

export interface UdpHandlers {
  /** A datagram; `data` is read during the call only. */
  onMessage(data: Uint8Array, from: HostAddress): void;
  /** The socket failed and is of no further use. */
  onError?(): void;
}

export interface UdpSocket {
  /** Sends one datagram; failures (unreachable, too big) are dropped silently, as UDP's are. */
  send(data: Uint8Array, to: HostAddress): void;
  /** Idempotent. */
  close(): void;
}
