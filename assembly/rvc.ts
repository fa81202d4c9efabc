// The C extension: every 16-bit encoding maps to the 32-bit instruction it stands for (0 =
// illegal or reserved). decode.ts expands each compressed instruction once, when it first runs.

@inline function bits(x: u32, hi: u32, lo: u32): u32 {
  return (x >> lo) & ((1 << (hi - lo + 1)) - 1);
}
@inline function sext(x: u32, width: u32): i32 {
  return (<i32>(x << (32 - width))) >> (32 - width);
}

function iType(imm: i32, rs1: u32, f3: u32, rd: u32, op: u32): u32 {
  return ((<u32>imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
function sType(imm: i32, rs2: u32, rs1: u32, f3: u32, op: u32): u32 {
  const u = <u32>imm;
  return (bits(u, 11, 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (bits(u, 4, 0) << 7) | op;
}
function rType(f7: u32, rs2: u32, rs1: u32, f3: u32, rd: u32, op: u32): u32 {
  return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
function bType(imm: i32, rs2: u32, rs1: u32, f3: u32): u32 {
  const u = <u32>imm;
  return (bits(u, 12, 12) << 31) | (bits(u, 10, 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) |
    (bits(u, 4, 1) << 8) | (bits(u, 11, 11) << 7) | 0x63;
}
function jType(imm: i32, rd: u32): u32 {
  const u = <u32>imm;
  return (bits(u, 20, 20) << 31) | (bits(u, 10, 1) << 21) | (bits(u, 11, 11) << 20) | (bits(u, 19, 12) << 12) | (rd << 7) | 0x6f;
}

const OP_LOAD: u32 = 0x03;
const OP_LOAD_FP: u32 = 0x07;
const OP_IMM: u32 = 0x13;
const OP_IMM32: u32 = 0x1b;
const OP_STORE: u32 = 0x23;
const OP_STORE_FP: u32 = 0x27;
const OP_REG: u32 = 0x33;
const OP_LUI: u32 = 0x37;
const OP_REG32: u32 = 0x3b;
const OP_JALR: u32 = 0x67;

/** The 32-bit equivalent of 16-bit instruction c, or 0 if c is illegal/reserved. */
export function expand(c: u32): u32 {
  const op = c & 3;
  const f3 = bits(c, 15, 13);
  const rdp = bits(c, 4, 2) + 8; // rd' / rs2'
  const rs1p = bits(c, 9, 7) + 8;
  const rd = bits(c, 11, 7);
  const rs2 = bits(c, 6, 2);
  const imm6 = sext((bits(c, 12, 12) << 5) | bits(c, 6, 2), 6);
  if (op == 0) {
    switch (f3) {
      case 0: { // c.addi4spn
        const imm = (bits(c, 12, 11) << 4) | (bits(c, 10, 7) << 6) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 3);
        return imm == 0 ? 0 : iType(<i32>imm, 2, 0, rdp, OP_IMM);
      }
      case 1: return iType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6)), rs1p, 3, rdp, OP_LOAD_FP); // c.fld
      case 2: return iType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 6)), rs1p, 2, rdp, OP_LOAD); // c.lw
      case 3: return iType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6)), rs1p, 3, rdp, OP_LOAD); // c.ld
      case 5: return sType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6)), rdp, rs1p, 3, OP_STORE_FP); // c.fsd
      case 6: return sType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 6, 6) << 2) | (bits(c, 5, 5) << 6)), rdp, rs1p, 2, OP_STORE); // c.sw
      case 7: return sType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6)), rdp, rs1p, 3, OP_STORE); // c.sd
    }
    return 0;
  }
  if (op == 1) {
    switch (f3) {
      case 0: return iType(imm6, rd, 0, rd, OP_IMM); // c.addi / c.nop
      case 1: return rd == 0 ? 0 : iType(imm6, rd, 0, rd, OP_IMM32); // c.addiw
      case 2: return iType(imm6, 0, 0, rd, OP_IMM); // c.li
      case 3: {
        if (rd == 2) { // c.addi16sp
          const imm = sext((bits(c, 12, 12) << 9) | (bits(c, 6, 6) << 4) | (bits(c, 5, 5) << 6) | (bits(c, 4, 3) << 7) | (bits(c, 2, 2) << 5), 10);
          return imm == 0 ? 0 : iType(imm, 2, 0, 2, OP_IMM);
        }
        if (imm6 == 0) return 0; // c.lui with a zero immediate is reserved
        return ((<u32>imm6 & 0xfffff) << 12) | (rd << 7) | OP_LUI;
      }
      case 4: {
        const sub = bits(c, 11, 10);
        const shamt = (bits(c, 12, 12) << 5) | bits(c, 6, 2);
        if (sub == 0) return iType(<i32>shamt, rs1p, 5, rs1p, OP_IMM); // c.srli
        if (sub == 1) return iType(<i32>(shamt | 0x400), rs1p, 5, rs1p, OP_IMM); // c.srai
        if (sub == 2) return iType(imm6, rs1p, 7, rs1p, OP_IMM); // c.andi
        const fn = bits(c, 6, 5);
        if (bits(c, 12, 12) == 0) {
          if (fn == 0) return rType(0x20, rdp, rs1p, 0, rs1p, OP_REG); // c.sub
          if (fn == 1) return rType(0, rdp, rs1p, 4, rs1p, OP_REG); // c.xor
          if (fn == 2) return rType(0, rdp, rs1p, 6, rs1p, OP_REG); // c.or
          return rType(0, rdp, rs1p, 7, rs1p, OP_REG); // c.and
        }
        if (fn == 0) return rType(0x20, rdp, rs1p, 0, rs1p, OP_REG32); // c.subw
        if (fn == 1) return rType(0, rdp, rs1p, 0, rs1p, OP_REG32); // c.addw
        return 0;
      }
      case 5: { // c.j
        const imm = sext((bits(c, 12, 12) << 11) | (bits(c, 11, 11) << 4) | (bits(c, 10, 9) << 8) | (bits(c, 8, 8) << 10) |
          (bits(c, 7, 7) << 6) | (bits(c, 6, 6) << 7) | (bits(c, 5, 3) << 1) | (bits(c, 2, 2) << 5), 12);
        return jType(imm, 0);
      }
      default: { // c.beqz / c.bnez
        const imm = sext((bits(c, 12, 12) << 8) | (bits(c, 11, 10) << 3) | (bits(c, 6, 5) << 6) | (bits(c, 4, 3) << 1) | (bits(c, 2, 2) << 5), 9);
        return bType(imm, 0, rs1p, f3 == 6 ? 0 : 1);
      }
    }
  }
  if (op == 2) {
    switch (f3) {
      case 0: return iType(<i32>((bits(c, 12, 12) << 5) | bits(c, 6, 2)), rd, 1, rd, OP_IMM); // c.slli
      case 1: return iType(<i32>((bits(c, 12, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6)), 2, 3, rd, OP_LOAD_FP); // c.fldsp
      case 2: return rd == 0 ? 0 : iType(<i32>((bits(c, 12, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6)), 2, 2, rd, OP_LOAD); // c.lwsp
      case 3: return rd == 0 ? 0 : iType(<i32>((bits(c, 12, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6)), 2, 3, rd, OP_LOAD); // c.ldsp
      case 4: {
        if (bits(c, 12, 12) == 0) {
          if (rs2 == 0) return rd == 0 ? 0 : iType(0, rd, 0, 0, OP_JALR); // c.jr
          return rType(0, rs2, 0, 0, rd, OP_REG); // c.mv
        }
        if (rs2 == 0) {
          if (rd == 0) return 0x00100073; // c.ebreak
          return iType(0, rd, 0, 1, OP_JALR); // c.jalr
        }
        return rType(0, rs2, rd, 0, rd, OP_REG); // c.add
      }
      case 5: return sType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6)), rs2, 2, 3, OP_STORE_FP); // c.fsdsp
      case 6: return sType(<i32>((bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6)), rs2, 2, 2, OP_STORE); // c.swsp
      case 7: return sType(<i32>((bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6)), rs2, 2, 3, OP_STORE); // c.sdsp
    }
  }
  return 0;
}
