/*
 * wordfreq: the ten most frequent words of stdin, as a browsergrid kernel.
 *
 * A word is a run of ASCII letters; anything else separates words, and
 * upper case counts as lower case ("The" and "the" are one word). The output
 * is one `COUNT WORD` line per word, by count (highest first), then by word
 * (alphabetical), at most ten lines, or N with `--top N`.
 *
 *   clang --target=wasm32-wasi -O2 -o wordfreq.wasm wordfreq.c
 *
 * The kernel reads and writes with read(2) and write(2), which is all it
 * needs (stdio works too: the grid answers its `fd_seek` with "cannot seek",
 * as for a pipe). Everything else is plain C: an
 * open-addressing hash table of words, then qsort. qsort is not stable, but
 * the order it sorts by is total (no two entries have the same word), so the
 * output is the same on every run.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A distinct word and how often it was seen. */
struct entry {
    char *word;     /* lower case, NUL-terminated; NULL for an empty slot */
    size_t len;
    uint64_t count;
    uint64_t hash;
};

/* The table: a power-of-two number of slots, at most half of them used. */
static struct entry *slots;
static size_t capacity, used;

static void die(const char *message)
{
    size_t len = strlen(message);
    (void)!write(2, "wordfreq: ", 10);
    (void)!write(2, message, len);
    (void)!write(2, "\n", 1);
    exit(1);
}

static void *checked(void *p)
{
    if (p == NULL)
        die("out of memory");
    return p;
}

/* FNV-1a, 64-bit: simple, and the same on every platform. */
static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

/* The slot that holds `word`, or the empty one where it belongs. */
static struct entry *find(const char *word, size_t len, uint64_t hash)
{
    size_t i = hash & (capacity - 1);
    while (slots[i].word != NULL &&
           !(slots[i].hash == hash && slots[i].len == len && memcmp(slots[i].word, word, len) == 0))
        i = (i + 1) & (capacity - 1); /* linear probing */
    return &slots[i];
}

static void grow(void)
{
    struct entry *old = slots;
    size_t old_capacity = capacity;
    capacity = capacity ? capacity * 2 : 1024;
    slots = checked(calloc(capacity, sizeof *slots));
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].word != NULL)
            *find(old[i].word, old[i].len, old[i].hash) = old[i];
    free(old);
}

/* Counts one occurrence of `word` (already in lower case). */
static void count(const char *word, size_t len)
{
    if (2 * (used + 1) > capacity)
        grow();
    uint64_t hash = fnv1a(word, len);
    struct entry *e = find(word, len, hash);
    if (e->word == NULL) {
        e->word = checked(malloc(len + 1));
        memcpy(e->word, word, len);
        e->word[len] = '\0';
        e->len = len;
        e->hash = hash;
        used++;
    }
    e->count++;
}

/* By count, highest first; then by word, in byte (here: alphabetical) order. */
static int by_count_then_word(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return strcmp(a->word, b->word);
}

/* All of stdin, read in growing chunks. */
static char *read_all(size_t *out_len)
{
    size_t len = 0, cap = 1 << 16;
    char *buf = checked(malloc(cap));
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2)
                die("input too large");
            cap *= 2;
            buf = checked(realloc(buf, cap));
        }
        ssize_t n = read(0, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("reading stdin failed");
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *out_len = len;
    return buf;
}

static void write_all(const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(1, s, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("writing stdout failed");
        }
        s += n;
        len -= (size_t)n;
    }
}

/* Appends the decimal digits of `n` to `out`; returns how many. */
static size_t format_u64(uint64_t n, char *out)
{
    char digits[20];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    for (size_t i = 0; i < k; i++)
        out[i] = digits[k - 1 - i];
    return k;
}

static int is_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int main(int argc, char **argv)
{
    size_t top = 10;
    if (argc == 3 && strcmp(argv[1], "--top") == 0) {
        char *end;
        unsigned long n = strtoul(argv[2], &end, 10);
        if (*argv[2] == '\0' || *end != '\0' || argv[2][0] == '-')
            die("--top needs a whole number");
        top = n;
    } else if (argc != 1) {
        die("usage: wordfreq [--top N] < text");
    }

    size_t len;
    char *text = read_all(&len);

    /* Fold each word to lower case in place, then count it. */
    for (size_t i = 0; i < len;) {
        if (!is_letter((unsigned char)text[i])) {
            i++;
            continue;
        }
        size_t start = i;
        for (; i < len && is_letter((unsigned char)text[i]); i++)
            text[i] |= 0x20; /* 'A'..'Z' to 'a'..'z'; lower case stays */
        count(text + start, i - start);
    }

    /* Gather the used slots at the front, sort them, print the first few. */
    size_t n = 0;
    for (size_t i = 0; i < capacity; i++)
        if (slots[i].word != NULL)
            slots[n++] = slots[i];
    qsort(slots, n, sizeof *slots, by_count_then_word);

    /* The whole output in one buffer, written at once. */
    size_t shown = n < top ? n : top, size = 0;
    for (size_t i = 0; i < shown; i++)
        size += 20 + 1 + slots[i].len + 1; /* digits, space, word, newline */
    char *out = checked(malloc(size + 1));
    size_t k = 0;
    for (size_t i = 0; i < shown; i++) {
        k += format_u64(slots[i].count, out + k);
        out[k++] = ' ';
        memcpy(out + k, slots[i].word, slots[i].len);
        k += slots[i].len;
        out[k++] = '\n';
    }
    write_all(out, k);
    return 0;
}
