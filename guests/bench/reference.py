#!/usr/bin/env python3
"""Independent reference computations of the benchmark checksums (EXPECTED in
int.c, mem.c, branch.c, fp.c, rvc.c, calls.c). Not run by the build or the tests: run
`python3 reference.py` after changing a benchmark and update its EXPECTED.
Each function re-implements one benchmark iteration from its description,
with Python integers (masked to the C widths) and IEEE doubles (fp.c is
compiled with -ffp-contract=off so the operation sequence is the same)."""
import math
import struct
from collections import Counter

M64 = (1 << 64) - 1


def ref_int():
    M32=0xffffffff; M64=(1<<64)-1
    seed=0x9e3779b97f4a7c15
    N=16384
    x=(seed & M32) | 1
    data=[]
    for i in range(N):
        x^=(x<<13)&M32; x^=x>>17; x^=(x<<5)&M32; data.append(x)
    tab=[]
    for i in range(256):
        c=i
        for k in range(8): c = (0xedb88320 ^ (c>>1)) if c&1 else c>>1
        tab.append(c)
    c=M32
    for w in data:
        for b in range(4):
            c = tab[(c ^ w) & 0xff] ^ (c >> 8); w >>= 8
    crc=(~c)&M32
    data.sort()
    h=0xcbf29ce484222325
    for v in data:
        h^=v; h=(h*0x100000001b3)&M64; h^=h>>29
    return (h ^ (crc<<32) ^ data[N//2]) & M64


def ref_mem():
    M64=(1<<64)-1
    seed=0x9e3779b97f4a7c15
    N=512*1024
    s=seed
    def lcg():
        nonlocal s
        s=(s*6364136223846793005+1442695040888963407)&M64
        return s>>33
    nxt=list(range(N))
    for i in range(N-1,0,-1):
        j=lcg()%i
        nxt[i],nxt[j]=nxt[j],nxt[i]
    p=0; sm=0
    for k in range(2*N):
        p=nxt[p]; sm=(sm+(p^k))&M64
    for k in range(N):
        j=lcg()&(N-1)
        nxt[j]=(nxt[j]+k)&M64
        sm^=nxt[(j*7+3)&(N-1)]
    return (sm ^ ((p<<40)&M64)) & M64


def ref_branch():
    M64=(1<<64)-1
    seed=0x9e3779b97f4a7c15
    LIMIT=3000
    LOADI,MOV,ADD,ADDI,SHR1,MUL3P1,JODD,JEQ,JNE,JMP,ACC,MAX,HALT=range(13)
    prog=[(LOADI,0,0,0,1),(LOADI,3,0,0,1),(LOADI,4,0,0,LIMIT),(LOADI,5,0,0,0),(LOADI,6,0,0,0),
    (MOV,1,0,0,0),(LOADI,2,0,0,0),(JEQ,1,3,0,13),(JODD,1,0,0,11),(SHR1,1,0,0,0),(JMP,0,0,0,12),
    (MUL3P1,1,0,0,0),(ADDI,2,2,0,1),(JNE,1,3,0,7),(ACC,5,2,0,0),(MAX,6,2,0,0),(ADDI,0,0,0,1),(JNE,0,4,0,5),(HALT,0,0,0,0)]
    r=[0]*8; pc=0; ex=0
    while True:
        op,a,b,c,imm=prog[pc]; pc+=1; ex+=1
        if op==LOADI: r[a]=imm&M64
        elif op==MOV: r[a]=r[b]
        elif op==ADDI: r[a]=(r[b]+imm)&M64
        elif op==SHR1: r[a]>>=1
        elif op==MUL3P1: r[a]=(r[a]*3+1)&M64
        elif op==JODD:
            if r[a]&1: pc=imm
        elif op==JEQ:
            if r[a]==r[b]: pc=imm
        elif op==JNE:
            if r[a]!=r[b]: pc=imm
        elif op==JMP: pc=imm
        elif op==ACC: r[a]=(r[a]+r[b])&M64
        elif op==MAX:
            if r[b]>r[a]: r[a]=r[b]
        elif op==HALT: break
    s=seed; bs=[]
    for i in range(65536):
        s^=(s<<7)&M64; s^=s>>9; bs.append(s&0xff)
    lo=mid=hi=runs=0; prev=0
    for i,b in enumerate(bs):
        if b<64: lo+=b
        elif b<160: mid^=(b<<(i&31))
        else: hi+=1
        if (b&1)!=(prev&1): runs+=1
        prev=b
    return ((ex ^ (r[5]<<20) ^ (r[6]<<48) ^ lo ^ (mid<<3) ^ (hi<<32) ^ (runs<<16)) & M64) & M64


def ref_fp():
    M64=(1<<64)-1
    seed=0x9e3779b97f4a7c15
    NB=5; STEPS=20000; MN=48
    def bits(d): return struct.unpack('<Q', struct.pack('<d', d))[0]
    dt=0.01
    px=[float(i*3-5) for i in range(NB)]
    py=[float(i*i)*0.5-2.0 for i in range(NB)]
    pz=[float(i%2)*0.25 for i in range(NB)]
    vx=[float(2-i)*0.125 for i in range(NB)]
    vy=[float(i-1)*0.0625 for i in range(NB)]
    vz=[0.03125*float(i) for i in range(NB)]
    m=[1.0+float(i)*0.5 for i in range(NB)]
    for s in range(STEPS):
        for i in range(NB):
            for j in range(i+1,NB):
                dx=px[i]-px[j]; dy=py[i]-py[j]; dz=pz[i]-pz[j]
                d2=((dx*dx+dy*dy)+dz*dz)+0.01
                mag=dt/(d2*math.sqrt(d2))
                vx[i]=vx[i]-(dx*m[j])*mag; vy[i]=vy[i]-(dy*m[j])*mag; vz[i]=vz[i]-(dz*m[j])*mag
                vx[j]=vx[j]+(dx*m[i])*mag; vy[j]=vy[j]+(dy*m[i])*mag; vz[j]=vz[j]+(dz*m[i])*mag
        for i in range(NB):
            px[i]=px[i]+dt*vx[i]; py[i]=py[i]+dt*vy[i]; pz[i]=pz[i]+dt*vz[i]
    e=0.0
    for i in range(NB):
        e=e+(0.5*m[i])*((vx[i]*vx[i]+vy[i]*vy[i])+vz[i]*vz[i])
        for j in range(i+1,NB):
            dx=px[i]-px[j]; dy=py[i]-py[j]; dz=pz[i]-pz[j]
            e=e-(m[i]*m[j])/math.sqrt(((dx*dx+dy*dy)+dz*dz)+0.01)
    s=seed
    def sx(v): return v-(1<<64) if v>>63 else v
    ma=[[0.0]*MN for _ in range(MN)]; mb=[[0.0]*MN for _ in range(MN)]
    for i in range(MN):
        for j in range(MN):
            s=(s*6364136223846793005+1442695040888963407)&M64
            ma[i][j]=float(sx(s>>44))/1048576.0-0.5
            s=(s*6364136223846793005+1442695040888963407)&M64
            mb[i][j]=float(sx(s>>44))/524288.0-1.0
    sm=0.0
    for i in range(MN):
        for j in range(MN):
            acc=0.0
            for k in range(MN): acc=acc+ma[i][k]*mb[k][j]
            c=acc/3.0
            sm=sm+c*float(i-j)
    b=bits(sm)
    return ((bits(e) ^ (((b<<17)|(b>>47))&M64))&M64) & M64


def ref_rvc():
    M64=(1<<64)-1
    seed=0x9e3779b97f4a7c15
    words=["risc","five","hart","trap","page","table","vector","fence","load","store","atomic","csr","timer","wasm","core","bus"]
    s=seed
    def rng():
        nonlocal s
        s=(s*6364136223846793005+1442695040888963407)&M64
        return (s>>33)&0xffffffff
    text=[]
    n=0
    while n<32768:
        w=words[rng()&15]; text.append(w); n+=len(w)+1
    def djb2(w):
        h=5381
        for ch in w.encode(): h=(h*33+ch)&0xffffffff
        return h
    cnt=Counter(text)
    wsum=sum(c*djb2(w) for w,c in cnt.items())&M64
    v=128; walk=[]
    for i in range(32768):
        r=rng()
        if (r&7)==0: v=(v+(1 if r&8 else -1))&0xff
        walk.append(v)
    out=[]; i=0
    while i<len(walk):
        b=walk[i]; run=1
        while i+run<len(walk) and walk[i+run]==b and run<255: run+=1
        out+= [b,run]; i+=run
    m=len(out)
    a=1;bb=0
    for x in out:
        a=(a+x)%65521; bb=(bb+a)%65521
    ad=(bb<<16)|a
    return ((wsum ^ (ad<<32) ^ (m<<8) ^ n)&M64) & M64


def ref_calls():
    M64=(1<<64)-1
    seed=0x9e3779b97f4a7c15
    state=[(seed+i)&M64 for i in range(16)]
    def f(n, x):
        s=state[n&15]
        y=((x^s)*(0x9e3779b97f4a7c15+2*n))&M64
        y^=y>>(n%29+3)
        state[n&15]=(s+y+n)&M64
        if y&1: y=(y+n)&M64
        return y
    x=seed; r=seed
    for i in range(16384):
        r=(r*6364136223846793005+1442695040888963407)&M64
        x=f((r>>33)&511, x)
    h=x
    for i in range(16):
        h=((h^state[i])*0x100000001b3)&M64
    return h


if __name__ == "__main__":
    for name in ("int", "mem", "branch", "fp", "rvc", "calls"):
        print(f"bench-{name}: EXPECTED 0x{globals()['ref_' + name]():016x}")
