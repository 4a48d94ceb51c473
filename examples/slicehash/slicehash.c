// slicehash in C: the twin of src/main.rs, built with wasi-libc, so that
// its way of opening files (open -> openat -> path_open, with the rights
// wasi-libc asks for) is tried too. Reads one line `NAME OFFSET LEN` from
// stdin and prints the lowercase hex SHA-256 of up to LEN bytes of
// /data/NAME from OFFSET on, then a newline. Exit codes as the Rust
// kernel's: 2 a bad input line, 3 the file cannot be opened, seeked or
// read.
//
// It opens with open(), not fopen(): wasi-libc's fopen links fcntl(F_SETFL)
// in (for "a" modes), which imports fd_fdstat_set_flags, a function grid
// kernels may not import; open, lseek and read need only path_open, fd_seek
// and fd_read. SHA-256 is written out here (FIPS 180-4), so the kernel needs
// no library.

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sha256 {
    uint32_t h[8];
    uint8_t block[64];
    size_t used;     // bytes in block
    uint64_t length; // bytes hashed so far
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_init(struct sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->used = 0;
    s->length = 0;
}

static void sha256_block(struct sha256 *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

static void sha256_update(struct sha256 *s, const uint8_t *p, size_t n) {
    s->length += n;
    while (n > 0) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used == 64) {
            sha256_block(s, s->block);
            s->used = 0;
        }
    }
}

static void sha256_hex(struct sha256 *s, char out[65]) {
    uint64_t bits = s->length * 8;
    uint8_t pad[72] = {0x80};
    size_t padding = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++) pad[padding + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padding + 8);
    for (int i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", (unsigned)(s->h[i / 4] >> (24 - 8 * (i % 4))) & 0xff);
    }
}

// A decimal number of at most 18 digits (so it fits an off_t); -1 if not.
static long long number(const char *text) {
    size_t len = strlen(text);
    if (len == 0 || len > 18 || strspn(text, "0123456789") != len) return -1;
    return strtoll(text, NULL, 10);
}

int main(void) {
    char line[1024];
    if (!fgets(line, sizeof line, stdin)) {
        fprintf(stderr, "slicehash: expected `NAME OFFSET LEN` on stdin\n");
        return 2;
    }
    char *fields[4];
    int count = 0;
    for (char *f = strtok(line, " \t\r\n"); f && count < 4; f = strtok(NULL, " \t\r\n")) {
        fields[count++] = f;
    }
    long long offset = count == 3 ? number(fields[1]) : -1;
    long long len = count == 3 ? number(fields[2]) : -1;
    if (offset < 0 || len < 0) {
        fprintf(stderr, "slicehash: expected `NAME OFFSET LEN` with two numbers\n");
        return 2;
    }
    char path[512];
    snprintf(path, sizeof path, "/data/%s", fields[0]);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || lseek(fd, (off_t)offset, SEEK_SET) < 0) {
        fprintf(stderr, "slicehash: %s: %s\n", path, strerror(errno));
        return 3;
    }
    struct sha256 hash;
    sha256_init(&hash);
    static uint8_t buf[64 * 1024];
    unsigned long long left = (unsigned long long)len;
    while (left > 0) {
        size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
        ssize_t got = read(fd, buf, want);
        if (got < 0) {
            fprintf(stderr, "slicehash: %s: %s\n", path, strerror(errno));
            return 3;
        }
        if (got == 0) break;
        sha256_update(&hash, buf, (size_t)got);
        left -= (unsigned long long)got;
    }
    close(fd);
    char hex[65];
    sha256_hex(&hash, hex);
    printf("%s\n", hex);
    return 0;
}
