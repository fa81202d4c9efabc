/**
 * The small adapters through which devices reach the outside world, so device models run the
 * same in Node and in a browser: guest memory for DMA, block storage, and an Ethernet link.
 */
import type { DiskFormat } from "../disk/formats";

/** Guest-physical memory as a device doing DMA sees it. */
export interface GuestMemory {
  /**
   * A live view of [gpa, gpa + len) if the whole range is guest RAM, else null. Devices must
   * treat every address the guest hands them as untrusted and check for null.
   */
  view(gpa: number, len: number): Uint8Array | null;
  /**
   * The same range for reading only (descriptors, outgoing buffers). Writing through it is a
   * bug: the write would escape dirty logging (migration) and shadow page-table coherence.
   */
  read(gpa: number, len: number): Uint8Array | null;
}

/** A block device's storage (a raw or qcow2 image file, an in-memory buffer, ...). */
export interface DiskBackend {
  /** Size in bytes (a multiple of 512). */
  readonly size: number;
  readonly readOnly: boolean;
  /** The image format, for backends over an image file. */
  readonly format?: DiskFormat;
  /** Fill `dst` from byte `offset`. Throws on I/O errors. */
  read(offset: number, dst: Uint8Array): void;
  /** Write `src` at byte `offset`. Throws on I/O errors or when read-only. */
  write(offset: number, src: Uint8Array): void;
  /** Make every completed write durable (fsync). */
  flush(): void;
  /** The range's contents may be dropped (reads return zeros afterwards). */
  discard(offset: number, length: number): void;
  /**
   * Optional: true when the range is known to read as zeros without reading it (a qcow2 image's
   * unallocated or zero clusters); false when it is not known. Block migration skips such ranges.
   */
  knownZero?(offset: number, length: number): boolean;
  close(): void;
}

/**
 * One end of an Ethernet link. The device calls send() for each frame the guest transmits; the
 * backend delivers frames for the guest by calling the receiver the device registered.
 */
export interface NetBackend {
  /** A frame from the guest (a copy: the backend may keep it). */
  send(frame: Uint8Array): void;
  /** Register the device's receive function; frames arriving before that are dropped. */
  attach(receive: (frame: Uint8Array) => void): void;
  /** Resolves once it can carry frames (hostfwd ports listen, a relay took its options); rejects saying why not. */
  ready?(): Promise<unknown>;
  close(): void;
}

/**
 * A byte stream: the other end of a character device (a socket, a test). The device calls
 * write() with each run of bytes the guest sends; the backend delivers bytes for the guest by
 * calling the receiver the device registered.
 */
export interface CharBackend {
  /** Bytes from the guest (a copy: the backend may keep it). */
  write(bytes: Uint8Array): void;
  /** Register the device's receive function; bytes arriving before that are dropped. */
  attach(receive: (bytes: Uint8Array) => void): void;
  close(): void;
}
