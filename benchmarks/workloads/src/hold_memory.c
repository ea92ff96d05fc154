/*
 * Hold memory: the harness's way to shrink a node, so that a working set small
 * enough for TCG runs still exceeds the fast node.
 *
 *   numactl --membind=0 hold_memory SIZE_MIB
 *
 * Maps SIZE_MIB, touches every page, locks it (mlock: locked pages are neither
 * reclaimed nor demoted or migrated by the kernel's tiering, so the node stays
 * shrunk under every policy), prints `holding pid=N mib=SIZE_MIB`, and sleeps
 * until killed.  Built static on the host (the guest has no compiler).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char *end;
    unsigned long mib = argc == 2 ? strtoul(argv[1], &end, 10) : 0;
    if (argc != 2 || *end || mib == 0) {
        fprintf(stderr, "usage: hold_memory SIZE_MIB (a whole number above 0)\n");
        return 2;
    }
    size_t size = mib << 20;
    char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        fprintf(stderr, "hold_memory: cannot map %lu MiB: %s\n", mib, strerror(errno));
        return 1;
    }
    for (size_t off = 0; off < size; off += 4096) {
        buf[off] = 1;
    }
    if (mlock(buf, size) != 0) {
        fprintf(stderr, "hold_memory: cannot lock %lu MiB: %s\n", mib, strerror(errno));
        return 1;
    }
    printf("holding pid=%d mib=%lu\n", (int)getpid(), mib);
    fflush(stdout);
    for (;;) {
        pause();
    }
}
