// Instruction decoding, done once per instruction and cached (dcache.ts): every RV64GC encoding
// becomes one 64-bit slot the run loop executes with a single dense switch and no further bit
// fiddling. Compressed instructions are expanded here, so the run loop never sees them.
//
// Slot layout:
//   byte 0     op (OP_*; 0 = not decoded yet), with bit 7 set for a 16-bit instruction
//   byte 1     rd * 8 (a byte offset into the register file)
//   byte 2     rs1 * 8
//   byte 3     rs2 * 8
//   bytes 4-7  the immediate (i32); for the ops marked "inst" the whole 32-bit instruction, for
//              handlers that need more fields.
// The run loop reads each field with one load, and only in the cases that use it.
// Decoding depends only on the instruction's bits, never on privilege or CSR state, so a slot
// stays valid for as long as the bytes it came from; state checks happen at execution.

import { expand } from "./rvc";

export const COMPRESSED: u32 = 0x80; // flag in the op byte
export const OP_ILLEGAL: u32 = 1;
export const OP_NOP: u32 = 2; // fence, and ALU instructions writing x0 (hints)
// loads (imm: offset)
export const OP_LB: u32 = 3;
export const OP_LH: u32 = 4;
export const OP_LW: u32 = 5;
export const OP_LD: u32 = 6;
export const OP_LBU: u32 = 7;
export const OP_LHU: u32 = 8;
export const OP_LWU: u32 = 9;
export const OP_FLW: u32 = 10;
export const OP_FLD: u32 = 11;
// stores (imm: offset)
export const OP_SB: u32 = 12;
export const OP_SH: u32 = 13;
export const OP_SW: u32 = 14;
export const OP_SD: u32 = 15;
export const OP_FSW: u32 = 16;
export const OP_FSD: u32 = 17;
// register-immediate (imm: immediate or shift amount)
export const OP_ADDI: u32 = 18;
export const OP_SLTI: u32 = 19;
export const OP_SLTIU: u32 = 20;
export const OP_XORI: u32 = 21;
export const OP_ORI: u32 = 22;
export const OP_ANDI: u32 = 23;
export const OP_SLLI: u32 = 24;
export const OP_SRLI: u32 = 25;
export const OP_SRAI: u32 = 26;
export const OP_BCLRI: u32 = 27;
export const OP_BSETI: u32 = 28;
export const OP_BINVI: u32 = 29;
export const OP_BEXTI: u32 = 30;
export const OP_RORI: u32 = 31;
export const OP_CLZ: u32 = 32;
export const OP_CTZ: u32 = 33;
export const OP_CPOP: u32 = 34;
export const OP_SEXTB: u32 = 35;
export const OP_SEXTH: u32 = 36;
export const OP_ORCB: u32 = 37;
export const OP_REV8: u32 = 38;
export const OP_ADDIW: u32 = 39;
export const OP_SLLIW: u32 = 40;
export const OP_SRLIW: u32 = 41;
export const OP_SRAIW: u32 = 42;
export const OP_SLLIUW: u32 = 43;
export const OP_CLZW: u32 = 44;
export const OP_CTZW: u32 = 45;
export const OP_CPOPW: u32 = 46;
export const OP_RORIW: u32 = 47;
export const OP_LUI: u32 = 48; // imm: the value
export const OP_AUIPC: u32 = 49; // imm: the offset
// register-register
export const OP_ADD: u32 = 50;
export const OP_SUB: u32 = 51;
export const OP_SLL: u32 = 52;
export const OP_SLT: u32 = 53;
export const OP_SLTU: u32 = 54;
export const OP_XOR: u32 = 55;
export const OP_SRL: u32 = 56;
export const OP_SRA: u32 = 57;
export const OP_OR: u32 = 58;
export const OP_AND: u32 = 59;
export const OP_MUL: u32 = 60;
export const OP_MULH: u32 = 61;
export const OP_MULHSU: u32 = 62;
export const OP_MULHU: u32 = 63;
export const OP_DIV: u32 = 64;
export const OP_DIVU: u32 = 65;
export const OP_REM: u32 = 66;
export const OP_REMU: u32 = 67;
export const OP_SH1ADD: u32 = 68;
export const OP_SH2ADD: u32 = 69;
export const OP_SH3ADD: u32 = 70;
export const OP_ANDN: u32 = 71;
export const OP_ORN: u32 = 72;
export const OP_XNOR: u32 = 73;
export const OP_MIN: u32 = 74;
export const OP_MINU: u32 = 75;
export const OP_MAX: u32 = 76;
export const OP_MAXU: u32 = 77;
export const OP_ROL: u32 = 78;
export const OP_ROR: u32 = 79;
export const OP_BCLR: u32 = 80;
export const OP_BEXT: u32 = 81;
export const OP_BINV: u32 = 82;
export const OP_BSET: u32 = 83;
export const OP_ADDW: u32 = 84;
export const OP_SUBW: u32 = 85;
export const OP_SLLW: u32 = 86;
export const OP_SRLW: u32 = 87;
export const OP_SRAW: u32 = 88;
export const OP_MULW: u32 = 89;
export const OP_DIVW: u32 = 90;
export const OP_DIVUW: u32 = 91;
export const OP_REMW: u32 = 92;
export const OP_REMUW: u32 = 93;
export const OP_ADDUW: u32 = 94;
export const OP_ZEXTH: u32 = 95;
export const OP_SH1ADDUW: u32 = 96;
export const OP_SH2ADDUW: u32 = 97;
export const OP_SH3ADDUW: u32 = 98;
export const OP_ROLW: u32 = 99;
export const OP_RORW: u32 = 100;
// control transfer (imm: offset)
export const OP_BEQ: u32 = 101;
export const OP_BNE: u32 = 102;
export const OP_BLT: u32 = 103;
export const OP_BGE: u32 = 104;
export const OP_BLTU: u32 = 105;
export const OP_BGEU: u32 = 106;
export const OP_JAL: u32 = 107;
export const OP_JALR: u32 = 108;
// system and the rest (imm: inst)
export const OP_FENCE_I: u32 = 109;
export const OP_ECALL: u32 = 110;
export const OP_EBREAK: u32 = 111;
export const OP_MRET: u32 = 112;
export const OP_SRET: u32 = 113;
export const OP_WFI: u32 = 114;
export const OP_SFENCE_VMA: u32 = 115;
export const OP_CSR: u32 = 116; // inst
export const OP_AMO: u32 = 117; // inst
export const OP_FP: u32 = 118; // inst: F/D arithmetic, conversions, moves (fp.ts)
// The common double-precision arithmetic, dispatched without execFp's decoding (imm: inst).
export const OP_FADD_D: u32 = 119;
export const OP_FSUB_D: u32 = 120;
export const OP_FMUL_D: u32 = 121;
export const OP_FDIV_D: u32 = 122;
// Never decoded: the host puts it in the slot of a translated block's first instruction, with
// the translation's index in the function table as the immediate (docs/TRANSLATION.md).
export const OP_JIT: u32 = 123;
// A fence ordering earlier stores before later loads (fence w,r and wider). The host orders all
// other pairs already (x86 is TSO; wasm's plain accesses on shared memory are not reordered
// more than that by V8), so other fences, fence.tso included, are OP_NOP.
export const OP_FENCE: u32 = 124;

@inline function iImm(inst: u32): i32 {
  return <i32>inst >> 20;
}
@inline function sImm(inst: u32): i32 {
  return (<i32>(inst & 0xfe000000) >> 20) | <i32>((inst >> 7) & 31);
}
@inline function bImm(inst: u32): i32 {
  return (<i32>(inst & 0x80000000) >> 19) | <i32>((inst & 0x80) << 4) | <i32>((inst >> 20) & 0x7e0) | <i32>((inst >> 7) & 0x1e);
}
@inline function jImm(inst: u32): i32 {
  return (<i32>(inst & 0x80000000) >> 11) | <i32>(inst & 0xff000) | <i32>((inst >> 9) & 0x800) | <i32>((inst >> 20) & 0x7fe);
}

@inline function slot(op: u32, inst: u32, imm: i32): u64 {
  const regs = (((inst >> 7) & 31) << 11) | (((inst >> 15) & 31) << 19) | (((inst >> 20) & 31) << 27);
  return <u64>(op | regs) | (<u64><u32>imm << 32);
}

/**
 * Decode an instruction: `bits` is the 32-bit word at pc, of which only the low half counts
 * when it is compressed. Returns the slot (never 0).
 */
export function decode(bits: u32): u64 {
  if ((bits & 3) != 3) {
    const inst = expand(bits & 0xffff);
    if (inst == 0) return OP_ILLEGAL | COMPRESSED;
    return decode32(inst) | COMPRESSED;
  }
  return decode32(bits);
}

function decode32(inst: u32): u64 {
  const rd = (inst >> 7) & 31;
  const rs1 = (inst >> 15) & 31;
  const rs2 = (inst >> 20) & 31;
  const f3 = (inst >> 12) & 7;
  const f7 = inst >> 25;
  let op: u32 = OP_ILLEGAL;
  let imm: i32 = 0;
  let pure = false; // writes only rd (so rd = x0 makes it a no-op)

  switch ((inst >> 2) & 31) {
    case 0x00: // LOAD
      if (f3 != 7) { op = OP_LB + f3; imm = iImm(inst); }
      break;
    case 0x01: // LOAD-FP
      if (f3 == 2 || f3 == 3) { op = f3 == 2 ? OP_FLW : OP_FLD; imm = iImm(inst); }
      break;
    case 0x03: // MISC-MEM
      if (f3 == 0) op = (inst >> 28) != 8 && ((inst >> 24) & 1) != 0 && ((inst >> 21) & 1) != 0 ? OP_FENCE : OP_NOP;
      else if (f3 == 1) op = OP_FENCE_I;
      break;
    case 0x04: { // OP-IMM
      pure = true;
      imm = iImm(inst);
      const hi6 = inst >> 26;
      const sh = (inst >> 20) & 63;
      switch (f3) {
        case 0: op = OP_ADDI; break;
        case 2: op = OP_SLTI; break;
        case 3: op = OP_SLTIU; break;
        case 4: op = OP_XORI; break;
        case 6: op = OP_ORI; break;
        case 7: op = OP_ANDI; break;
        case 1:
          imm = <i32>sh;
          if (hi6 == 0) op = OP_SLLI;
          else if (hi6 == 0x12) op = OP_BCLRI;
          else if (hi6 == 0x0a) op = OP_BSETI;
          else if (hi6 == 0x1a) op = OP_BINVI;
          else if (hi6 == 0x18) {
            if (sh == 0) op = OP_CLZ;
            else if (sh == 1) op = OP_CTZ;
            else if (sh == 2) op = OP_CPOP;
            else if (sh == 4) op = OP_SEXTB;
            else if (sh == 5) op = OP_SEXTH;
          }
          break;
        default: // 5
          imm = <i32>sh;
          if (hi6 == 0) op = OP_SRLI;
          else if (hi6 == 0x10) op = OP_SRAI;
          else if (hi6 == 0x12) op = OP_BEXTI;
          else if (hi6 == 0x18) op = OP_RORI;
          else if ((inst >> 20) == 0x287) op = OP_ORCB;
          else if ((inst >> 20) == 0x6b8) op = OP_REV8;
      }
      break;
    }
    case 0x05: // AUIPC
      op = OP_AUIPC; imm = <i32>(inst & 0xfffff000); pure = true;
      break;
    case 0x06: { // OP-IMM-32
      pure = true;
      if (f3 == 0) { op = OP_ADDIW; imm = iImm(inst); }
      else if (f3 == 1) {
        imm = <i32>((inst >> 20) & 31);
        if (f7 == 0) op = OP_SLLIW;
        else if ((inst >> 26) == 0x02) { op = OP_SLLIUW; imm = <i32>((inst >> 20) & 63); }
        else if (f7 == 0x30 && rs2 == 0) op = OP_CLZW;
        else if (f7 == 0x30 && rs2 == 1) op = OP_CTZW;
        else if (f7 == 0x30 && rs2 == 2) op = OP_CPOPW;
      } else if (f3 == 5) {
        imm = <i32>((inst >> 20) & 31);
        if (f7 == 0) op = OP_SRLIW;
        else if (f7 == 0x20) op = OP_SRAIW;
        else if (f7 == 0x30) op = OP_RORIW;
      }
      break;
    }
    case 0x08: // STORE
      if (f3 <= 3) { op = OP_SB + f3; imm = sImm(inst); }
      break;
    case 0x09: // STORE-FP
      if (f3 == 2 || f3 == 3) { op = f3 == 2 ? OP_FSW : OP_FSD; imm = sImm(inst); }
      break;
    case 0x0b: { // AMO: LR 02, SC 03, swap 01, add 00, xor 04, and 0c, or 08, min/max 10-1c
      const fn = inst >> 27;
      const valid = fn <= 4 || fn == 0x08 || fn == 0x0c || (fn & 0x13) == 0x10;
      if ((f3 == 2 || f3 == 3) && valid && !(fn == 2 && rs2 != 0)) { op = OP_AMO; imm = <i32>inst; }
      break;
    }
    case 0x0c: // OP
      pure = true;
      switch ((f7 << 3) | f3) {
        case 0x000: op = OP_ADD; break;
        case 0x100: op = OP_SUB; break;
        case 0x001: op = OP_SLL; break;
        case 0x002: op = OP_SLT; break;
        case 0x003: op = OP_SLTU; break;
        case 0x004: op = OP_XOR; break;
        case 0x005: op = OP_SRL; break;
        case 0x105: op = OP_SRA; break;
        case 0x006: op = OP_OR; break;
        case 0x007: op = OP_AND; break;
        case 0x008: op = OP_MUL; break;
        case 0x009: op = OP_MULH; break;
        case 0x00a: op = OP_MULHSU; break;
        case 0x00b: op = OP_MULHU; break;
        case 0x00c: op = OP_DIV; break;
        case 0x00d: op = OP_DIVU; break;
        case 0x00e: op = OP_REM; break;
        case 0x00f: op = OP_REMU; break;
        case 0x082: op = OP_SH1ADD; break;
        case 0x084: op = OP_SH2ADD; break;
        case 0x086: op = OP_SH3ADD; break;
        case 0x107: op = OP_ANDN; break;
        case 0x106: op = OP_ORN; break;
        case 0x104: op = OP_XNOR; break;
        case 0x02c: op = OP_MIN; break;
        case 0x02d: op = OP_MINU; break;
        case 0x02e: op = OP_MAX; break;
        case 0x02f: op = OP_MAXU; break;
        case 0x181: op = OP_ROL; break;
        case 0x185: op = OP_ROR; break;
        case 0x121: op = OP_BCLR; break;
        case 0x125: op = OP_BEXT; break;
        case 0x1a1: op = OP_BINV; break;
        case 0x0a1: op = OP_BSET; break;
      }
      break;
    case 0x0d: // LUI
      op = OP_LUI; imm = <i32>(inst & 0xfffff000); pure = true;
      break;
    case 0x0e: // OP-32
      pure = true;
      switch ((f7 << 3) | f3) {
        case 0x000: op = OP_ADDW; break;
        case 0x100: op = OP_SUBW; break;
        case 0x001: op = OP_SLLW; break;
        case 0x005: op = OP_SRLW; break;
        case 0x105: op = OP_SRAW; break;
        case 0x008: op = OP_MULW; break;
        case 0x00c: op = OP_DIVW; break;
        case 0x00d: op = OP_DIVUW; break;
        case 0x00e: op = OP_REMW; break;
        case 0x00f: op = OP_REMUW; break;
        case 0x020: op = OP_ADDUW; break;
        case 0x024: if (rs2 == 0) op = OP_ZEXTH; break;
        case 0x082: op = OP_SH1ADDUW; break;
        case 0x084: op = OP_SH2ADDUW; break;
        case 0x086: op = OP_SH3ADDUW; break;
        case 0x181: op = OP_ROLW; break;
        case 0x185: op = OP_RORW; break;
      }
      break;
    case 0x10: case 0x11: case 0x12: case 0x13: case 0x14: // FMADD..FNMADD, OP-FP
      op = ((inst >> 2) & 31) == 0x14 && (f7 & 0x73) == 0x01 ? OP_FADD_D + (f7 >> 2) : OP_FP; // fadd.d..fdiv.d
      imm = <i32>inst;
      break;
    case 0x18: // BRANCH
      if (f3 != 2 && f3 != 3) { op = f3 < 2 ? OP_BEQ + f3 : OP_BLT + f3 - 4; imm = bImm(inst); }
      break;
    case 0x19: // JALR
      if (f3 == 0) { op = OP_JALR; imm = iImm(inst); }
      break;
    case 0x1b: // JAL
      op = OP_JAL; imm = jImm(inst);
      break;
    case 0x1c: // SYSTEM
      if (f3 == 0) {
        if (inst == 0x00000073) op = OP_ECALL;
        else if (inst == 0x00100073) op = OP_EBREAK;
        else if (inst == 0x30200073) op = OP_MRET;
        else if (inst == 0x10200073) op = OP_SRET;
        else if (inst == 0x10500073) op = OP_WFI;
        else if (f7 == 0x09 && rd == 0) op = OP_SFENCE_VMA;
      } else if (f3 != 4) {
        op = OP_CSR; imm = <i32>inst;
      }
      break;
  }
  if (op == OP_ILLEGAL) return OP_ILLEGAL;
  if (pure && rd == 0) return OP_NOP;
  return slot(op, inst, imm);
}
