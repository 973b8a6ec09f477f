"""Run model-written Python in a child process with the least power that still runs Python.

    >>> from llmkit.agents.sandbox import run_python
    >>> r = run_python("import math; print(math.factorial(20))", timeout=5)
    >>> r.stdout, r.exit_code, r.reason
    ('2432902008176640000\\n', 0, None)
    >>> run_python("import socket; socket.create_connection(('example.com', 80))").reason
    'forbidden'

The child is ``python -I -S -B sandbox.py CONFIG`` (isolated mode, no site-packages, no bytecode
writes) started in a fresh temporary directory with a minimal environment (no API keys), in its
own process group. Before the model's code runs, this file's ``_child_setup`` stacks the layers
below; each one is applied where the machine allows it and reported in ``SandboxResult.layers``:

| layer | what it stops | needs |
|---|---|---|
| ``rlimits`` | CPU time, address space (memory), file size, open files, core dumps | always |
| ``nproc`` | fork bombs (RLIMIT_NPROC) | a non-root user: the kernel never applies it to uid 0 |
| ``userns`` + ``netns`` | every network interface but a downed loopback | unprivileged user namespaces, or root for ``netns`` alone |
| ``landlock`` | writes outside the sandbox directory; reads outside it, the Python library and a few system files | Linux >= 5.13 with Landlock enabled |
| ``landlock-net`` / ``landlock-scope`` | TCP bind/connect; signals and abstract unix sockets outside the sandbox | Landlock ABI 4 / 6 |
| ``seccomp`` | fork, exec, ``socket()``, ptrace, mount, namespaces, module loading (x86_64, aarch64) | seccomp filters |
| ``audit`` | the same operations at the Python level (PEP 578 audit hook), with a clear message: processes, sockets, files outside, ``ctypes``, interpreter introspection | always |

The parent enforces a wall-clock timeout (the whole process group is killed), caps the output it
keeps, and removes the directory afterwards.

Honesty: this is defence in depth, not a virtual machine. The kernel layers (Landlock, seccomp,
namespaces, rlimits) hold against code that tries to escape; the audit hook alone does not (PEP 578
says as much: a determined program can get around an in-process hook). Where the kernel layers are
missing (``SandboxResult.layers`` tells), run untrusted code in a container or VM as well, or pass
``require=("landlock", "seccomp")`` to refuse to run without them. As root, files the sandbox may
read are limited only by Landlock and the audit hook, and RLIMIT_NPROC does not apply.

This file is also the child's bootstrap, so everything below ``# --- child`` uses only the
standard library (llmkit is not importable inside the sandbox).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LAYERS = ("rlimits", "nproc", "userns", "netns", "landlock", "landlock-net", "landlock-scope", "seccomp", "audit")
_EXIT_REFUSED = 70  # the child's exit status when a required layer is missing; nothing ran

# Read-only for the sandbox besides the Python library: shared libraries, zoneinfo, and the few /etc
# files the C library and the stdlib read (the loader cache, time zone, MIME types, user names).
READ_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime", "/etc/timezone",
              "/etc/mime.types", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/os-release")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


@dataclass
class SandboxResult:
    """What a sandboxed run did.

    Attributes:
        stdout, stderr: the output, each cut to ``max_output`` characters (see ``truncated``).
        exit_code: the exit status; negative: killed by that signal; None: never started.
        reason: None when the code ran to its end unhindered; else ``"timeout"``, ``"cpu"``,
            ``"memory"``, ``"forbidden"`` (an operation was refused), ``"signal"`` (killed by a
            signal), or ``"refused"`` (a required layer was unavailable, nothing ran).
        message: one line a person or model can act on, e.g. ``stopped: ran past the 10 s time limit``.
        violations: the operations the sandbox refused, e.g. ``network access (socket.connect …)``.
        layers: the isolation layers that were in force (see the module docstring).
    """

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    reason: str | None = None
    message: str = ""
    violations: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    truncated: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.reason is None

    def for_model(self) -> dict[str, Any]:
        """The result as a tool returns it to a model (the layers are left out: they are for people)."""
        out: dict[str, Any] = {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr}
        if self.reason:
            out["stopped"] = self.message
        if self.violations:
            out["refused"] = self.violations
        return out


def run_python(code: str, *, timeout: float = 10.0, memory_mb: int = 256, max_output: int = 20_000,
               file_size_mb: int = 16, max_processes: int = 32, read_paths: Iterable[str] = (),
               site_packages: bool = False, require: Iterable[str] = (), audit: bool = True) -> SandboxResult:
    """Run ``code`` in a sandboxed ``python`` child and return what happened.

    Args:
        code: Python source, run as ``__main__`` in a fresh temporary directory (its cwd, ``HOME``
            and ``TMPDIR``), removed afterwards.
        timeout: wall-clock seconds before the whole process group is killed; CPU time is capped
            just above it (a backstop for busy threads).
        memory_mb: the address-space limit (RLIMIT_AS); the interpreter itself needs ~30 MB.
        max_output: characters of stdout and of stderr kept (the rest is counted, then dropped).
        file_size_mb: the largest file the code may write (RLIMIT_FSIZE).
        max_processes: processes and threads the code may add (RLIMIT_NPROC); not enforceable
            for root, where seccomp refuses fork instead.
        read_paths: more files or directories the code may read (the Python library and
            ``READ_PATHS`` always are).
        site_packages: also let the code import installed packages (this interpreter's
            site-packages become readable); off by default.
        require: layer names that must be in force (e.g. ``("landlock", "seccomp")``); when one is
            missing nothing runs and ``reason`` is ``"refused"``.
        audit: the Python-level audit hook; turn it off only to test the kernel layers beneath it.

    Example:
        >>> r = run_python("open('out.txt', 'w').write('hi'); print(open('out.txt').read())")
        >>> r.ok, r.stdout
        (True, 'hi\\n')
    """
    import shutil
    import subprocess
    import tempfile

    from ..core.errors import ConfigError

    unknown = sorted(set(require) - set(LAYERS))
    if unknown:
        raise ConfigError(f"unknown sandbox layer(s) {', '.join(unknown)}; accepted: {', '.join(LAYERS)}")
    if timeout <= 0 or memory_mb < 32 or max_output < 0 or file_size_mb < 0 or max_processes < 1:
        raise ConfigError(f"sandbox limits out of range: timeout={timeout} (> 0), memory_mb={memory_mb} (>= 32), "
                          f"max_output={max_output}, file_size_mb={file_size_mb} (>= 0), max_processes={max_processes} (>= 1)")
    base = tempfile.mkdtemp(prefix="llmkit-sandbox-")
    work = os.path.join(base, "work")
    os.mkdir(work, 0o700)
    reads = [*_python_paths(site_packages), *READ_PATHS, *(os.path.abspath(p) for p in read_paths),
             os.path.realpath(__file__)]  # this file: the child's own tracebacks may quote it
    report_r, report_w = os.pipe()
    config = {"root": os.path.realpath(work), "reads": reads, "devices": list(DEVICES), "report_fd": report_w,
              "cpu_s": int(timeout) + 2, "memory": memory_mb << 20, "fsize": file_size_mb << 20,
              "nproc": max_processes, "require": list(require), "audit": audit}
    cmd = [sys.executable, "-I", "-B", "-X", "utf8", *([] if site_packages else ["-S"]), os.path.abspath(__file__),
           json.dumps(config)]
    env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=work, env=env, pass_fds=(report_w,), start_new_session=True)
    except BaseException:
        for fd in (report_r, report_w):
            os.close(fd)
        shutil.rmtree(base, ignore_errors=True)
        raise
    os.close(report_w)
    try:
        out, timed_out = _communicate(proc, code.encode("utf-8", "surrogatepass"), report_r, start + timeout, max_output)
    finally:
        _kill_group(proc)
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)
    return _result(proc.returncode, out, timed_out, timeout, memory_mb, max_output, time.monotonic() - start)


def isolation() -> list[str]:
    """The layers a sandboxed run gets on this machine (probed once, by running ``pass``)."""
    global _PROBED
    if _PROBED is None:
        _PROBED = run_python("pass", timeout=10).layers
    return list(_PROBED)


_PROBED: list[str] | None = None


def _python_paths(site_packages: bool) -> list[str]:
    paths = {sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.__file__)}
    if site_packages:
        paths |= {sys.prefix, sys.exec_prefix, *(p for p in sys.path if p and os.path.isdir(p))}
    return sorted({os.path.realpath(p) for p in paths} | paths)


def _communicate(proc: Any, code: bytes, report_fd: int, deadline: float,
                 max_output: int) -> tuple[dict[str, Any], bool]:
    """Feed ``code`` on stdin, collect stdout/stderr (kept up to a cap) and the report lines until
    the child and its pipes close or the deadline passes. Returns (collected, timed_out)."""
    import selectors

    keep = max_output * 4 + 4096  # bytes: room for multi-byte characters; the rest is only counted
    buffers = {"stdout": bytearray(), "stderr": bytearray(), "report": bytearray()}
    dropped = {"stdout": 0, "stderr": 0, "report": 0}
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    sel.register(report_fd, selectors.EVENT_READ, "report")
    try:
        proc.stdin.write(code)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the child died before reading; its stderr says why
    timed_out = False
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(min(left, 0.5)):
                fd = key.fileobj if isinstance(key.fileobj, int) else key.fileobj.fileno()
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf, room = buffers[key.data], keep - len(buffers[key.data])
                buf += chunk[:max(room, 0)]
                dropped[key.data] += max(len(chunk) - max(room, 0), 0)
    finally:
        sel.close()
        os.close(report_fd)
    return {"buffers": buffers, "dropped": dropped}, timed_out


def _kill_group(proc: Any) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the child leads its own group
    except (ProcessLookupError, PermissionError):
        pass


def _result(returncode: int, out: dict[str, Any], timed_out: bool, timeout: float, memory_mb: int,
            max_output: int, seconds: float) -> SandboxResult:
    layers, violations, memory, missing = [], [], False, None
    for line in bytes(out["buffers"]["report"]).decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # the code may write to the report pipe too; only well-formed lines count
        if not isinstance(item, dict):
            continue
        if "layers" in item and not layers:  # the first report comes from the bootstrap, before the code ran
            layers = item["layers"]
            missing = item.get("missing")
        memory = memory or bool(item.get("memory"))
        if isinstance(item.get("violation"), str) and len(violations) < 20:
            violations.append(item["violation"])
    texts, truncated = {}, False
    for name in ("stdout", "stderr"):
        text = bytes(out["buffers"][name]).decode("utf-8", "replace")
        extra = out["dropped"][name] + max(len(text) - max_output, 0)
        if extra:
            truncated = True
            text = text[:max_output] + f"\n[... {extra} more characters not shown]"
        texts[name] = text
    sig = -returncode if returncode is not None and returncode < 0 else None
    if timed_out:
        reason, message = "timeout", f"stopped: ran past the {timeout:g} s time limit"
    elif missing:
        reason, message = "refused", f"not run: required isolation layer(s) unavailable here: {', '.join(missing)}"
    elif memory:
        reason, message = "memory", f"stopped: ran out of its {memory_mb} MB memory limit"
    elif sig == signal.SIGXCPU:
        reason, message = "cpu", "stopped: used up its CPU time limit"
    elif sig is not None:
        reason, message = "signal", f"stopped: killed by {signal.Signals(sig).name}"
    elif violations:
        reason, message = "forbidden", f"refused: {violations[0]}"
    else:
        reason, message = None, ""
    return SandboxResult(texts["stdout"], texts["stderr"], returncode, reason, message, violations, layers,
                         truncated, round(seconds, 3))


# --- child: everything below runs inside the sandbox, before the model's code, stdlib only ----------

_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP = 1, 38, 22


def _child_setup(cfg: dict[str, Any]) -> tuple[str, Any]:
    """Read the code, stack the layers, report them; returns (code, report). Returning (rather than
    calling the code from here) takes this frame, which holds ctypes, off the stack first."""
    import ctypes
    import resource

    code = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    report_fd = cfg["report_fd"]

    def report(**item: Any) -> None:
        os.write(report_fd, (json.dumps(item) + "\n").encode())

    def limit(which: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY and os.geteuid() != 0:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(which, (soft, hard))

    was_root = os.geteuid() == 0
    limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)  # SIGXCPU, then SIGKILL a second later
    limit(resource.RLIMIT_FSIZE, cfg["fsize"])
    limit(resource.RLIMIT_NOFILE, 256)
    limit(resource.RLIMIT_CORE, 0)
    layers = ["rlimits"]
    libc = ctypes.CDLL(None, use_errno=True)
    linux = sys.platform.startswith("linux")
    if linux:
        libc.syscall.restype = ctypes.c_long
        layers += _unshare(libc)
    # Outside a user namespace the count is of every process this user has, so add to what is there.
    limit(resource.RLIMIT_NPROC, cfg["nproc"] + (0 if was_root or "userns" in layers else _tasks_of(os.getuid())))
    if not was_root:  # the kernel exempts uid 0 from RLIMIT_NPROC, even inside a user namespace
        layers.append("nproc")
    ul = ctypes.c_ulong
    if linux:
        libc.prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ul(signal.SIGKILL), ul(0), ul(0), ul(0))
    if linux and libc.prctl(ctypes.c_int(_PR_SET_NO_NEW_PRIVS), ul(1), ul(0), ul(0), ul(0)) == 0:
        layers += _landlock(libc, cfg["root"], cfg["reads"], cfg["devices"])
        layers += _seccomp(libc)
    limit(resource.RLIMIT_AS, cfg["memory"])
    if cfg["audit"]:
        _install_audit_hook(cfg["root"], cfg["reads"] + cfg["devices"], report_fd)
        layers.append("audit")
    missing = [name for name in cfg["require"] if name not in layers]
    report(layers=layers, missing=missing)
    if missing:
        os._exit(_EXIT_REFUSED)
    for name in ("ctypes", "_ctypes", "ctypes._endian", "resource"):
        sys.modules.pop(name, None)  # the model's code must import them itself (and the hook refuses ctypes)
    return code, report


def _tasks_of(uid: int) -> int:
    """How many processes and threads ``uid`` has now (what RLIMIT_NPROC counts)."""
    count = 0
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                if int(fields["Uid"].split()[0]) == uid:
                    count += int(fields["Threads"])
            except (OSError, KeyError, ValueError):
                continue
    return count


def _run_main(code: str, report: Any) -> None:
    import linecache
    import traceback
    import types

    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["main.py"]
    linecache.cache["main.py"] = (len(code), None, code.splitlines(True), "main.py")  # tracebacks show lines
    try:
        exec(compile(code, "main.py", "exec"), main.__dict__)  # noqa: S102 - running it is the point, in here
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - whatever the code raised, report it the same way
        if isinstance(e, MemoryError):
            report(memory=True)
        shown = traceback.TracebackException.from_exception(e, lookup_lines=False)
        shown.stack = traceback.StackSummary.from_list([f for f in shown.stack if f.filename != __file__])
        sys.stderr.write("".join(shown.format()))  # the model's frames, not the sandbox's own
        sys.exit(1)


def _unshare(libc: Any) -> list[str]:
    """A user + network namespace (works for root and, where allowed, unprivileged users); else a
    network namespace alone (root); else nothing."""
    import ctypes

    for flags, names in ((_CLONE_NEWUSER | _CLONE_NEWNET, ["userns", "netns"]), (_CLONE_NEWNET, ["netns"])):
        if libc.unshare(ctypes.c_int(flags)) == 0:
            return names
    return []


def _landlock(libc: Any, root: str, reads: list[str], devices: list[str]) -> list[str]:
    """Landlock: the sandbox directory fully, ``reads`` read-only, ``devices`` read-write; TCP
    bind/connect nowhere (ABI >= 4); no signals or abstract unix sockets outside (ABI >= 6)."""
    import ctypes
    import stat

    sys_create, sys_add, sys_restrict = 444, 445, 446  # the same numbers on every architecture
    c = ctypes.c_long
    abi = libc.syscall(c(sys_create), None, c(0), c(1))  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return []
    fs = (1 << 13) - 1  # ABI 1: execute, write/read file, read dir, remove, make char/dir/reg/sock/fifo/block/sym
    fs |= (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)  # refer, truncate, ioctl_dev
    net = 0b11 if abi >= 4 else 0       # bind_tcp, connect_tcp: handled with no rule = denied
    scoped = 0b11 if abi >= 6 else 0    # abstract unix sockets, signals
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    ruleset = libc.syscall(c(sys_create), ctypes.byref(attr), c(ctypes.sizeof(attr)), c(0))
    if ruleset < 0:
        return []

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    file_rights = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # the rights a rule on a single file may carry

    def allow(path: str, access: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # not on this machine
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                access &= file_rights
            libc.syscall(c(sys_add), c(ruleset), c(1), ctypes.byref(PathBeneath(access & fs, fd)), c(0))
        finally:
            os.close(fd)

    read_file, read_dir, write_file = 4, 8, 2
    allow(root, fs)
    for path in reads:
        allow(path, read_file | read_dir)
    for path in devices:
        allow(path, read_file | write_file | (1 << 14) | (1 << 15))
    ok = libc.syscall(c(sys_restrict), c(ruleset), c(0)) == 0
    os.close(ruleset)
    if not ok:
        return []
    return ["landlock"] + (["landlock-net"] if net else []) + (["landlock-scope"] if scoped else [])


# Syscalls refused with EPERM: process creation and replacement, sockets (socketpair stays: asyncio
# needs it), tracing other processes, namespaces, mounts, kernel keys/BPF/modules, io_uring (it can
# act without passing through these checks), clock and host changes. clone is allowed only with
# CLONE_THREAD (threads); clone3 answers ENOSYS so the C library falls back to clone.
_SECCOMP = {
    "x86_64": {"arch": 0xC000003E, "clone": 56, "clone3": 435, "deny": [
        57, 58, 59, 322,                      # fork vfork execve execveat
        41, 101, 310, 311,                    # socket ptrace process_vm_readv/writev
        272, 308, 165, 166, 155, 161,         # unshare setns mount umount2 pivot_root chroot
        321, 298, 248, 249, 250, 323,         # bpf perf_event_open add_key request_key keyctl userfaultfd
        425, 426, 427,                        # io_uring_setup/enter/register
        246, 320, 175, 313, 176, 169,         # kexec_load kexec_file_load init/finit/delete_module reboot
        167, 168, 164, 227, 170, 171,         # swapon swapoff settimeofday clock_settime sethostname setdomainname
        133, 259, 303, 304, 163, 172, 173]},  # mknod mknodat name_to/open_by_handle_at acct iopl ioperm
    "aarch64": {"arch": 0xC00000B7, "clone": 220, "clone3": 435, "deny": [
        221, 281,                             # execve execveat (no fork/vfork syscalls here)
        198, 117, 270, 271,                   # socket ptrace process_vm_readv/writev
        97, 268, 40, 39, 41, 51,              # unshare setns mount umount2 pivot_root chroot
        280, 241, 217, 218, 219, 282,         # bpf perf_event_open add_key request_key keyctl userfaultfd
        425, 426, 427,                        # io_uring
        104, 294, 105, 273, 106, 142,         # kexec_load kexec_file_load init/finit/delete_module reboot
        224, 225, 170, 112, 161, 162,         # swapon swapoff settimeofday clock_settime sethostname setdomainname
        33, 264, 265, 89]},                   # mknodat name_to/open_by_handle_at acct
}


def _seccomp(libc: Any) -> list[str]:
    import ctypes

    table = _SECCOMP.get(os.uname().machine)
    if table is None:
        return []
    ld_abs, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    eperm, enosys = 0x00050000 | 1, 0x00050000 | 38
    prog = [(ld_abs, 0, 0, 4), (jeq, 1, 0, table["arch"]), (ret, 0, 0, kill),  # another ABI: kill
            (ld_abs, 0, 0, 0)]                                                 # A = syscall number
    if table["arch"] == 0xC000003E:
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]                  # the x32 ABI
    for nr in table["deny"]:
        prog += [(jeq, 0, 1, nr), (ret, 0, 0, eperm)]
    prog += [(jeq, 0, 1, table["clone3"]), (ret, 0, 0, enosys),
             (jeq, 0, 4, table["clone"]), (ld_abs, 0, 0, 16),                  # A = low word of flags
             (jset, 0, 1, 0x00010000), (ret, 0, 0, allow), (ret, 0, 0, eperm),  # CLONE_THREAD: a thread
             (ret, 0, 0, allow)]

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    filters = (SockFilter * len(prog))(*(SockFilter(*ins) for ins in prog))
    fprog = SockFprog(len(prog), filters)
    ul = ctypes.c_ulong
    if libc.prctl(ctypes.c_int(_PR_SET_SECCOMP), ul(2), ctypes.byref(fprog), ul(0), ul(0)) != 0:
        return []
    return ["seccomp"]


def _install_audit_hook(root: str, reads: list[str], report_fd: int) -> None:
    hook = _make_audit_hook(root, reads, report_fd)
    # subprocess stays importable (asyncio imports it), but the C function that forks is swapped
    # for one that refuses, before anything can hold it; re-importing the module is refused.
    try:
        import _posixsubprocess

        _posixsubprocess.fork_exec = _no_fork_exec
    except ImportError:
        pass
    if hasattr(sys.modules.get("subprocess"), "_fork_exec"):
        sys.modules["subprocess"]._fork_exec = _no_fork_exec
    sys.addaudithook(hook)


def _no_fork_exec(*args: Any, **kwargs: Any) -> None:
    raise PermissionError("sandbox: starting processes (_posixsubprocess.fork_exec) is not allowed")


def _make_audit_hook(root: str, reads: list[str], report_fd: int) -> Any:
    """A PEP 578 audit hook that refuses, with a message naming the operation: starting processes,
    sockets other than socketpair, writing outside ``root``, reading outside ``root`` and ``reads``,
    ctypes and test modules, sub-interpreters, changing limits, tracing, and changing the hook.

    Built so that the code it guards cannot change its decisions: the hook and its helpers have no
    closures and look up no globals or builtins (everything arrives as a positional default,
    immutable or a C function), so rebinding ``os.path``, ``builtins`` or module globals changes
    nothing, and the frames of a refused call (reachable from its traceback) hold nothing that can
    be rebound. Paths are compared as exact ``str``; a path object's ``__fspath__`` is called once.
    """
    import posix
    from _json import encode_basestring_ascii as quote  # C: JSON-quotes a str
    from types import MappingProxyType

    root = root.rstrip("/") or "/"
    roots = (root,)
    readable = tuple(p.rstrip("/") or "/" for p in [root, *reads])

    def deny(what, count=[0], fd=report_fd, write=posix.write, quote=quote,  # noqa: B006 - defaults are the point
             error=PermissionError, oserror=OSError):
        if count[0] < 20:  # the only mutable default: a counter
            count[0] += 1
            try:
                write(fd, ('{"violation": ' + quote(what) + "}\n").encode())
            except oserror:
                pass
        raise error("sandbox: " + what + " is not allowed")

    def show(value, type_=type, repr_=repr, str_=str, bytes_=bytes, int_=int):
        t = type_(value)
        return repr_(value) if t is str_ or t is bytes_ or t is int_ else "<a path object>"

    def text(path, type_=type, str_=str, bytes_=bytes, fspath=posix.fspath):
        """``path`` as an exact str, or None."""
        if type_(path) is not str_ and type_(path) is not bytes_:
            path = fspath(path)  # pathlib's __fspath__ (or the code's own): called once
        if type_(path) is bytes_:
            return path.decode("utf-8", "surrogateescape")
        return path if type_(path) is str_ else None

    def resolve(path, dir_fd=None, text=text, lstat=posix.lstat, readlink=posix.readlink, getcwd=posix.getcwd,
                type_=type, int_=int, repr_=repr, errors=(OSError, ValueError)):
        """``path`` absolute with every symlink resolved (a missing tail kept as written), or None
        when it cannot be judged. An int is an open file descriptor: where it points."""
        if type_(path) is int_:
            path, dir_fd = "", path
        else:
            path = text(path)
            if path is None:
                return None
        if not path.startswith("/"):
            if dir_fd is None or type_(dir_fd) is int_ and dir_fd == -100:  # AT_FDCWD
                base = getcwd()
            elif type_(dir_fd) is int_:
                try:
                    base = readlink("/proc/self/fd/" + repr_(dir_fd))
                except errors:
                    return None
                if not path:
                    return base
            else:
                return None
            path = base + "/" + path
        out, todo, links = "", path.split("/"), 0
        while todo:
            part = todo.pop(0)
            if part == "" or part == ".":
                continue
            if part == "..":
                out = out[:out.rfind("/")] if out else ""
                continue
            candidate = out + "/" + part
            try:
                mode = lstat(candidate).st_mode
            except errors:
                out = candidate
                continue
            if mode & 0o170000 == 0o120000:  # a symlink: go on from its target
                links += 1
                if links > 40:
                    return None
                try:
                    target = readlink(candidate)
                except errors:
                    return None
                if target.startswith("/"):
                    out = ""
                todo = target.split("/") + todo
            else:
                out = candidate
        return out or "/"

    def inside(path, roots, type_=type, str_=str):
        if type_(path) is not str_:
            return False
        for r in roots:
            if r == "/" or path == r or path.startswith(r + "/"):
                return True
        return False

    def dotdot(path, text=text, type_=type, str_=str, int_=int):
        # A relative path is resolved against the cwd here, but os.open(..., dir_fd=) resolves it
        # against the fd; with '..' in it the two can differ, so such paths are refused outright.
        if type_(path) is int_:
            return False
        path = text(path)
        return type_(path) is str_ and not path.startswith("/") and ".." in path.split("/")

    def check_write(path, dir_fd, what, resolve=resolve, inside=inside, dotdot=dotdot, deny=deny, show=show,
                    roots=roots):
        if dotdot(path) or not inside(resolve(path, dir_fd), roots):
            deny(what + " outside the sandbox directory (" + show(path) + ")")

    # path-taking events: (index of the path, index of its dir_fd or None)
    one_path = MappingProxyType({
        "os.remove": (0, 1), "os.rmdir": (0, 1), "os.mkdir": (0, 2), "os.chmod": (0, 2), "os.chown": (0, 3),
        "os.utime": (0, 3), "os.mknod": (0, 3), "os.truncate": (0, None), "os.chflags": (0, None),
        "os.lchflags": (0, None), "os.setxattr": (0, None), "os.removexattr": (0, None)})
    processes = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
                           "os.startfile", "subprocess.Popen", "os.killpg"})
    network = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                         "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"})
    interpreter = frozenset({"resource.setrlimit", "resource.prlimit", "gc.get_objects", "gc.get_referrers",
                             "gc.get_referents", "sys.settrace", "sys.setprofile", "cpython.PyInterpreterState_New",
                             "sqlite3.enable_load_extension", "sqlite3.load_extension"})
    modules = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "_xxsubinterpreters",
                         "_xxinterpchannels", "_interpreters", "_interpchannels", "_interpqueues", "_testcapi",
                         "_testinternalcapi", "_testbuffer", "_testmultiphase", "_testsinglephase", "_xxtestfuzz"})
    writes = posix.O_WRONLY | posix.O_RDWR | posix.O_CREAT | posix.O_TRUNC | posix.O_APPEND

    def hook(event, args, deny=deny, show=show, text=text, resolve=resolve, inside=inside, dotdot=dotdot,
             check_write=check_write, roots=roots, readable=readable, one_path=one_path, processes=processes,
             network=network, interpreter=interpreter, modules=modules, writes=writes,
             stat=posix.stat, lstat=posix.lstat, readlink=posix.readlink, getpid=posix.getpid, type_=type, str_=str,
             bytes_=bytes, int_=int, len_=len, function=type(deny), errors=(OSError, ValueError, TypeError),  # noqa: B008
             ours=()):
        if event == "open":
            path, mode, flags = args
            if type_(path) is int_:
                return
            if dotdot(path):
                deny("a relative path with '..' (" + show(path) + ")")
            target = resolve(path)
            if (type_(flags) is int_ and flags & writes
                    or type_(mode) is str_ and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)):
                if not inside(target, roots):
                    deny("writing outside the sandbox directory (" + show(path) + ")")
            elif not inside(target, readable):
                deny("reading outside the sandbox directory and the Python library (" + show(path) + ")")
            elif mode is None and not inside(target, roots):
                try:
                    is_dir = stat(target).st_mode & 0o170000 == 0o040000
                except errors:
                    is_dir = False
                if is_dir:  # a directory fd outside would let dir_fd= calls write there
                    deny("opening a directory outside the sandbox (" + show(path) + ")")
        elif event in one_path:
            at, fd_at = one_path[event]
            dir_fd = args[fd_at] if fd_at is not None and len_(args) > fd_at else None
            check_write(args[at], dir_fd, "changing files (" + event + ")")
        elif event == "os.rename" or event == "os.link":
            check_write(args[0], args[2], "moving or linking files (" + event + ")")
            check_write(args[1], args[3], "moving or linking files (" + event + ")")
            if event == "os.rename":  # a symlink must not point outside from where it lands
                source, destination = resolve(args[0], args[2]), resolve(args[1], args[3])
                try:
                    target = readlink(source) if lstat(source).st_mode & 0o170000 == 0o120000 else None
                except errors:
                    target = None
                if target is not None:
                    if not target.startswith("/"):
                        target = destination[:destination.rfind("/") + 1] + target
                    if not inside(resolve(target), roots):
                        deny("moving a symlink so that it points outside the sandbox (" + show(args[1]) + ")")
        elif event == "os.symlink":
            check_write(args[1], args[2], "making symlinks")
            target, link = text(args[0]), resolve(args[1], args[2])
            if target is None or link is None:
                deny("a symlink the sandbox cannot check (" + show(args[0]) + ")")
            if not target.startswith("/"):
                target = link[:link.rfind("/") + 1] + target
            if not inside(resolve(target), roots):
                deny("a symlink to outside the sandbox (" + show(args[0]) + ")")
        elif event == "os.listdir" or event == "os.scandir":
            path = args[0] if len_(args) and args[0] is not None else "."
            if not inside(resolve(path), readable):
                deny("listing a directory outside the sandbox (" + show(path) + ")")
        elif event == "sqlite3.connect":
            database = text(args[0])
            if database != "" and database != ":memory:":
                if database is None or database.startswith("file:"):
                    deny("SQLite URIs (" + show(args[0]) + "); use a plain file name in the sandbox directory")
                check_write(database, None, "opening databases")
        elif event in processes:
            deny("starting or signalling processes (" + event + ")")
        elif event == "os.kill":
            if args[0] != getpid():
                deny("signalling other processes (os.kill " + show(args[0]) + ")")
        elif event == "socket.__new__":
            if args[1] != 1:  # AF_UNIX from socketpair() is fine; every other family is network
                deny("network access (a socket of family " + show(args[1]) + ")")
        elif event in network:
            deny("network access (" + event + ")")
        elif event == "import":
            if type_(args[0]) is not str_:
                deny("importing a module named by a " + show(args[0]))
            if args[0] in modules or args[0].startswith("ctypes."):
                deny("importing " + args[0])
        elif event.startswith("ctypes."):
            deny("native calls (" + event + ")")
        elif event in interpreter:
            deny("changing or inspecting the interpreter (" + event + ")")
        elif (event == "object.__setattr__" or event == "object.__delattr__") and type_(args[0]) is function \
                and args[0] in ours:
            deny("changing the sandbox's audit hook (" + show(args[1]) + ")")

    # ``ours``: the hook and its helpers, by identity, so none of them can be given new code or defaults
    names = hook.__code__.co_varnames[2:hook.__code__.co_argcount]
    ours = (deny, show, text, resolve, inside, dotdot, check_write, hook)
    hook.__defaults__ = tuple(ours if n == "ours" else v for n, v in zip(names, hook.__defaults__))
    return hook


if __name__ == "__main__":
    _run_main(*_child_setup(json.loads(sys.argv[1])))
