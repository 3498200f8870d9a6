/* burn: reads its request body (discarded), then keeps one CPU busy for
 * MS milliseconds of processor time, and prints how long it burned.
 * A program that costs CPU, not wall time. Standard C only:
 *
 *     cc -O2 -std=c99 -o burn burn.c
 *     burn [MS]        (default 10, at most 600000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    long ms = 10;
    if (argc > 1) {
        char *end;
        ms = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || ms < 0 || ms > 600000) {
            fprintf(stderr, "burn: MS must be 0..600000, not '%s'\n", argv[1]);
            return 2;
        }
    }
    char buf[4096];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {
    }
    clock_t until = clock() + (clock_t)(ms * (CLOCKS_PER_SEC / 1000.0));
    volatile unsigned long spin = 0;
    while (clock() < until) {
        for (int i = 0; i < 10000; i++) {
            spin += (unsigned long)i * 2654435761u;
        }
    }
    printf("burned %ld ms\n", ms);
    return 0;
}
