// The run loop: fetch through a cached page pointer, expand compressed instructions by table,
// dispatch with one dense switch, and touch memory through the TLB with a single tag compare.
// Interrupts, the host's attention flag and the clock are looked at only at slice boundaries
// (every SLICE instructions, or at once after a write that can unmask an interrupt).

import {
  H_PC, H_WFI, H_ATTN, H_INSTRET, H_EXIT_REASON, H_EXIT_LOAD_RD, H_EXIT_LOAD_KIND, H_EXIT_DATA,
  H_EXIT_SIZE, H_EXIT_EXECUTED, H_MSTATUS, H_RESV_VALID, H_RESV_ADDR, H_RESV_VALUE,
  VM_FLAGS, VMF_SBI_IN_HOST, VM_INSTRET_TOTAL, RVC_TABLE, EXIT_BUDGET, EXIT_MMIO, EXIT_HALT,
  EXIT_TOHOST, EXIT_SBI, EXIT_ATTENTION, LOAD_SIGNED, LOAD_UNSIGNED, LOAD_FLOAT, TLB_ENTRIES,
} from "./layout";
import {
  H, priv, selectHart, xreg, setXreg, freg, setFreg, csr64, tlbRead, tlbWrite, tlbFetch, mtime,
  wakeupPending, flushTlbRegimes, flushTlbPage, PAGED_REGIMES, PRV_M, PRV_S, PRV_U, MS_TSR, MS_TW,
  MS_TVM, MS_FS,
} from "./hart";
import {
  accStatus, excCause, excTval, ACC_OK, ACC_EXC, ACC_MMIO, ACC_READ, ACC_WRITE, loadSlow, storeSlow,
  fetchSlow, resolveAtomic, lastFetchCacheable, lastFetchPageVa, lastFetchPageHost, EXC_ILLEGAL,
  EXC_BREAKPOINT, EXC_ECALL_U, clearAccStatus,
} from "./mmu";
import { takeTrap, selectInterrupt, mret, sret } from "./trap";
import { csrAccess, csrIllegal, interruptCheckNeeded, clearInterruptCheck, setPendingInstret, markFpDirty } from "./csr";
import { execFp, fpIllegal } from "./fp";

// Instructions between polls of interrupts, clock and host attention.
const SLICE: i32 = 4096;
const PAGE_MASK: u64 = ~<u64>0xfff;
const TLB_INDEX_MASK: u64 = <u64>(TLB_ENTRIES - 1);

@inline function tlbEntry(table: usize, va: u64): usize {
  return table + (<usize>((va >> 12) & TLB_INDEX_MASK) << 4);
}

// Sign-extend a zero-extended load of f3's width.
@inline function extendLoad(v: u64, f3: u32): u64 {
  switch (f3) {
    case 0: return <u64><i64><i8>v;
    case 1: return <u64><i64><i16>v;
    case 2: return <u64><i64><i32>v;
  }
  return v;
}

// Upper 64 bits of the unsigned 128-bit product.
@inline function mulhu(a: u64, b: u64): u64 {
  const al = a & 0xffffffff, ah = a >> 32, bl = b & 0xffffffff, bh = b >> 32;
  const ll = al * bl, hl = ah * bl, lh = al * bh, hh = ah * bh;
  const mid = (ll >> 32) + (hl & 0xffffffff) + lh;
  return hh + (hl >> 32) + (mid >> 32);
}
@inline function mulh(a: u64, b: u64): u64 {
  let r = mulhu(a, b);
  if (<i64>a < 0) r -= b;
  if (<i64>b < 0) r -= a;
  return r;
}
@inline function mulhsu(a: u64, b: u64): u64 {
  let r = mulhu(a, b);
  if (<i64>a < 0) r -= b;
  return r;
}
@inline function sx32(v: u64): u64 {
  return <u64><i64><i32>v;
}
@inline function orcb(v: u64): u64 {
  let r: u64 = 0;
  for (let i: u64 = 0; i < 64; i += 8) if (((v >> i) & 0xff) != 0) r |= <u64>0xff << i;
  return r;
}

// One AMO on a naturally aligned word (T = i32) or doubleword (T = i64); returns the old value.
// fn is funct5: swap 01, add 00, xor 04, and 0c, or 08, min 10, max 14, minu 18, maxu 1c.
@inline function amo<T>(p: usize, fn: u32, b: T): T {
  switch (fn) {
    case 0x01: return atomic.xchg<T>(p, b);
    case 0x00: return atomic.add<T>(p, b);
    case 0x04: return atomic.xor<T>(p, b);
    case 0x0c: return atomic.and<T>(p, b);
    case 0x08: return atomic.or<T>(p, b);
  }
  // min/max: compare-and-swap until no other hart got in between. Flipping the sign bit turns
  // an unsigned comparison into a signed one.
  const flip: T = fn >= 0x18 ? <T>1 << <T>(sizeof<T>() * 8 - 1) : <T>0;
  const wantMax = (fn & 4) != 0;
  let o: T;
  do {
    o = atomic.load<T>(p);
  } while (atomic.cmpxchg<T>(p, o, ((o ^ flip) > (b ^ flip)) == wantMax ? o : b) != o);
  return o;
}

// Values held across an exit: the pending MMIO load is completed on the next run().
function completeMmioLoad(): void {
  const rd = load<i32>(H + H_EXIT_LOAD_RD);
  if (rd < 0) return;
  store<i32>(H + H_EXIT_LOAD_RD, -1);
  const kind = load<i32>(H + H_EXIT_LOAD_KIND);
  const size = load<u32>(H + H_EXIT_SIZE);
  let v = load<u64>(H + H_EXIT_DATA);
  const bits = <u64>size << 3;
  if (bits < 64) {
    v &= (<u64>1 << bits) - 1;
    if (kind == LOAD_SIGNED) v = <u64>((<i64>(v << (64 - bits))) >> (64 - bits));
  }
  if (kind == LOAD_FLOAT) {
    setFreg(rd, size == 4 ? v | 0xffffffff00000000 : v);
    markFpDirty();
  } else if (rd != 0) setXreg(rd, v);
}

/**
 * Run the hart for at most `budget` instructions. Returns an EXIT_* reason; the details are in
 * the hart's run block. The host answers MMIO loads by writing H_EXIT_DATA before the next run.
 */
// The hart that ran last. Harts of a VM take turns on one thread, so when another hart ran
// since this one's LR, it may have stored to the reservation set: the SC must then fail (a
// value comparison alone would miss an A-B-A store). Slices are long, so LR/SC loops still
// make progress.
let lastRunHart: i32 = -1;

export function run(hart: i32, budget: i32): i32 {
  selectHart(hart);
  const h = H;
  if (hart != lastRunHart) {
    store<i32>(h + H_RESV_VALID, 0);
    lastRunHart = hart;
  }
  completeMmioLoad();
  let pc = load<u64>(h + H_PC);
  let exit: i32 = -1;
  let remaining: i32 = budget;
  let executed: i64 = 0;
  // The page the fetch pointer is on. Invalid is 1: pc is always even, so pc - 1 is odd and the
  // fetch test below can never pass on it.
  let fetchVa: u64 = 1;
  let fetchHost: usize = 0;

  while (true) {
    // ---- slice boundary: host, halt, interrupts ----
    if (atomic.load<i32>(h + H_ATTN) != 0) { exit = EXIT_ATTENTION; break; }
    const now = mtime();
    if (load<i32>(h + H_WFI) != 0) {
      if (!wakeupPending(h, now)) { exit = EXIT_HALT; break; }
      store<i32>(h + H_WFI, 0);
    }
    const irq = selectInterrupt(now);
    if (irq >= 0) {
      pc = takeTrap(<u64>irq, 0, pc, true);
      fetchVa = 1;
    }
    if (remaining <= 0) { exit = EXIT_BUDGET; break; }
    let limit: i32 = remaining < SLICE ? remaining : SLICE;
    let count: i32 = 0;
    clearInterruptCheck();

    while (count < limit) {
      count++;
      // ---- fetch ----
      let inst: u32;
      // One test for "same page, offset even and <= 0xffc" (so 4 bytes fit): rotating the
      // offset right by one moves an odd bit to the top.
      const off = pc - fetchVa;
      if (rotr<u64>(off, 1) < 0x7ff) {
        inst = load<u32>(fetchHost + <usize>off);
      } else {
        const e = tlbEntry(tlbFetch, pc);
        if (load<u64>(e) == (pc & PAGE_MASK) && (pc & 0xfff) < 0xffd) {
          fetchVa = pc & PAGE_MASK;
          fetchHost = <usize>(load<u64>(e + 8) + fetchVa);
          inst = load<u32>(fetchHost + <usize>(pc & 0xfff));
        } else {
          inst = fetchSlow(pc);
          if (accStatus != ACC_OK) {
            clearAccStatus();
            pc = takeTrap(excCause, excTval, pc, false);
            fetchVa = 1;
            count--;
            continue;
          }
          if (lastFetchCacheable && lastFetchPageVa == (pc & PAGE_MASK) && (pc & 0xfff) < 0xffd) {
            fetchVa = lastFetchPageVa;
            fetchHost = lastFetchPageHost;
          }
        }
      }
      let npc: u64;
      let raw = inst; // for mtval on illegal instructions
      if ((inst & 3) == 3) {
        npc = pc + 4;
      } else {
        raw = inst & 0xffff;
        inst = load<u32>(RVC_TABLE + (<usize>raw << 2));
        npc = pc + 2;
        if (inst == 0) {
          pc = takeTrap(EXC_ILLEGAL, <u64>raw, pc, false);
          fetchVa = 1;
          count--;
          continue;
        }
      }
      const rd = (inst >> 7) & 31;
      const rs1 = (inst >> 15) & 31;
      const rs2 = (inst >> 20) & 31;
      const f3 = (inst >> 12) & 7;
      const f7 = inst >> 25;
      let illegalInst = false;
      let fault = false; // a memory access raised excCause/excTval

      switch ((inst >> 2) & 31) {
        case 0x00: { // LOAD
          const va = xreg(rs1) + <u64>(<i64>(<i32>inst >> 20));
          const size: u64 = <u64>1 << (f3 & 3);
          if (f3 == 7) { illegalInst = true; break; }
          const e = tlbEntry(tlbRead, va);
          let v: u64;
          if (load<u64>(e) == (va & (PAGE_MASK | (size - 1)))) {
            const p = <usize>(va + load<u64>(e + 8));
            switch (f3) {
              case 0: v = <u64><i64>load<i8>(p); break;
              case 1: v = <u64><i64>load<i16>(p); break;
              case 2: v = <u64><i64>load<i32>(p); break;
              case 3: v = load<u64>(p); break;
              case 4: v = <u64>load<u8>(p); break;
              case 5: v = <u64>load<u16>(p); break;
              default: v = <u64>load<u32>(p); break;
            }
          } else {
            v = loadSlow(va, size);
            if (accStatus != ACC_OK) {
              if (accStatus == ACC_EXC) { fault = true; break; }
              clearAccStatus();
              store<i32>(h + H_EXIT_LOAD_RD, rd == 0 ? -1 : <i32>rd);
              store<i32>(h + H_EXIT_LOAD_KIND, f3 >= 4 ? LOAD_UNSIGNED : LOAD_SIGNED);
              exit = EXIT_MMIO; limit = count; pc = npc;
              break;
            }
            v = extendLoad(v, f3);
          }
          setXreg(rd, v);
          pc = npc;
          break;
        }
        case 0x01: { // LOAD-FP
          if ((csr64(H_MSTATUS) & MS_FS) == 0 || (f3 != 2 && f3 != 3)) { illegalInst = true; break; }
          const va = xreg(rs1) + <u64>(<i64>(<i32>inst >> 20));
          const size: u64 = f3 == 2 ? 4 : 8;
          const e = tlbEntry(tlbRead, va);
          let v: u64;
          if (load<u64>(e) == (va & (PAGE_MASK | (size - 1)))) {
            const p = <usize>(va + load<u64>(e + 8));
            v = size == 4 ? <u64>load<u32>(p) : load<u64>(p);
          } else {
            v = loadSlow(va, size);
            if (accStatus != ACC_OK) {
              if (accStatus == ACC_EXC) { fault = true; break; }
              clearAccStatus();
              store<i32>(h + H_EXIT_LOAD_RD, <i32>rd);
              store<i32>(h + H_EXIT_LOAD_KIND, LOAD_FLOAT);
              exit = EXIT_MMIO; limit = count; pc = npc;
              break;
            }
          }
          setFreg(rd, size == 4 ? v | 0xffffffff00000000 : v);
          markFpDirty();
          pc = npc;
          break;
        }
        case 0x03: { // MISC-MEM
          if (f3 == 1) fetchVa = 1; // fence.i: refetch (there is no decoded-code cache yet)
          else if (f3 != 0) { illegalInst = true; break; }
          pc = npc;
          break;
        }
        case 0x04: { // OP-IMM
          const a = xreg(rs1);
          const imm = <u64>(<i64>(<i32>inst >> 20));
          const sh = <u64>((inst >> 20) & 63);
          const hi6 = inst >> 26;
          let v: u64 = 0;
          switch (f3) {
            case 0: v = a + imm; break;
            case 2: v = <i64>a < <i64>imm ? 1 : 0; break;
            case 3: v = a < imm ? 1 : 0; break;
            case 4: v = a ^ imm; break;
            case 6: v = a | imm; break;
            case 7: v = a & imm; break;
            case 1:
              if (hi6 == 0) v = a << sh;
              else if (hi6 == 0x12) v = a & ~(<u64>1 << sh); // bclri
              else if (hi6 == 0x0a) v = a | (<u64>1 << sh); // bseti
              else if (hi6 == 0x1a) v = a ^ (<u64>1 << sh); // binvi
              else if (hi6 == 0x18 && ((inst >> 20) & 0x3f) <= 5) {
                const which = (inst >> 20) & 0x3f;
                if (which == 0) v = clz(a);
                else if (which == 1) v = ctz(a);
                else if (which == 2) v = popcnt(a);
                else if (which == 4) v = <u64><i64><i8>a;
                else if (which == 5) v = <u64><i64><i16>a;
                else illegalInst = true;
              } else illegalInst = true;
              break;
            default: // 5
              if (hi6 == 0) v = a >> sh;
              else if (hi6 == 0x10) v = <u64>(<i64>a >> <i64>sh);
              else if (hi6 == 0x12) v = (a >> sh) & 1; // bexti
              else if (hi6 == 0x18) v = rotr(a, sh); // rori
              else if ((inst >> 20) == 0x287) v = orcb(a);
              else if ((inst >> 20) == 0x6b8) v = bswap(a); // rev8
              else illegalInst = true;
          }
          if (illegalInst) break;
          setXreg(rd, v);
          pc = npc;
          break;
        }
        case 0x05: // AUIPC
          setXreg(rd, pc + <u64>(<i64>(<i32>(inst & 0xfffff000))));
          pc = npc;
          break;
        case 0x06: { // OP-IMM-32
          const a = xreg(rs1);
          const sh = <u64>((inst >> 20) & 31);
          let v: u64 = 0;
          if (f3 == 0) v = sx32(a + <u64>(<i64>(<i32>inst >> 20)));
          else if (f3 == 1) {
            if (f7 == 0) v = sx32(a << sh);
            else if ((inst >> 26) == 0x02) v = (a & 0xffffffff) << <u64>((inst >> 20) & 63); // slli.uw
            else if (f7 == 0x30 && rs2 == 0) v = <u64>clz(<u32>a);
            else if (f7 == 0x30 && rs2 == 1) v = <u64>ctz(<u32>a);
            else if (f7 == 0x30 && rs2 == 2) v = <u64>popcnt(<u32>a);
            else { illegalInst = true; break; }
          } else if (f3 == 5) {
            if (f7 == 0) v = sx32(<u64>(<u32>a >> <u32>sh));
            else if (f7 == 0x20) v = sx32(<u64>(<i32>a >> <i32>sh));
            else if (f7 == 0x30) v = sx32(<u64>rotr<u32>(<u32>a, <u32>sh)); // roriw
            else { illegalInst = true; break; }
          } else { illegalInst = true; break; }
          setXreg(rd, v);
          pc = npc;
          break;
        }
        case 0x08: { // STORE
          if (f3 > 3) { illegalInst = true; break; }
          const va = xreg(rs1) + <u64>(<i64>((<i32>(inst & 0xfe000000) >> 20) | <i32>((inst >> 7) & 31)));
          const size: u64 = <u64>1 << f3;
          const v = xreg(rs2);
          const e = tlbEntry(tlbWrite, va);
          if (load<u64>(e) == (va & (PAGE_MASK | (size - 1)))) {
            const p = <usize>(va + load<u64>(e + 8));
            switch (f3) {
              case 0: store<u8>(p, <u8>v); break;
              case 1: store<u16>(p, <u16>v); break;
              case 2: store<u32>(p, <u32>v); break;
              default: store<u64>(p, v); break;
            }
          } else {
            storeSlow(va, size, v);
            if (accStatus != ACC_OK) {
              if (accStatus == ACC_EXC) { fault = true; break; }
              exit = accStatus == ACC_MMIO ? EXIT_MMIO : EXIT_TOHOST;
              clearAccStatus();
              limit = count;
            }
          }
          pc = npc;
          break;
        }
        case 0x09: { // STORE-FP
          if ((csr64(H_MSTATUS) & MS_FS) == 0 || (f3 != 2 && f3 != 3)) { illegalInst = true; break; }
          const va = xreg(rs1) + <u64>(<i64>((<i32>(inst & 0xfe000000) >> 20) | <i32>((inst >> 7) & 31)));
          const size: u64 = f3 == 2 ? 4 : 8;
          const v = freg(rs2);
          const e = tlbEntry(tlbWrite, va);
          if (load<u64>(e) == (va & (PAGE_MASK | (size - 1)))) {
            const p = <usize>(va + load<u64>(e + 8));
            if (size == 4) store<u32>(p, <u32>v); else store<u64>(p, v);
          } else {
            storeSlow(va, size, v);
            if (accStatus != ACC_OK) {
              if (accStatus == ACC_EXC) { fault = true; break; }
              exit = accStatus == ACC_MMIO ? EXIT_MMIO : EXIT_TOHOST;
              clearAccStatus();
              limit = count;
            }
          }
          pc = npc;
          break;
        }
        case 0x0b: { // AMO
          if (f3 != 2 && f3 != 3) { illegalInst = true; break; }
          const fn = inst >> 27;
          const va = xreg(rs1);
          const size: u64 = f3 == 2 ? 4 : 8;
          // Valid funct5: LR 02, SC 03, swap 01, add 00, xor 04, and 0c, or 08, min/max 10-1c.
          if (fn > 4 && fn != 0x08 && fn != 0x0c && (fn & 0x13) != 0x10) { illegalInst = true; break; }
          if (fn == 2) { // LR
            if (rs2 != 0) { illegalInst = true; break; }
            const host = resolveAtomic(va, size, ACC_READ);
            if (host < 0) { fault = true; break; }
            // Wasm atomic loads only zero-extend: sign-extend the word explicitly.
            let v: u64;
            if (size == 4) {
              const w: i32 = atomic.load<i32>(<usize>host);
              v = <u64><i64>w;
            } else v = atomic.load<u64>(<usize>host);
            store<i32>(h + H_RESV_VALID, 1);
            store<u64>(h + H_RESV_ADDR, <u64>host);
            store<u64>(h + H_RESV_VALUE, v);
            setXreg(rd, v);
            pc = npc;
            break;
          }
          const host = resolveAtomic(va, size, ACC_WRITE);
          if (host < 0) { fault = true; break; }
          const p = <usize>host;
          const b = xreg(rs2);
          if (fn == 3) { // SC: succeeds only if the reservation holds and memory still has the LR value
            let ok = load<i32>(h + H_RESV_VALID) != 0 && load<u64>(h + H_RESV_ADDR) == <u64>host;
            if (ok) {
              const expect = load<u64>(h + H_RESV_VALUE);
              if (size == 4) ok = atomic.cmpxchg<i32>(p, <i32>expect, <i32>b) == <i32>expect;
              else ok = atomic.cmpxchg<u64>(p, expect, b) == expect;
            }
            store<i32>(h + H_RESV_VALID, 0);
            setXreg(rd, ok ? 0 : 1);
            pc = npc;
            break;
          }
          setXreg(rd, size == 4 ? <u64><i64>amo<i32>(p, fn, <i32>b) : <u64>amo<i64>(p, fn, <i64>b));
          pc = npc;
          break;
        }
        case 0x0c: { // OP
          const a = xreg(rs1);
          const b = xreg(rs2);
          let v: u64 = 0;
          switch ((f7 << 3) | f3) {
            case 0x000: v = a + b; break;
            case 0x100: v = a - b; break;
            case 0x001: v = a << (b & 63); break;
            case 0x002: v = <i64>a < <i64>b ? 1 : 0; break;
            case 0x003: v = a < b ? 1 : 0; break;
            case 0x004: v = a ^ b; break;
            case 0x005: v = a >> (b & 63); break;
            case 0x105: v = <u64>(<i64>a >> <i64>(b & 63)); break;
            case 0x006: v = a | b; break;
            case 0x007: v = a & b; break;
            // M
            case 0x008: v = a * b; break;
            case 0x009: v = mulh(a, b); break;
            case 0x00a: v = mulhsu(a, b); break;
            case 0x00b: v = mulhu(a, b); break;
            case 0x00c: // div
              if (b == 0) v = <u64>-1;
              else if (a == 0x8000000000000000 && b == <u64>-1) v = a;
              else v = <u64>(<i64>a / <i64>b);
              break;
            case 0x00d: v = b == 0 ? <u64>-1 : a / b; break;
            case 0x00e: // rem
              if (b == 0) v = a;
              else if (a == 0x8000000000000000 && b == <u64>-1) v = 0;
              else v = <u64>(<i64>a % <i64>b);
              break;
            case 0x00f: v = b == 0 ? a : a % b; break;
            // Zba
            case 0x082: v = (a << 1) + b; break;
            case 0x084: v = (a << 2) + b; break;
            case 0x086: v = (a << 3) + b; break;
            // Zbb
            case 0x107: v = a & ~b; break;
            case 0x106: v = a | ~b; break;
            case 0x104: v = ~(a ^ b); break;
            case 0x02c: v = <i64>a < <i64>b ? a : b; break;
            case 0x02d: v = a < b ? a : b; break;
            case 0x02e: v = <i64>a > <i64>b ? a : b; break;
            case 0x02f: v = a > b ? a : b; break;
            case 0x181: v = rotl(a, b & 63); break;
            case 0x185: v = rotr(a, b & 63); break;
            // Zbs
            case 0x121: v = a & ~(<u64>1 << (b & 63)); break;
            case 0x125: v = (a >> (b & 63)) & 1; break;
            case 0x1a1: v = a ^ (<u64>1 << (b & 63)); break;
            case 0x0a1: v = a | (<u64>1 << (b & 63)); break;
            default: illegalInst = true;
          }
          if (illegalInst) break;
          setXreg(rd, v);
          pc = npc;
          break;
        }
        case 0x0d: // LUI
          setXreg(rd, <u64>(<i64>(<i32>(inst & 0xfffff000))));
          pc = npc;
          break;
        case 0x0e: { // OP-32
          const a = xreg(rs1);
          const b = xreg(rs2);
          const aw = <i32>a, bw = <i32>b;
          let v: u64 = 0;
          switch ((f7 << 3) | f3) {
            case 0x000: v = sx32(a + b); break;
            case 0x100: v = sx32(a - b); break;
            case 0x001: v = sx32(<u64>(aw << (bw & 31))); break;
            case 0x005: v = sx32(<u64>(<u32>aw >> <u32>(bw & 31))); break;
            case 0x105: v = sx32(<u64>(aw >> (bw & 31))); break;
            case 0x008: v = sx32(<u64>(aw * bw)); break;
            case 0x00c: // divw
              if (bw == 0) v = <u64>-1;
              else if (aw == i32.MIN_VALUE && bw == -1) v = sx32(<u64>aw);
              else v = sx32(<u64>(aw / bw));
              break;
            case 0x00d: v = bw == 0 ? <u64>-1 : sx32(<u64>(<u32>aw / <u32>bw)); break;
            case 0x00e: // remw
              if (bw == 0) v = sx32(<u64>aw);
              else if (aw == i32.MIN_VALUE && bw == -1) v = 0;
              else v = sx32(<u64>(aw % bw));
              break;
            case 0x00f: v = bw == 0 ? sx32(<u64>aw) : sx32(<u64>(<u32>aw % <u32>bw)); break;
            case 0x020: v = (a & 0xffffffff) + b; break; // add.uw
            case 0x024: if (rs2 != 0) { illegalInst = true; break; } v = a & 0xffff; break; // zext.h
            case 0x082: v = ((a & 0xffffffff) << 1) + b; break;
            case 0x084: v = ((a & 0xffffffff) << 2) + b; break;
            case 0x086: v = ((a & 0xffffffff) << 3) + b; break;
            case 0x181: v = sx32(<u64>rotl<u32>(<u32>aw, <u32>(bw & 31))); break;
            case 0x185: v = sx32(<u64>rotr<u32>(<u32>aw, <u32>(bw & 31))); break;
            default: illegalInst = true;
          }
          if (illegalInst) break;
          setXreg(rd, v);
          pc = npc;
          break;
        }
        case 0x10: case 0x11: case 0x12: case 0x13: case 0x14: { // FMADD..FNMADD, OP-FP
          if ((csr64(H_MSTATUS) & MS_FS) == 0) { illegalInst = true; break; }
          execFp(inst);
          if (fpIllegal) { illegalInst = true; break; }
          pc = npc;
          break;
        }
        case 0x18: { // BRANCH
          const a = xreg(rs1);
          const b = xreg(rs2);
          let taken: bool;
          switch (f3) {
            case 0: taken = a == b; break;
            case 1: taken = a != b; break;
            case 4: taken = <i64>a < <i64>b; break;
            case 5: taken = <i64>a >= <i64>b; break;
            case 6: taken = a < b; break;
            case 7: taken = a >= b; break;
            default: { illegalInst = true; taken = false; }
          }
          if (illegalInst) break;
          if (taken) {
            const imm = ((<i32>(inst & 0x80000000) >> 19) | <i32>((inst & 0x80) << 4) | <i32>((inst >> 20) & 0x7e0) | <i32>((inst >> 7) & 0x1e));
            pc += <u64><i64>imm;
          } else pc = npc;
          break;
        }
        case 0x19: { // JALR
          if (f3 != 0) { illegalInst = true; break; }
          const target = (xreg(rs1) + <u64>(<i64>(<i32>inst >> 20))) & ~<u64>1;
          setXreg(rd, npc);
          pc = target;
          break;
        }
        case 0x1b: { // JAL
          const imm = (<i32>(inst & 0x80000000) >> 11) | <i32>(inst & 0xff000) | <i32>((inst >> 9) & 0x800) | <i32>((inst >> 20) & 0x7fe);
          setXreg(rd, npc);
          pc += <u64><i64>imm;
          break;
        }
        case 0x1c: { // SYSTEM
          if (f3 == 0) {
            if (inst == 0x00000073) { // ecall
              if (priv == PRV_S && (load<i32>(VM_FLAGS) & VMF_SBI_IN_HOST) != 0) {
                exit = EXIT_SBI; limit = count; pc = npc;
                break;
              }
              pc = takeTrap(EXC_ECALL_U + <u64>priv, 0, pc, false);
              fetchVa = 1; count--; // ecall does not retire
              break;
            }
            if (inst == 0x00100073) { // ebreak
              pc = takeTrap(EXC_BREAKPOINT, pc, pc, false);
              fetchVa = 1; count--; // nor does ebreak
              break;
            }
            if (inst == 0x30200073) { // mret
              if (priv != PRV_M) { illegalInst = true; break; }
              pc = mret();
              fetchVa = 1; limit = count;
              break;
            }
            if (inst == 0x10200073) { // sret
              if (priv == PRV_U || (priv == PRV_S && (csr64(H_MSTATUS) & MS_TSR) != 0)) { illegalInst = true; break; }
              pc = sret();
              fetchVa = 1; limit = count;
              break;
            }
            if (inst == 0x10500073) { // wfi
              if (priv == PRV_U || (priv == PRV_S && (csr64(H_MSTATUS) & MS_TW) != 0)) { illegalInst = true; break; }
              pc = npc;
              if (!wakeupPending(h, mtime())) store<i32>(h + H_WFI, 1);
              limit = count;
              break;
            }
            if (f7 == 0x09 && rd == 0) { // sfence.vma
              if (priv == PRV_U || (priv == PRV_S && (csr64(H_MSTATUS) & MS_TVM) != 0)) { illegalInst = true; break; }
              if (rs1 == 0) flushTlbRegimes(PAGED_REGIMES);
              else flushTlbPage(xreg(rs1));
              fetchVa = 1;
              pc = npc;
              break;
            }
            illegalInst = true;
            break;
          }
          if (f3 == 4) { illegalInst = true; break; }
          // Zicsr
          const operand: u64 = f3 >= 5 ? <u64>rs1 : xreg(rs1);
          const op = f3 & 3;
          const write = op == 1 || rs1 != 0;
          setPendingInstret(<u64>(count - 1));
          const old = csrAccess(inst >> 20, op, operand, write);
          setPendingInstret(0);
          if (csrIllegal) { illegalInst = true; break; }
          setXreg(rd, old);
          pc = npc;
          fetchVa = 1;
          if (interruptCheckNeeded) limit = count;
          break;
        }
        default:
          illegalInst = true;
      }
      if (illegalInst || fault) {
        // The instruction did not retire: trap with pc at it.
        if (fault) clearAccStatus();
        pc = takeTrap(illegalInst ? EXC_ILLEGAL : excCause, illegalInst ? <u64>raw : excTval, pc, false);
        fetchVa = 1;
        count--;
      }
      store<u64>(h, 0); // x0
    }
    executed += count;
    remaining -= count;
    store<u64>(h + H_INSTRET, load<u64>(h + H_INSTRET) + <u64>count);
    if (exit >= 0) break;
  }
  store<u64>(h + H_PC, pc);
  store<i32>(h + H_EXIT_REASON, exit);
  store<i64>(h + H_EXIT_EXECUTED, executed);
  store<i64>(VM_INSTRET_TOTAL, load<i64>(VM_INSTRET_TOTAL) + executed);
  return exit;
}
