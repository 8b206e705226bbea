"""Run one submitted notebook in a fresh kernel, fenced off from the course and from other students.

Used by the instructor's grader (course_lib.course.grading, README "Grading exercises").

The grading process starts a child (this file, run by path) that executes the notebook with
nbclient and hands it back through a pipe; no file the notebook could write is read back. The
child and the kernel it starts run

- in a fresh scratch folder as working directory, HOME and TMPDIR, with a clean environment
  (no variables of the instructor's shell), offline (COURSE_BLOCK_NETWORK=1);
- under resource limits: address space (RLIMIT_AS), file size, no core dumps, and a number of
  processes (RLIMIT_NPROC) where the kernel enforces it (not for root); a wall-clock limit kills
  the whole process tree, and whatever the notebook started is killed when it ends;
- isolated ("user" isolation, when grading runs as root on Linux): in a private mount namespace
  with its own empty /tmp and /dev/shm, the submissions and grades folders hidden under empty
  mounts, the instructor's home hidden, then as a dedicated unprivileged user id. That user
  cannot write the course, read other students' work, or touch the grading process.
  Without it ("none": not root, or not Linux) the notebook runs as the instructor; the grader
  then watches the course's files and stops if a notebook changed them (see `course_snapshot`).
"""

from __future__ import annotations

import ctypes
import grp
import json
import os
import pwd
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

OFFLINE_ENV = {
    "COURSE_BLOCK_NETWORK": "1",
    "COURSE_PLAIN_PROGRESS": "1",
    "MPLBACKEND": "Agg",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
SANDBOX_UIDS = range(61000, 61100)  # searched for an id with no user, group or process
BOX = "/tmp/box"  # the scratch folder inside the private /tmp of "user" isolation
_CLONE_NEWNS, _MS_NOSUID, _MS_NODEV = 0x00020000, 2, 4
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 4, 36


def _default_memory_gb() -> float:
    """Half the machine's memory, at least 8 GiB, at most 80 % of it."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 8.0
    return round(min(max(8.0, total / 2), 0.8 * total), 1)


@dataclass
class Limits:
    """What one notebook may use: seconds of wall clock, GiB of address space per process,
    processes and threads it may start, GiB per file it writes."""

    timeout: int = 300
    memory_gb: float = field(default_factory=_default_memory_gb)
    processes: int = 512
    file_gb: float = 4.0

    def __post_init__(self) -> None:
        for name in ["timeout", "memory_gb", "processes", "file_gb"]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass
class Execution:
    """How one run ended ("ok", "timeout", "crashed"), the executed notebook (a dict) if any."""

    status: str
    notebook: dict | None
    detail: str = ""
    seconds: float = 0.0


# --- Linux process control (no-ops elsewhere) ------------------------------------------------


def _prctl(option: int, value: int) -> bool:
    """prctl(option, value) on Linux; False where it is not available."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, state letter, real uid) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            uid = os.stat(f"/proc/{entry}").st_uid
        except (OSError, IndexError):
            continue
        table[int(entry)] = (int(fields[1]), fields[0], uid)
    return table


def _descendants(table: dict[int, tuple[int, str, int]], root: int) -> set[int]:
    """Every process below `root` in `table`."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_leftovers(keep: set[int], uid: int | None = None, rounds: int = 50) -> int:
    """SIGKILL every process below this one that is not in `keep` (or below it), and every
    process of `uid`; reap them; return how many were killed."""
    killed: set[int] = set()
    for _ in range(rounds):
        table = _proc_table()
        kept = set(keep)
        for pid in keep:
            kept |= _descendants(table, pid)
        targets = {p for p in _descendants(table, os.getpid()) if p not in kept}
        if uid is not None:
            targets |= {p for p, (_, _, owner) in table.items() if owner == uid}
        alive = {p for p in targets if table[p][1] != "Z"}
        for pid in alive:
            with _quiet():
                os.kill(pid, signal.SIGKILL)
        for pid in targets:
            if table[pid][0] == os.getpid():
                with _quiet():
                    os.waitpid(pid, os.WNOHANG)
        killed |= alive
        if not alive:
            break
        time.sleep(0.05)
    return len(killed)


class _quiet:
    """Context manager: ignore OSError and ValueError (a process already gone, a limit the
    system does not support)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb) -> bool:
        return kind is not None and issubclass(kind, (OSError, ValueError))


def _tasks_of(uid: int) -> int:
    """Processes and threads of `uid` now (RLIMIT_NPROC counts both)."""
    count = 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


def sandbox_ids() -> tuple[int, int] | None:
    """A (uid, gid) that no user, group or process has, for "user" isolation; None if none."""
    used = {owner for _, _, owner in _proc_table().values()}
    for uid in SANDBOX_UIDS:
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            pass
        if uid not in used:
            return uid, uid
    return None


# --- the course's files: a snapshot to notice changes (for isolation "none") ----------------


def course_snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (size, mtime_ns, ctime_ns) of every file under `root` (.git's objects skipped).

    ctime changes on every write and cannot be set back by a program, so a rewritten file shows
    even if its mtime was restored.
    """
    snapshot = {}
    for folder, dirs, files in os.walk(root):
        if os.path.basename(folder) == ".git":
            dirs[:] = [d for d in dirs if d not in ("objects", "logs")]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            with _quiet():
                st = os.lstat(path)
                snapshot[path] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return snapshot


def changed_files(before: dict, after: dict) -> list[str]:
    """Files added, removed or rewritten between two snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


# --- the parent side -------------------------------------------------------------------------


def _environment(box: str) -> dict[str, str]:
    """A clean environment for the child and the kernel, everything private under `box`."""
    home = f"{box}/home"
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": home,
        "USER": "course-grader",
        "LOGNAME": "course-grader",
        "TMPDIR": f"{box}/tmp",
        "IPYTHONDIR": f"{home}/.ipython",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "JUPYTER_CONFIG_DIR": f"{home}/.jupyter",
        "JUPYTER_DATA_DIR": f"{home}/.local/share/jupyter",
        "JUPYTER_RUNTIME_DIR": f"{home}/.local/share/jupyter/runtime",
        **OFFLINE_ENV,
    }


def _may_enter(folder: Path, uid: int, gid: int) -> bool:
    """Whether `uid` (group `gid`) has the execute bit that lets it enter `folder`."""
    st = folder.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _hidden_ancestor(path: Path, uid: int, gid: int) -> Path | None:
    """The highest folder above `path` that `uid` may not enter (e.g. /root), or None."""
    for parent in reversed(path.parents):
        if not _may_enter(parent, uid, gid):
            return parent
    return None


def unenterable(paths: list[Path], uid: int, gid: int) -> list[Path]:
    """Those of `paths` that `uid` may not enter themselves (e.g. a checkout in a 0700 folder made
    by `mktemp -d`): an empty mount can hide a folder above them, but cannot open them."""
    return [p for p in paths if p.is_dir() and not _may_enter(p.resolve(), uid, gid)]


def isolation_plan(hide: list[Path], needed: list[Path], ids: tuple[int, int]) -> dict:
    """What the child does as root before it becomes `ids`: the folders to cover with an empty
    mount (those in `hide`, and any folder above a `needed` one that `ids` may not enter, such
    as /root), each with the `needed` paths beneath it to keep visible."""
    needed = sorted({p.resolve() for p in needed}, key=lambda p: len(p.parts))
    needed = [p for i, p in enumerate(needed) if not any(q in p.parents for q in needed[:i])]
    tops = {p.resolve() for p in hide if p.exists()} - set(needed)
    tops |= {t for t in (_hidden_ancestor(p, *ids) for p in needed) if t is not None}
    covers = {
        str(top): [str(p) for p in needed if top in p.parents]
        for top in sorted(tops, key=lambda p: len(p.parts))
    }
    # what lives under /tmp or /dev/shm (e.g. a clone in /tmp) must be bound back over their new tmpfs
    scratch = [str(p) for p in needed if p.parts[:2] in (("/", "tmp"), ("/", "dev"))]
    return {"uid": ids[0], "gid": ids[1], "covers": covers, "keep": scratch}


def run_isolated(
    notebook: dict,
    limits: Limits,
    plan: dict | None = None,
    extra_env: dict[str, str] | None = None,
) -> Execution:
    """Execute `notebook` in a fresh kernel under `limits`, isolated per `plan` (None: same user).

    The executed notebook comes back through the child's stdout, which nothing else can write to.
    """
    scratch = None
    if plan is None:
        scratch = tempfile.mkdtemp(prefix="course-grade-")
        box = scratch
    else:
        box = BOX
    env = dict(_environment(box), **(extra_env or {}))
    request = {
        "notebook": notebook,
        "timeout": limits.timeout,
        "box": box,
        "plan": plan,
        "memory_gb": limits.memory_gb,
        "file_gb": limits.file_gb,
        "processes": limits.processes,
    }
    keep = _descendants(_proc_table(), os.getpid())
    start = time.perf_counter()
    timed_out, stdout = False, b""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=scratch or "/",
            env=env,
            start_new_session=True,
        )
        try:
            stdout, _ = proc.communicate(json.dumps(request).encode(), timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.send_signal(signal.SIGTERM)  # the child hands back what ran so far
            try:
                stdout, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, _ = proc.communicate()
        finally:
            kill_leftovers(keep, uid=plan["uid"] if plan else None)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        errors.seek(0, os.SEEK_END)
        errors.seek(max(0, errors.tell() - 4000))
        stderr = errors.read().decode("utf-8", errors="replace")
    seconds = time.perf_counter() - start
    try:
        reply = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = {"notebook": None, "error": ""}
    last_line = (stderr.strip().splitlines() or ["no message"])[-1][:300]
    error = str(reply.get("error") or "")
    if timed_out or error.startswith(("CellTimeoutError", "TimeoutError")):
        return Execution(
            "timeout", reply.get("notebook"), f"stopped after {limits.timeout} s", seconds
        )
    if reply.get("notebook") is None or error or proc.returncode != 0:
        detail = error or f"the notebook's process ended with code {proc.returncode}: {last_line}"
        return Execution("crashed", reply.get("notebook"), detail[:300], seconds)
    return Execution("ok", reply["notebook"], "", seconds)


# --- the child side (run as `python -I sandbox.py --child`) -----------------------------------


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data=None):
    """mount(2), raising OSError with the path on failure."""
    if libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _isolate(plan: dict, box: str, scratch_gb: float) -> None:
    """As root: private mounts (hidden folders, an empty /tmp and /dev/shm of `scratch_gb` each,
    which live in memory), then become the plan's unprivileged user."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    _mount(libc, "none", "/", None, _MS_REC | _MS_PRIVATE)
    handles = {p: os.open(p, os.O_PATH) for paths in plan["covers"].values() for p in paths}
    for top, paths in plan["covers"].items():  # shallow first: e.g. /root, then the submissions
        if not os.path.isdir(top):
            continue  # already under an empty mount
        _mount(libc, "tmpfs", top, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
        for path in paths:  # e.g. /root/.pyenv/versions/3.11.7 stays visible
            os.makedirs(path, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{handles[path]}", path, None, _MS_BIND | _MS_REC)
    for fd in handles.values():
        os.close(fd)
    kept = {p: os.open(p, os.O_PATH) for p in plan.get("keep", []) if os.path.isdir(p)}
    for path in ["/tmp", "/dev/shm"]:
        if os.path.isdir(path):
            size = f"size={int(scratch_gb * 1024)}m,mode=1777"
            _mount(libc, "tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, size)
    for path, fd in kept.items():  # e.g. the course and its .venv cloned under /tmp
        os.makedirs(path, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    uid, gid = plan["uid"], plan["gid"]
    for sub in ["home", "tmp", "work"]:
        os.makedirs(f"{box}/{sub}", exist_ok=True)
        os.chown(f"{box}/{sub}", uid, gid)
    os.chown(box, uid, gid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _limit(memory_gb: float, file_gb: float, processes: int) -> None:
    """Resource limits for this process and everything it starts (those the system supports)."""
    limits = [
        (resource.RLIMIT_AS, int(memory_gb * 2**30)),
        (resource.RLIMIT_FSIZE, int(file_gb * 2**30)),
        (resource.RLIMIT_CORE, 0),
    ]
    # RLIMIT_NPROC counts all processes and threads of the user; root is never held to it
    if os.getuid() != 0 and os.path.isdir("/proc"):
        limits.append((resource.RLIMIT_NPROC, _tasks_of(os.getuid()) + processes))
    for which, value in limits:
        with _quiet():
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))


def _child() -> None:
    """Read the request from stdin, execute the notebook, write {"notebook", "error"} to stdout."""
    request = json.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the only way back to the grader
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # the kernel inherits /dev/null, not the pipe
    box, error = request["box"], ""
    if request["plan"] is not None:
        _isolate(request["plan"], box, request["file_gb"])
    else:
        for sub in ["home", "tmp", "work"]:
            os.makedirs(f"{box}/{sub}", exist_ok=True)
    os.chdir(f"{box}/work")
    _prctl(_PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/<pid>/mem or fd/ for the kernel
    _limit(request["memory_gb"], request["file_gb"], request["processes"])

    def stop(signum, frame):
        raise TimeoutError("stopped by the grader's time limit")

    signal.signal(signal.SIGTERM, stop)
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.from_dict(request["notebook"])
    try:
        NotebookClient(
            nb,
            timeout=request["timeout"],
            kernel_name="python3",
            allow_errors=True,
            record_timing=False,
            resources={"metadata": {"path": f"{box}/work"}},
        ).execute()
    except BaseException as exc:  # a dead kernel, a time limit: hand back what ran
        error = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    json.dump({"notebook": nb, "error": error[:500]}, out)
    out.close()


def subreaper(on: bool) -> bool:
    """Make this process adopt orphaned descendants (so none escapes kill_leftovers)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, int(on))


def not_dumpable(on: bool) -> bool:
    """Forbid (or allow again) other processes of the same user to ptrace this one."""
    return _prctl(_PR_SET_DUMPABLE, 0 if on else 1)


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
