/* pjload: resource exhaustion from inside a jail (tests/test_limits.py).
 *   pjload fork N   fork up to N children that sleep; print how many forks succeeded,
 *                   then kill them all and exit 0
 *   pjload mem MB   allocate and touch MB megabytes; print "allocated MB" (if it lives)
 * Static, so it needs nothing in the jail. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) { fputs("usage: pjload fork N | mem MB\n", stderr); return 2; }
    long n = atol(argv[2]);
    if (strcmp(argv[1], "fork") == 0) {
        pid_t *kids = calloc((size_t)n, sizeof(pid_t));
        long made = 0;
        int err = 0;
        for (; made < n; made++) {
            pid_t pid = fork();
            if (pid < 0) { err = errno; break; }
            if (pid == 0) { pause(); _exit(0); }
            kids[made] = pid;
        }
        printf("forked %ld of %ld (%s)\n", made, n, err ? strerror(err) : "all");
        fflush(stdout);
        for (long i = 0; i < made; i++) kill(kids[i], SIGKILL);
        for (long i = 0; i < made; i++) waitpid(kids[i], NULL, 0);
        return 0;
    }
    if (strcmp(argv[1], "mem") == 0) {
        for (long i = 0; i < n; i++) {
            char *p = malloc(1 << 20);
            if (p == NULL) { printf("malloc failed at %ld MB\n", i); return 1; }
            memset(p, 1, 1 << 20);
        }
        printf("allocated %ld MB\n", n);
        return 0;
    }
    return 2;
}
