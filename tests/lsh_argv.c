/* pjargv: print what execve delivered, for tests/test_lsh_e2e.py.
 *
 * Output (stdout, nothing else): argc in decimal, then every argv string, then every
 * environment string, each terminated by a NUL byte. Static (gcc -static), so it runs
 * in a jail without a C library. It never interprets its arguments. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static int put(const char *s)
{
    size_t n = strlen(s) + 1;   /* with the NUL */
    return fwrite(s, 1, n, stdout) == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    char count[32];
    snprintf(count, sizeof count, "%d", argc);
    if (put(count) < 0)
        return 2;
    for (int i = 0; i < argc; i++)
        if (put(argv[i]) < 0)
            return 2;
    for (char **e = environ; *e; e++)
        if (put(*e) < 0)
            return 2;
    return fflush(stdout) == 0 ? 0 : 2;
}
