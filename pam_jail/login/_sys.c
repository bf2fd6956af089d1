/* pam_jail.login._sys: the Linux system calls that CPython 3.11's os module lacks, for
 * pam_jail/login/confine.py (and nothing else). Each function is one system call, with the
 * arguments checked by the argument parser and errno turned into OSError; the policy of
 * which call, when, with what, stays in confine.py.
 *
 * Why C and not ctypes: `import ctypes` (and libffi) costs ~6 ms at every login on
 * these machines, this module ~0.1 ms (docs/benchmarks.md). Built by scripts/build-ext
 * (scripts/setup, scripts/install) and by packaging/debian/rules.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

/* An optional str/bytes path argument (None allowed) as a C string. */
static int
opt_path(PyObject *obj, void *out)
{
    PyObject **result = out;

    if (obj == NULL) {              /* cleanup call of the converter */
        Py_CLEAR(*result);
        return 1;
    }
    if (obj == Py_None) {
        *result = NULL;
        return 1;
    }
    if (!PyUnicode_FSConverter(obj, result))
        return 0;
    return Py_CLEANUP_SUPPORTED;
}

#define CSTR(b) ((b) == NULL ? NULL : PyBytes_AS_STRING(b))

/* None, or OSError from the errno saved right after the call (freeing the converted
 * arguments in between may change errno). */
static PyObject *
done(int rc, int err)
{
    if (rc != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unshare_doc, "unshare(flags): unshare(2); OSError on failure.");
static PyObject *
sys_unshare(PyObject *self, PyObject *args)
{
    int flags;

    if (!PyArg_ParseTuple(args, "i:unshare", &flags))
        return NULL;
    if (unshare(flags) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(mount_doc,
    "mount(source, target, fstype, flags, data): mount(2); source, fstype and data may "
    "be None.");
static PyObject *
sys_mount(PyObject *self, PyObject *args)
{
    PyObject *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
    unsigned long flags;
    int rc, err;

    if (!PyArg_ParseTuple(args, "O&O&O&kO&:mount", opt_path, &source,
                          PyUnicode_FSConverter, &target, opt_path, &fstype, &flags,
                          opt_path, &data))
        return NULL;
    rc = mount(CSTR(source), PyBytes_AS_STRING(target), CSTR(fstype), flags, CSTR(data));
    err = errno;
    Py_XDECREF(source);
    Py_DECREF(target);
    Py_XDECREF(fstype);
    Py_XDECREF(data);
    return done(rc, err);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(umount2_doc, "umount2(target, flags): umount2(2).");
static PyObject *
sys_umount2(PyObject *self, PyObject *args)
{
    PyObject *target = NULL;
    int flags, rc, err;

    if (!PyArg_ParseTuple(args, "O&i:umount2", PyUnicode_FSConverter, &target, &flags))
        return NULL;
    rc = umount2(PyBytes_AS_STRING(target), flags);
    err = errno;
    Py_DECREF(target);
    return done(rc, err);
}

PyDoc_STRVAR(getrlimit_doc,
    "getrlimit(resource) -> (soft, hard): getrlimit(2); RLIM_INFINITY is -1, as in Python's "
    "resource module.");
static PyObject *
sys_getrlimit(PyObject *self, PyObject *args)
{
    int resource;
    struct rlimit rl;

    if (!PyArg_ParseTuple(args, "i:getrlimit", &resource))
        return NULL;
    if (getrlimit(resource, &rl) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return Py_BuildValue("(LL)", (long long)rl.rlim_cur, (long long)rl.rlim_max);
}

PyDoc_STRVAR(setrlimit_doc,
    "setrlimit(resource, soft, hard): setrlimit(2), -1 for RLIM_INFINITY. (Python's "
    "`resource` module is an "
    "extension of its own: ~0.5 ms to load at every login.)");
static PyObject *
sys_setrlimit(PyObject *self, PyObject *args)
{
    int resource;
    long long soft, hard;
    struct rlimit rl;

    if (!PyArg_ParseTuple(args, "iLL:setrlimit", &resource, &soft, &hard))
        return NULL;
    rl.rlim_cur = (rlim_t)soft;
    rl.rlim_max = (rlim_t)hard;
    if (setrlimit(resource, &rl) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pivot_root_doc, "pivot_root(new_root, put_old): pivot_root(2).");
static PyObject *
sys_pivot_root(PyObject *self, PyObject *args)
{
    PyObject *new_root = NULL, *put_old = NULL;
    int rc, err;

    if (!PyArg_ParseTuple(args, "O&O&:pivot_root", PyUnicode_FSConverter, &new_root,
                          PyUnicode_FSConverter, &put_old))
        return NULL;
    rc = (int)syscall(SYS_pivot_root, PyBytes_AS_STRING(new_root), PyBytes_AS_STRING(put_old));
    err = errno;
    Py_DECREF(new_root);
    Py_DECREF(put_old);
    return done(rc, err);
}

PyDoc_STRVAR(prctl_doc,
    "prctl(option, arg2=0, arg3=0, arg4=0, arg5=0) -> int: prctl(2)'s result; OSError "
    "when it returns -1.");
static PyObject *
sys_prctl(PyObject *self, PyObject *args)
{
    int option, rc;
    unsigned long arg2 = 0, arg3 = 0, arg4 = 0, arg5 = 0;

    if (!PyArg_ParseTuple(args, "i|kkkk:prctl", &option, &arg2, &arg3, &arg4, &arg5))
        return NULL;
    rc = prctl(option, arg2, arg3, arg4, arg5);
    if (rc == -1)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(rc);
}

PyDoc_STRVAR(dgram_connect_doc,
    "dgram_connect(path) -> fd: a unix datagram socket (close-on-exec) connected to PATH "
    "(/dev/log); OSError on failure. What the _socket extension would do, without "
    "loading it (~0.1 ms of every login): the fd is written with os.write.");
static PyObject *
sys_dgram_connect(PyObject *self, PyObject *args)
{
    PyObject *path = NULL;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd, err;

    if (!PyArg_ParseTuple(args, "O&:dgram_connect", PyUnicode_FSConverter, &path))
        return NULL;
    if ((size_t)PyBytes_GET_SIZE(path) >= sizeof(addr.sun_path)) {
        Py_DECREF(path);
        errno = ENAMETOOLONG;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    memcpy(addr.sun_path, PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path));
    Py_DECREF(path);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        err = errno;
        close(fd);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(fd);
}

PyDoc_STRVAR(capbset_drop_all_doc,
    "capbset_drop_all(): every capability dropped from this thread's bounding set "
    "(prctl PR_CAPBSET_DROP for 0..63; EINVAL, a capability this kernel does not have, "
    "is skipped). OSError(errno, strerror, CAP) on any other failure. One call instead "
    "of ~41 from Python: ~0.1 ms of every login.");
static PyObject *
sys_capbset_drop_all(PyObject *self, PyObject *noargs)
{
    for (unsigned long cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0UL, 0UL, 0UL) == 0 || errno == EINVAL)
            continue;
        PyObject *which = PyLong_FromUnsignedLong(cap);
        if (which == NULL)
            return NULL;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, which);
        Py_DECREF(which);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(capget_doc,
    "capget() -> (effective, permitted, inheritable): this thread's capability sets as "
    "64-bit masks (capget(2), version 3).");
static PyObject *
sys_capget(PyObject *self, PyObject *noargs)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0}};

    if (syscall(SYS_capget, &header, data) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return Py_BuildValue("(KKK)",
        (unsigned long long)data[0].effective | (unsigned long long)data[1].effective << 32,
        (unsigned long long)data[0].permitted | (unsigned long long)data[1].permitted << 32,
        (unsigned long long)data[0].inheritable
            | (unsigned long long)data[1].inheritable << 32);
}

PyDoc_STRVAR(capset_doc,
    "capset(effective, permitted, inheritable): set this thread's capability sets "
    "(capset(2), version 3) from 64-bit masks.");
static PyObject *
sys_capset(PyObject *self, PyObject *args)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    unsigned long long eff, perm, inh;

    if (!PyArg_ParseTuple(args, "KKK:capset", &eff, &perm, &inh))
        return NULL;
    data[0].effective = (__u32)eff;
    data[1].effective = (__u32)(eff >> 32);
    data[0].permitted = (__u32)perm;
    data[1].permitted = (__u32)(perm >> 32);
    data[0].inheritable = (__u32)inh;
    data[1].inheritable = (__u32)(inh >> 32);
    if (syscall(SYS_capset, &header, data) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(close_range_doc,
    "close_range(first, last, flags=0): close_range(2); OSError (ENOSYS on old kernels).");
static PyObject *
sys_close_range(PyObject *self, PyObject *args)
{
    unsigned int first, last, flags = 0;

    if (!PyArg_ParseTuple(args, "II|I:close_range", &first, &last, &flags))
        return NULL;
    if (syscall(SYS_close_range, first, last, flags) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(seccomp_filter_doc,
    "seccomp_filter(program, flags=0): seccomp(SECCOMP_SET_MODE_FILTER, flags, prog) with "
    "`program` the bytes of a struct sock_filter array (8 bytes an instruction); needs "
    "no_new_privs or CAP_SYS_ADMIN. ValueError for an empty, ragged or oversized "
    "program; OSError when the kernel refuses it.");
static PyObject *
sys_seccomp_filter(PyObject *self, PyObject *args)
{
    Py_buffer prog;
    unsigned int flags = 0;
    struct sock_fprog fprog;
    int rc, err;

    if (!PyArg_ParseTuple(args, "y*|I:seccomp_filter", &prog, &flags))
        return NULL;
    if (prog.len <= 0 || prog.len % sizeof(struct sock_filter) != 0
        || prog.len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        PyBuffer_Release(&prog);
        PyErr_SetString(PyExc_ValueError,
                        "seccomp_filter: program must be 1..4096 sock_filter instructions");
        return NULL;
    }
    fprog.len = (unsigned short)(prog.len / sizeof(struct sock_filter));
    fprog.filter = (struct sock_filter *)prog.buf;
    rc = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    err = errno;
    PyBuffer_Release(&prog);
    return done(rc, err);
}

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif

/* struct landlock_ruleset_attr as of Landlock ABI 6 (Linux 6.12): the build host's
 * headers may predate the `scoped` member, so it is spelled out here. */
struct pj_ruleset_attr {
    __u64 handled_access_fs;
    __u64 handled_access_net;
    __u64 scoped;
};

PyDoc_STRVAR(landlock_abi_doc,
    "landlock_abi(): the kernel's Landlock ABI version (landlock_create_ruleset(NULL, 0, "
    "LANDLOCK_CREATE_RULESET_VERSION)); OSError ENOSYS (no Landlock in this kernel) or "
    "EOPNOTSUPP (built in, not enabled at boot).");
static PyObject *
sys_landlock_abi(PyObject *self, PyObject *args)
{
    long rc = syscall(SYS_landlock_create_ruleset, NULL, 0,
                      LANDLOCK_CREATE_RULESET_VERSION);
    if (rc < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(rc);
}

PyDoc_STRVAR(landlock_create_ruleset_doc,
    "landlock_create_ruleset(handled_access_fs, handled_access_net, scoped): "
    "landlock_create_ruleset(2) with a 24-byte struct landlock_ruleset_attr (ABI >= 6); "
    "returns the ruleset fd (close-on-exec); OSError on failure.");
static PyObject *
sys_landlock_create_ruleset(PyObject *self, PyObject *args)
{
    struct pj_ruleset_attr attr = {0, 0, 0};
    unsigned long long fs, net, scoped;
    long rc;

    if (!PyArg_ParseTuple(args, "KKK:landlock_create_ruleset", &fs, &net, &scoped))
        return NULL;
    attr.handled_access_fs = fs;
    attr.handled_access_net = net;
    attr.scoped = scoped;
    rc = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (rc < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(rc);
}

PyDoc_STRVAR(landlock_restrict_self_doc,
    "landlock_restrict_self(ruleset_fd, flags=0): landlock_restrict_self(2): this thread "
    "and everything it forks and executes enter a new Landlock domain; needs no_new_privs "
    "or CAP_SYS_ADMIN. OSError on failure.");
static PyObject *
sys_landlock_restrict_self(PyObject *self, PyObject *args)
{
    int fd;
    unsigned int flags = 0;

    if (!PyArg_ParseTuple(args, "i|I:landlock_restrict_self", &fd, &flags))
        return NULL;
    if (syscall(SYS_landlock_restrict_self, fd, flags) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef sys_methods[] = {
    {"unshare", sys_unshare, METH_VARARGS, unshare_doc},
    {"mount", sys_mount, METH_VARARGS, mount_doc},
    {"umount2", sys_umount2, METH_VARARGS, umount2_doc},
    {"pivot_root", sys_pivot_root, METH_VARARGS, pivot_root_doc},
    {"getrlimit", sys_getrlimit, METH_VARARGS, getrlimit_doc},
    {"setrlimit", sys_setrlimit, METH_VARARGS, setrlimit_doc},
    {"prctl", sys_prctl, METH_VARARGS, prctl_doc},
    {"capbset_drop_all", sys_capbset_drop_all, METH_NOARGS, capbset_drop_all_doc},
    {"dgram_connect", sys_dgram_connect, METH_VARARGS, dgram_connect_doc},
    {"capget", sys_capget, METH_NOARGS, capget_doc},
    {"capset", sys_capset, METH_VARARGS, capset_doc},
    {"close_range", sys_close_range, METH_VARARGS, close_range_doc},
    {"seccomp_filter", sys_seccomp_filter, METH_VARARGS, seccomp_filter_doc},
    {"landlock_abi", sys_landlock_abi, METH_NOARGS, landlock_abi_doc},
    {"landlock_create_ruleset", sys_landlock_create_ruleset, METH_VARARGS,
     landlock_create_ruleset_doc},
    {"landlock_restrict_self", sys_landlock_restrict_self, METH_VARARGS,
     landlock_restrict_self_doc},
    {0}
};

static struct PyModuleDef sys_module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "pam_jail.login._sys",
    .m_doc = "Linux system calls for pam_jail.login.confine that os lacks in Python 3.11.",
    .m_size = -1,
    .m_methods = sys_methods,
};

PyMODINIT_FUNC
PyInit__sys(void)
{
    PyObject *module = PyModule_Create(&sys_module);

    if (module == NULL)
        return NULL;
    /* the resource numbers of this architecture (mips and sparc number them otherwise) */
    if (PyModule_AddIntConstant(module, "RLIMIT_FSIZE", RLIMIT_FSIZE) != 0
            || PyModule_AddIntConstant(module, "RLIMIT_NPROC", RLIMIT_NPROC) != 0
            || PyModule_AddIntConstant(module, "RLIM_INFINITY",
                                       (long)(long long)RLIM_INFINITY) != 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
