/**
 * VM state streams (snapshots, migration): a real VM's stream (the counter guest, two harts,
 * saved mid-run), changed by the input section by section: JSON fields of the configuration,
 * CPU and machine sections set to hostile values, bytes of any section changed, sections
 * dropped, repeated or cut short, checksums recomputed (a crafted stream has right ones) or not.
 * The result is opened and restored into a machine as a snapshot restore does (lazily or not),
 * which then runs a little; it is also fed to the migration stream parser in pieces. The clean
 * rejection is a one-line Error (StateFormatError, or a field check naming the field).
 */
import { InputReader, InputWriter } from "../engine/input";
import { isOneLineError, type Target } from "../engine/target";
import { counterKernel } from "../../test/state/counter-guest";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";
import { DEFINITION_PARSING, parseVmConfig } from "../../host/config/parse";
import { buildMachine, loadBootImages, restoreMachine } from "../../host/vm/build";
import { openVmState, writeVmState } from "../../host/state/vm-state";
import { bytesSource, listSections, sectionHeader, streamHeader, StateStreamParser, TAGS, type SectionTag } from "../../host/state/container";
import { crc32 } from "../../host/state/crc32";
import type { Platform } from "../../host/platform/platform";
import { editJson } from "./json-edit";

interface Section { tag: string; payload: Uint8Array }
interface StateRig { platform: Platform; sections: Section[] }

const io = { output: () => {}, input: () => -1, wake: () => {} };
const enc = new TextEncoder(), dec = new TextDecoder();
const JSON_TAGS: string[] = [TAGS.config, TAGS.cpu, TAGS.machine];

async function setup(): Promise<StateRig> {
  const platform = memoryPlatform({ core: loadCoreModule(), files: { "count.bin": counterKernel(1000) } });
  const config = parseVmConfig({ name: "counter", kernel: "count.bin", memory: "16M", smp: 2 }, DEFINITION_PARSING);
  const m = await buildMachine(config, loadBootImages(config, platform), platform, io);
  for (let i = 0; i < 20; i++) m.step(20_000);
  const chunks: Uint8Array[] = [];
  writeVmState((c) => chunks.push(c.slice()), config, m, Date.now());
  m.close();
  const stream = join(chunks);
  const sections = listSections(bytesSource(stream), "state").filter((s) => s.tag !== TAGS.end)
    .map((s) => ({ tag: s.tag, payload: stream.slice(s.offset, s.offset + s.length) }));
  return { platform, sections };
}

function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of parts) { out.set(c, at); at += c.length; }
  return out;
}

/** Apply the input's edits; returns the stream's bytes. */
function edit(base: Section[], input: InputReader): Uint8Array {
  const sections = base.map((s) => ({ ...s }));
  const fixCrc = input.int(0, 7) !== 0;
  for (let ops = 0; ops < 8 && !input.done; ops++) {
    const i = input.int(0, Math.max(0, sections.length - 1));
    const s = sections[i];
    if (!s) break;
    switch (input.int(0, 5)) {
      case 0: case 1: { // a JSON field
        if (!JSON_TAGS.includes(s.tag)) break;
        let doc;
        try { doc = JSON.parse(dec.decode(s.payload)); } catch { break; } // an earlier byte edit broke it
        s.payload = enc.encode(JSON.stringify(editJson(doc, input)) ?? "");
        break;
      }
      case 2: { // bytes
        const p = s.payload.slice();
        const at = input.int(0, Math.max(0, p.length - 1));
        p.set(input.blob(16).subarray(0, Math.max(0, p.length - at)), at);
        s.payload = p;
        break;
      }
      case 3: s.payload = s.payload.subarray(0, input.int(0, s.payload.length)); break; // cut short
      case 4: sections.splice(i, 1); break; // dropped
      default: sections.splice(input.int(0, sections.length), 0, { ...s }); break; // repeated
    }
  }
  const pieces: Uint8Array[] = [streamHeader()];
  for (const s of sections) {
    const covered = s.tag === TAGS.memory && s.payload.length >= 8 ? s.payload.subarray(0, 8 + 20 * new DataView(s.payload.buffer, s.payload.byteOffset).getUint32(4, true)) : s.payload;
    pieces.push(sectionHeader(s.tag as SectionTag, s.payload.length, fixCrc ? crc32(covered) : input.u32()), s.payload);
  }
  const end = new Uint8Array(8);
  new DataView(end.buffer).setUint32(0, sections.length, true);
  pieces.push(sectionHeader(TAGS.end, 8, crc32(end)), end);
  return join(pieces);
}

async function runState(rig: StateRig, data: Uint8Array): Promise<void> {
  const input = new InputReader(data);
  const lazy = input.bool();
  const stream = edit(rig.sections, input);
  // The migration side: the stream as it arrives, in pieces.
  const parser = new StateStreamParser("fuzz stream", 1 << 20);
  for (let at = 0; at < stream.length;) {
    const n = 1 + (data.length ? data[at % data.length]! * 64 : 4096);
    parser.push(stream.subarray(at, at + n));
    at += n;
  }
  const m = await restoreMachine(openVmState(bytesSource(stream), "fuzz state"), rig.platform, io, { clock: { kind: "continue" }, lazy });
  try {
    for (let i = 0; i < 3; i++) m.step(5_000);
  } finally {
    m.close();
  }
}

function seeds(): Uint8Array[] {
  // The stream unchanged (lazily and not), and one JSON field edit of each JSON section.
  const out = [new InputWriter().bool(false).int(0, 7, 1).finish(), new InputWriter().bool(true).int(0, 7, 1).finish()];
  for (let i = 0; i < 3; i++) out.push(new InputWriter().bool(true).int(0, 7, 1).u8(i).int(0, 5, 0).u16(5).int(0, 11, 1).u8(1).int(0, 5, 1).finish());
  return out;
}

export const stateTarget: Target<StateRig> = {
  name: "state",
  about: "VM state streams (snapshot restore, migration parser): a real VM's stream with hostile JSON fields, bytes, sections",
  maxLength: 1024,
  setup,
  run: (data, rig) => runState(rig, data),
  rejects: isOneLineError,
  seeds,
};
