/*
 * pam-jail-shell and pam-jail-lsh: the login shells' exec stub.
 *
 * A login shell is started by sshd (or login, su) with an environment the client can
 * partly choose: AcceptEnv, PermitUserEnvironment (~/.ssh/environment). Variables such as
 * LD_PRELOAD, LD_AUDIT or GCONV_PATH are read by the dynamic loader and by libc BEFORE
 * any pam_jail code runs: in a dynamically linked entry they would run the user's code on
 * the host, outside the jail. This stub is linked statically (no ld.so ever reads its
 * environment), removes what glibc itself removes for setuid programs (secure-execution
 * mode, glibc's unsecvars.h) and a little more, and execs Debian's python3 -I -S on the
 * real entry script with a fixed argv[0..2]; the caller's arguments follow unchanged.
 *
 * The locale variables the client sent (LANG, LANGUAGE, LC_*) are handed over as
 * PAM_JAIL_SENT_<NAME>, never under their own names: Python's start-up rewrites those
 * in its environ (PEP 538 sets LC_CTYPE=C.UTF-8 when the locale is C or cannot be
 * loaded, even over the client's own LC_CTYPE; -I makes it ignore PYTHONCOERCECLOCALE),
 * and what a jailed program gets must be what the client sent, not what the interpreter
 * made of it. pam_jail/login/shell_entry.py (client_environment) puts them back and drops the
 * interpreter's. Python itself then runs in the C locale (coerced to C.UTF-8).
 *
 * It decides nothing: no config, no policy, no confinement (pam_jail/login/shell_entry.py does
 * all of that). Built per install (scripts/install, the Debian package) with
 * -DENTRY_SCRIPT="LIBDIR/pam-jail-shell.py" or ".../pam-jail-lsh.py".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ENTRY_SCRIPT
#error "build with -DENTRY_SCRIPT=\"/path/to/entry.py\""
#endif
#define PYTHON "/usr/bin/python3"

extern char **environ;

/* Names removed outright. glibc's UNSECURE_ENVVARS (what the loader drops in
 * secure-execution mode): each steers the loader, iconv, locale loading, the resolver,
 * malloc or temporary files of the python3 we exec. */
static const char *const drop_names[] = {
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN",
    "LOCPATH", "MALLOC_TRACE", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS",
    "TMPDIR", "TZDIR",
    /* not in glibc's list, but read before our code or by the shells we may exec */
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "PERL5OPT",
    "PERL5LIB", "RUBYOPT", "NODE_OPTIONS", NULL,
};
/* Prefixes removed outright: the loader's LD_* (all of them, present and future),
 * malloc's tunables, and python's own (ignored under -I; removed anyway). */
static const char *const drop_prefixes[] = {"LD_", "MALLOC_", "PYTHON", NULL};
/* Locale and time zone names: glibc reads a name containing '/' as a file path
 * (setlocale, tzset). Kept only as plain names. */
static const char *const plain_names[] = {"LANG", "LANGUAGE", "LC_", "TZ", NULL};
/* Locale names handed over under SENT_PREFIX (above; the shell entry reads them back). */
static const char *const locale_names[] = {"LANG", "LANGUAGE", "LC_", NULL};
#define SENT_PREFIX "PAM_JAIL_SENT_"

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int name_is(const char *entry, const char *name) {
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static int plain_value(const char *value) {
    for (const char *p = value; *p; p++) {
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f) return 0;
    }
    return strstr(value, "..") == NULL;
}

static int is_locale(const char *entry) {
    for (int i = 0; locale_names[i]; i++) {
        size_t n = strlen(locale_names[i]);
        /* LANG=, LANGUAGE= exactly; LC_ as a prefix */
        if (strncmp(entry, locale_names[i], n) == 0 &&
            (locale_names[i][n - 1] == '_' || entry[n] == '='))
            return 1;
    }
    return 0;
}

static int keep(const char *entry) {
    const char *eq = strchr(entry, '=');
    if (eq == NULL || eq == entry) return 0;
    if (starts_with(entry, SENT_PREFIX)) return 0;  /* only this stub sets those */
    for (int i = 0; drop_names[i]; i++)
        if (name_is(entry, drop_names[i])) return 0;
    for (int i = 0; drop_prefixes[i]; i++)
        if (starts_with(entry, drop_prefixes[i])) return 0;
    for (int i = 0; plain_names[i]; i++)
        if (starts_with(entry, plain_names[i])) return plain_value(eq + 1);
    return 1;
}

int main(int argc, char **argv) {
    size_t n = 0;
    for (char **e = environ; e && *e; e++) n++;
    char **env = calloc(n + 1, sizeof(char *));
    char **args = calloc((size_t)argc + 3, sizeof(char *));
    if (env == NULL || args == NULL) {
        fputs("pam_jail: login refused: out of memory\n", stderr);
        return 1;
    }
    size_t k = 0;
    for (char **e = environ; e && *e; e++) {
        if (!keep(*e)) continue;
        if (is_locale(*e)) {            /* NAME=VALUE -> PAM_JAIL_SENT_NAME=VALUE */
            char *sent = malloc(sizeof(SENT_PREFIX) + strlen(*e));
            if (sent == NULL) {
                fputs("pam_jail: login refused: out of memory\n", stderr);
                return 1;
            }
            strcpy(sent, SENT_PREFIX);
            strcat(sent, *e);
            env[k++] = sent;
        } else {
            env[k++] = *e;
        }
    }
    env[k] = NULL;
    args[0] = PYTHON;
    args[1] = "-IS";
    args[2] = ENTRY_SCRIPT;
    for (int i = 1; i < argc; i++) args[i + 2] = argv[i];
    args[argc + 2] = NULL;
    execve(PYTHON, args, env);
    fprintf(stderr, "pam_jail: login refused: installation broken (execute %s: %s)\n",
            PYTHON, strerror(errno));
    return 1;
}
