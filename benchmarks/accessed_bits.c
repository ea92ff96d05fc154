/*
 * accessed_bits: touch one byte of every page of a buffer, forever, and count the passes.
 *
 *   accessed_bits MIB COUNTER_FILE
 *
 * Prints the buffer's address, then replaces COUNTER_FILE with the number of passes done
 * every 64 passes (written beside it and renamed over it, so a reader never sees it empty).  Small pages only (MADV_NOHUGEPAGE): one translation per 4 KiB, as the
 * kernel's accessed-bit scanners (DAMON, reclaim) see them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MIB COUNTER_FILE\n", argv[0]);
        return 2;
    }
    size_t bytes = strtoul(argv[1], NULL, 10) << 20;
    volatile char *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED || madvise((void *)buf, bytes, MADV_NOHUGEPAGE) != 0) {
        perror("mmap");
        return 1;
    }
    memset((void *)buf, 1, bytes);
    printf("%p\n", (void *)buf);
    fflush(stdout);
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]) >= (int)sizeof(tmp)) {
        fprintf(stderr, "counter path too long: %s\n", argv[2]);
        return 2;
    }
    unsigned long sum = 0;
    for (unsigned long passes = 1;; passes++) {
        for (size_t i = 0; i < bytes; i += 4096)
            sum += buf[i];
        if (passes % 64 == 0) {
            FILE *f = fopen(tmp, "w");
            if (f) {
                fprintf(f, "%lu %lu\n", passes, sum & 1);
                if (fclose(f) == 0)
                    rename(tmp, argv[2]);
            }
        }
    }
}
