/* pjescape: escape attempts run INSIDE a jail by the e2e tests (an attacker with
 * arbitrary code execution in the jail). Static, so the jail needs no libraries.
 * Every attempt prints exactly one line: "ESCAPED: ..." or "blocked: ...".
 *
 *   pjescape fds MARKER          fchdir() to every open fd, climb "..", look for MARKER
 *   pjescape rechroot MARKER     mkdir+chroot+climb+chroot(".") (the classic re-chroot)
 *   pjescape read PATH           open and read a file
 *   pjescape write PATH          create a file
 *   pjescape kill PID            signal 0 to a host process
 *   pjescape ptrace PID          PTRACE_ATTACH to a host process
 *   pjescape tcp PORT            connect to 127.0.0.1:PORT
 *   pjescape shm KEY             attach a host SysV shared memory segment
 *   pjescape mknod PATH          create a character device (1,3)
 *   pjescape open PATH           open a (device) file read-write
 *   pjescape ids                 print real/effective uid and capabilities
 *   pjescape setuid0             try setuid(0) / setresuid(0,0,0)
 *   pjescape userns              try unshare(CLONE_NEWUSER)
 *   pjescape env                 print the environment, one VAR=value a line
 *   pjescape keyadd SECRET       (on the host) put SECRET in the uid's user keyring
 *   pjescape keyread             read the uid's user keyring ("pjsecret" key)
 *   pjescape bpf | perf | userfaultfd | iouring | handle | tiocsti | i386
 *                                the kernel interfaces the seccomp filter denies
 *   pjescape abstract NAME       connect to the abstract unix socket "\0NAME"
 *   pjescape sockdiag            NETLINK_SOCK_DIAG dump of unix and TCP sockets: ESCAPED
 *                                when it lists a socket that is not one of our own fds
 *   pjescape listen NAME SECS    (a helper, not an attempt) listen on "\0NAME" for SECS
 *                                seconds, printing "ready: NAME" once bound
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

#define KEY_SPEC_USER_KEYRING -4
#define KEYCTL_SEARCH 10
#define KEYCTL_READ 11

static int blocked(const char *what) {
    printf("blocked: %s: %s\n", what, strerror(errno));
    return 0;
}

static int escaped(const char *what) {
    printf("ESCAPED: %s\n", what);
    return 1;
}

static void climb(void) {
    for (int i = 0; i < 64; i++)
        if (chdir("..") != 0) break;
}

static int marker_visible(const char *marker) {
    /* MARKER is absolute on the host; look for it relative to the current dir too */
    return access(marker, F_OK) == 0 || access(marker + 1, F_OK) == 0;
}

static socklen_t abstract_addr(struct sockaddr_un *sa, const char *name) {
    size_t n = strlen(name);
    if (n > sizeof sa->sun_path - 1) n = sizeof sa->sun_path - 1;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path + 1, name, n);     /* sun_path[0] = 0: the abstract namespace */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* Is inode `ino` one of this process's own open fds? */
static int own_inode(unsigned long ino) {
    for (int fd = 0; fd < 1024; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && (unsigned long)st.st_ino == ino) return 1;
    }
    return 0;
}

/* One NETLINK_SOCK_DIAG dump; returns the number of sockets listed that are not ours,
 * or -1 (errno set) when the request or the reply fails. */
static int diag_dump(int s, void *req, size_t len, int unix_kind) {
    struct { struct nlmsghdr nlh; char body[128]; } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = (unsigned)NLMSG_LENGTH(len);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    memcpy(msg.body, req, len);
    if (send(s, &msg, msg.nlh.nlmsg_len, 0) < 0) return -1;
    int foreign = 0;
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n < 0) return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return foreign;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                errno = -e->error;
                return -1;
            }
            unsigned long ino = unix_kind ? ((struct unix_diag_msg *)NLMSG_DATA(h))->udiag_ino
                                          : ((struct inet_diag_msg *)NLMSG_DATA(h))->idiag_inode;
            if (ino != 0 && !own_inode(ino)) foreign++;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: pjescape WHAT [ARG]\n"); return 2; }
    const char *what = argv[1], *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(what, "fds")) {
        int hits = 0;
        if (marker_visible(arg)) return escaped("marker visible without trying");
        for (int fd = 0; fd < 1024; fd++) {
            if (fchdir(fd) != 0) continue;
            climb();
            if (marker_visible(arg)) { printf("ESCAPED: fd %d leads to the host\n", fd); hits++; }
        }
        if (!hits) printf("blocked: fds: no open fd leads out of the jail\n");
        return hits;
    }
    if (!strcmp(what, "rechroot")) {
        mkdir("pjescape.d", 0700);
        if (chroot("pjescape.d") != 0) return blocked("chroot");
        climb();
        if (chroot(".") != 0) return blocked("chroot .");
        if (marker_visible(arg)) return escaped("re-chroot reached the host");
        printf("blocked: rechroot: still inside the jail\n");
        return 0;
    }
    if (!strcmp(what, "read")) {
        char buf[64];
        int fd = open(arg, O_RDONLY);
        if (fd < 0 || read(fd, buf, sizeof buf) < 0) return blocked("read");
        return escaped("read succeeded");
    }
    if (!strcmp(what, "write")) {
        int fd = open(arg, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) return blocked("write");
        return escaped("created the file");
    }
    if (!strcmp(what, "kill")) {
        if (kill(atoi(arg), 0) != 0) return blocked("kill");
        return escaped("can signal the host process");
    }
    if (!strcmp(what, "ptrace")) {
        if (ptrace(PTRACE_ATTACH, atoi(arg), 0, 0) != 0) return blocked("ptrace");
        return escaped("attached to the host process");
    }
    if (!strcmp(what, "tcp")) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(arg)) };
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) return blocked("socket");
        if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) return blocked("connect");
        return escaped("connected to the host's 127.0.0.1");
    }
    if (!strcmp(what, "shm")) {
        int id = shmget((key_t)strtol(arg, 0, 0), 0, 0);
        if (id < 0) return blocked("shmget");
        if (shmat(id, 0, SHM_RDONLY) == (void *)-1) return blocked("shmat");
        return escaped("attached the host's shared memory");
    }
    if (!strcmp(what, "mknod")) {
        if (mknod(arg, S_IFCHR | 0666, makedev(1, 3)) != 0) return blocked("mknod");
        return escaped("created a device node");
    }
    if (!strcmp(what, "open")) {
        int fd = open(arg, O_RDWR);
        if (fd < 0) return blocked("open");
        return escaped("opened the device");
    }
    if (!strcmp(what, "ids")) {
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2];
        memset(d, 0, sizeof d);
        syscall(SYS_capget, &h, d);
        printf("uid=%d euid=%d gid=%d egid=%d capeff=%x%08x capprm=%x%08x\n", getuid(),
               geteuid(), getgid(), getegid(), d[1].effective, d[0].effective,
               d[1].permitted, d[0].permitted);
        return 0;
    }
    if (!strcmp(what, "setuid0")) {
        if (setuid(0) == 0) return escaped("setuid(0) succeeded");
        blocked("setuid");
        if (setresuid(0, 0, 0) == 0) return escaped("setresuid(0,0,0) succeeded");
        return blocked("setresuid");
    }
    if (!strcmp(what, "userns")) {
        if (unshare(CLONE_NEWUSER) != 0) return blocked("unshare");
        return escaped("created a user namespace");
    }
    if (!strcmp(what, "env")) {
        for (char **e = environ; *e; e++) puts(*e);
        return 0;
    }
    if (!strcmp(what, "keyadd")) {
        long id = syscall(SYS_add_key, "user", "pjsecret", arg, strlen(arg),
                          KEY_SPEC_USER_KEYRING);
        if (id < 0) return blocked("add_key");
        printf("added %ld\n", id);
        return 0;
    }
    if (!strcmp(what, "keyread")) {
        char buf[256];
        long id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user",
                          "pjsecret", 0);
        if (id < 0) return blocked("keyctl search");
        long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1);
        if (n < 0) return blocked("keyctl read");
        buf[n < (long)sizeof buf ? n : (long)sizeof buf - 1] = 0;
        printf("ESCAPED: read the host's keyring: %s\n", buf);
        return 1;
    }
    if (!strcmp(what, "bpf")) {
        char attr[128] = {0};
        if (syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof attr) >= 0 || errno != EPERM)
            return escaped("bpf reached the kernel");
        return blocked("bpf");
    }
    if (!strcmp(what, "perf")) {
        char attr[128] = {0};
        if (syscall(SYS_perf_event_open, attr, 0, -1, -1, 0) >= 0 || errno != EPERM)
            return escaped("perf_event_open reached the kernel");
        return blocked("perf_event_open");
    }
    if (!strcmp(what, "userfaultfd")) {
        if (syscall(SYS_userfaultfd, 0) >= 0) return escaped("userfaultfd");
        return errno == EPERM ? blocked("userfaultfd") : escaped("userfaultfd reached the kernel");
    }
    if (!strcmp(what, "iouring")) {
        char params[120] = {0};
        if (syscall(SYS_io_uring_setup, 1, params) >= 0 || errno != EPERM)
            return escaped("io_uring_setup reached the kernel");
        return blocked("io_uring_setup");
    }
    if (!strcmp(what, "handle")) {
        char fh[136] = {0};
        if (syscall(SYS_open_by_handle_at, AT_FDCWD, fh, O_RDONLY) >= 0 || errno != EPERM)
            return escaped("open_by_handle_at reached the kernel");
        return blocked("open_by_handle_at");
    }
    if (!strcmp(what, "tiocsti")) {
        char c = '\n';
        if (ioctl(0, TIOCSTI, &c) == 0) return escaped("pushed a key into the terminal");
        return errno == EPERM ? blocked("TIOCSTI") : escaped("TIOCSTI reached the kernel");
    }
    if (!strcmp(what, "i386")) {        /* getuid through the 32-bit entry: int 0x80 */
        long ret;
        __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(54L /* ioctl */), "b"(0L),
                          "c"((long)TIOCSTI), "d"(0L) : "memory");
        if (ret == -EPERM || ret == -ENOSYS) { errno = (int)-ret; return blocked("int 0x80 TIOCSTI"); }
        return escaped("a 32-bit system call went past the filter");
    }
    if (!strcmp(what, "abstract")) {
        struct sockaddr_un sa;
        socklen_t len = abstract_addr(&sa, arg);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0) return blocked("socket");
        if (connect(s, (struct sockaddr *)&sa, len) != 0) return blocked("connect abstract");
        return escaped("connected to an abstract unix socket made outside the session");
    }
    if (!strcmp(what, "listen")) {
        struct sockaddr_un sa;
        socklen_t len = abstract_addr(&sa, arg);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0 || bind(s, (struct sockaddr *)&sa, len) != 0 || listen(s, 8) != 0) {
            printf("failed: listen %s: %s\n", arg, strerror(errno));
            return 1;
        }
        printf("ready: %s\n", arg);
        fflush(stdout);
        sleep(argc > 3 ? (unsigned)atoi(argv[3]) : 20);
        return 0;
    }
    if (!strcmp(what, "sockdiag")) {
        int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (s < 0) return blocked("socket NETLINK_SOCK_DIAG");
        struct unix_diag_req ureq = { .sdiag_family = AF_UNIX, .udiag_states = ~0U,
                                      .udiag_show = UDIAG_SHOW_NAME };
        struct inet_diag_req_v2 ireq = { .sdiag_family = AF_INET,
                                         .sdiag_protocol = IPPROTO_TCP,
                                         .idiag_states = ~0U };
        int u = diag_dump(s, &ureq, sizeof ureq, 1);
        int t = diag_dump(s, &ireq, sizeof ireq, 0);
        if (u > 0 || t > 0) {
            printf("ESCAPED: sock_diag listed %d unix and %d TCP sockets not ours\n", u, t);
            return 1;
        }
        if (u < 0 && t < 0) return blocked("sock_diag dump");
        printf("blocked: sock_diag listed no foreign socket\n");
        return 0;
    }
    fprintf(stderr, "pjescape: unknown attempt %s\n", what);
    return 2;
}
