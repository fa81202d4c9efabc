// Text from outside (a blob's names, a peer's error, a client's values) shown in a message.

// C0 controls, DEL, C1 controls (0x9b is a terminal's CSI), and the bidirectional overrides and
// isolates that reorder how a line reads.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const UNPRINTABLE = new RegExp(CONTROL.source, "g");

/**
 * `text` with its control characters written as \xNN (\uNNNN past 0xff): a message that quotes
 * it stays one line and cannot drive the terminal it is printed on.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** The first control character in `text`, as printable() writes it, or undefined. */
export function firstControl(text: string): string | undefined {
  const m = CONTROL.exec(text);
  return m ? printable(m[0]) : undefined;
}
