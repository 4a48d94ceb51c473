#!/usr/bin/env python3
"""A from-the-specification reference of the montecarlo-pi kernel (PROTOCOL.md),
written without any Rust code in view: ChaCha8 with the seed as the key, sample k
from 32-bit words 4k..4k+3. kernels/src/montecarlo.rs pins the numbers this
prints, so the documented stream and the implementation cannot drift apart.

    python3 kernels/reference/montecarlo_pi.py   # prints 78557 799 3985
"""
import struct

def rotl(v,c): return ((v<<c)&0xffffffff)|(v>>(32-c))
def qr(s,a,b,c,d):
    s[a]=(s[a]+s[b])&0xffffffff; s[d]^=s[a]; s[d]=rotl(s[d],16)
    s[c]=(s[c]+s[d])&0xffffffff; s[b]^=s[c]; s[b]=rotl(s[b],12)
    s[a]=(s[a]+s[b])&0xffffffff; s[d]^=s[a]; s[d]=rotl(s[d],8)
    s[c]=(s[c]+s[d])&0xffffffff; s[b]^=s[c]; s[b]=rotl(s[b],7)
def block(key,counter,stream=0,rounds=8):
    const=[0x61707865,0x3320646e,0x79622d32,0x6b206574]
    k=list(struct.unpack('<8I',key))
    st=const+k+[counter&0xffffffff,counter>>32,stream&0xffffffff,stream>>32]
    s=st[:]
    for _ in range(rounds//2):
        qr(s,0,4,8,12);qr(s,1,5,9,13);qr(s,2,6,10,14);qr(s,3,7,11,15)
        qr(s,0,5,10,15);qr(s,1,6,11,12);qr(s,2,7,8,13);qr(s,3,4,9,14)
    return [(s[i]+st[i])&0xffffffff for i in range(16)]
def words(seed, start, n):
    key=struct.pack('<Q',seed)+b'\0'*24
    out=[]
    b=start//16
    while len(out)< n + start%16:
        out+=block(key,b); b+=1
    return out[start%16:start%16+n]
def inside(seed,first,count):
    w=words(seed, first*4, count*4)
    c=0
    for i in range(count):
        u=w[4*i]|(w[4*i+1]<<32); v=w[4*i+2]|(w[4*i+3]<<32)
        x=(u>>11)*2.0**-53; y=(v>>11)*2.0**-53
        if x*x+y*y<=1.0: c+=1
    return c
if __name__ == '__main__':
    print(inside(42, 0, 100000), inside(42, 12345, 1000), inside(7, 999_983, 5000))
