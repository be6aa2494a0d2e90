"""The one family of atomic writers: every output file and directory gpt2qa writes goes here
(the readers of JSON and YAML files are `gpt2qa.reading`).

Each writer builds its output under a temporary name beside the final path and renames it
into place, so a run killed at any moment leaves either the old file or the new one, never a
half-written one. `tempfile` creates 0600 files and 0700 directories; these writers give the
result the permissions an ordinary `open()`/`mkdir()` would have under the current umask
(0644/0755 under umask 022), so outputs stay readable by whoever the user meant to share
them with.

What an output path may already be (`output_target` decides; `check_output_file` asks it
before any work is done):

- a regular file, or nothing: replaced atomically, as above;
- a FIFO, a character or block device (/dev/null, a terminal), or a link to an open
  descriptor (/dev/stdout, /proc/self/fd/N): written through, opened and written in place
  (appending, without fsync), never replaced, so /dev/null stays a device and a FIFO's reader
  gets the data;
- a symbolic link: followed; the file it points to is replaced atomically beside itself and
  the link stays a link. A dangling link creates the file it points to, if that folder
  exists (else one line). A link loop, a socket or a directory is refused with one line.

A write that fails (a read-only location, a full disk, no permission) is one `OutputError`
line naming the path, the reason and, for a full disk, the free space left there; the
temporary file or directory is removed, so the old output stays whole (`cannot_write`).
`check_output_file` and `check_output_dir` also refuse a location that cannot be written
(read-only, no permission) before any work is done. A streamed prediction log is the one file
appended to (`append_text_durably`, fsynced), and cut back to its last whole line after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from gpt2qa.errors import GPT2QAError


class OutputError(GPT2QAError):
    """An output that could not be written (read-only location, full disk, no permission):
    one line naming the path and the reason. `errno` is the OS error number when known."""

    def __init__(self, message: str, path: Path, errno_: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno_


WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EIO, errno.EFBIG})
"""OS errors that mean "this location cannot take the output" (others pass unchanged)."""

_OS_ERROR = re.compile(r"os error (\d+)")
"""How Rust-backed writers (safetensors, tokenizers) spell an OS error inside their message."""


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def free_space(path: str | os.PathLike[str]) -> str:
    """The free space on the disk that holds `path` (or its nearest existing folder), in
    words ("1.9 MB free"), or "free space unknown"."""
    try:
        free = shutil.disk_usage(_nearest_existing(Path(path))).free
    except OSError:
        return "free space unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def write_errno(exc: BaseException, path: str | os.PathLike[str] | None = None) -> int | None:
    """The OS error number behind a failed write, or None when `exc` is not a write failure.
    An OSError carries it; safetensors' SafetensorError says "(os error 28)"; torch.save's
    writer says only "PytorchStreamWriter failed" / "unexpected pos": with no bytes left on
    `path`'s disk that is a full disk (ENOSPC), else EIO."""
    if isinstance(exc, GPT2QAError):
        return None
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in WRITE_ERRNOS else None
    text = str(exc)
    found = _OS_ERROR.search(text)
    if found is not None:
        return int(found.group(1))
    if isinstance(exc, RuntimeError) and ("PytorchStreamWriter" in text
                                          or "inline_container" in text):
        try:
            full = path is not None and shutil.disk_usage(_nearest_existing(Path(path))).free == 0
        except OSError:
            full = False
        return errno.ENOSPC if full else errno.EIO
    return None


def cannot_write(path: str | os.PathLike[str], exc: BaseException, what: str = "",
                 code: int | None = None) -> OutputError:
    """The one line for a failed write of `path` (`code`, default: `write_errno`): the path,
    the reason and, for a full disk, the free space there."""
    code = write_errno(exc, path) if code is None else code
    reason = os.strerror(code) if code is not None else str(exc).splitlines()[0]
    if code in (errno.ENOSPC, errno.EDQUOT):
        reason += f"; {free_space(path)} on that disk"
    prefix = f"{what} " if what else ""
    return OutputError(f"{prefix}{path}: cannot write ({reason})", Path(path), code)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str = "") -> Iterator[None]:
    """Turn a failed write inside the block (OSError, a writer's own error type) into one
    `OutputError` line naming `path`; other exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        if write_errno(exc, path) is None:
            raise
        raise cannot_write(path, exc, what) from None


def check_writable(path: str | os.PathLike[str], what: str = "output") -> None:
    """One OutputError line when `path`'s nearest existing folder cannot be written (a
    read-only file system, no permission): before any work, not after it."""
    folder = _nearest_existing(Path(path))
    if not folder.is_dir():
        return  # _check_parents names the file on the way
    if not os.access(folder, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only(folder) else errno.EACCES
        raise OutputError(f"{what} {path}: cannot write in {folder} ({os.strerror(code)})",
                          Path(path), code)


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _check_parents(path: Path, what: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GPT2QAError(f"{what} {path}: {parent} is a file, not a directory")
            return


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> None:
    """GPT2QAError (one line, naming `what`, e.g. "--out-file") unless a file can go at `path`
    (see the module docstring: a FIFO, a device or a symlink is fine)."""
    path = Path(path)
    if path.is_dir():
        raise GPT2QAError(f"{what} {path}: is a directory; give a file name")
    target, through = output_target(path, what)
    _check_parents(target, what)
    if not through:
        check_writable(target, what)


_FD_DIR = re.compile(r"/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/fd")
"""A process's descriptor folder: its entries are links to open files, pipes and sockets."""


def _links_to_descriptor(path: Path) -> bool:
    """Whether `path`, or a link on the way from it, is an entry of /proc/<pid>/fd
    (/dev/stdout, /dev/fd/1, a link to /proc/self/fd/1)."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        if _FD_DIR.fullmatch(os.path.realpath(os.path.dirname(current))):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return False


def output_target(path: str | os.PathLike[str], what: str = "output file") -> tuple[Path, bool]:
    """Where a write to `path` goes, and whether it is written through (True: a FIFO, a
    device, an open descriptor) rather than replaced atomically (False). A symlink gives the
    file it points to. One GPT2QAError line for a link loop, a socket, a directory, or a
    dangling link into a folder that does not exist."""
    path = Path(path)
    try:
        st = os.stat(path)  # follows links
    except (FileNotFoundError, NotADirectoryError):  # _check_parents names a file on the way
        st = None
    except OSError as exc:  # ELOOP, EACCES on the way
        raise GPT2QAError(f"{what} {path}: cannot follow this path ({exc.strerror})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            return path, True
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a socket or other special file"
        raise GPT2QAError(f"{what} {path}: is {kind}; give a file, a FIFO or a device")
    if not path.is_symlink():
        return path, False
    if _links_to_descriptor(path):
        return path, True  # e.g. /dev/stdout redirected to a file: write where the shell writes
    real = Path(os.path.realpath(path))
    if st is None and not real.parent.is_dir():
        raise GPT2QAError(f"{what} {path}: a symlink to {real}, whose folder does not exist")
    return real, False


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> None:
    """GPT2QAError (one line, naming `what`, e.g. "--out-dir") unless `path` is or can become
    a directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GPT2QAError(f"{what} {path}: is a file, not a directory")
    _check_parents(path, what)
    check_writable(path, what)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by a
    set-and-restore of os.umask (a brief window another thread could observe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the umask (0o644 under 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new directory under the umask (0o755 under 022)."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb",
                encoding: str | None = None) -> Iterator[IO]:
    """Yield an open temporary file beside `path`; it replaces `path` only if the block
    succeeds (with umask-honouring permissions), and is removed otherwise.

    A symlink's target is replaced instead, and a FIFO or device is written through
    (`output_target`)."""
    path, through = output_target(path)
    if through:
        with writing(path), open(path, mode.replace("w", "a"), encoding=encoding) as fh:
            yield fh
        return
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        code = write_errno(exc, tmp) if isinstance(exc, Exception) else None
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if code is None:
            raise
        raise cannot_write(path, exc, code=code) from None


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    with atomic_file(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: object) -> Path:
    """Write `obj` as indented UTF-8 JSON to `path` atomically. NaN and infinity are not JSON
    (other readers refuse them): one GPT2QAError line naming the file and the first such
    value's place, and nothing is written."""
    try:
        text = json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False)
    except ValueError:
        where = non_finite_path(obj)
        raise GPT2QAError(f"{path}: not written: {where or 'a value'} is NaN or infinite, "
                          "which JSON cannot hold") from None
    with atomic_file(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


@contextlib.contextmanager
def json_object_writer(path: str | os.PathLike[str]) -> Iterator[Callable[[str, Any], None]]:
    """Yield add(key, value): the object is written member by member, atomically, in the
    very bytes `write_json_atomic(path, dict(members))` gives (each key added once), without
    the whole object in memory (a streamed run's merged predictions)."""
    count = 0
    with atomic_file(path, "w", encoding="utf-8") as fh:
        def add(key: str, value: Any) -> None:
            nonlocal count
            try:
                text = json.dumps(value, ensure_ascii=False, indent=2, allow_nan=False)
            except ValueError:
                raise GPT2QAError(f"{path}: not written: {non_finite_path(value, key)} is NaN "
                                  "or infinite, which JSON cannot hold") from None
            member = json.dumps(key, ensure_ascii=False) + ": " + text.replace("\n", "\n  ")
            fh.write(("{\n  " if count == 0 else ",\n  ") + member)
            count += 1

        yield add
        fh.write("\n}" if count else "{}")


def append_text_durably(path: str | os.PathLike[str], text: str) -> None:
    """Append UTF-8 `text` to `path` (created if absent) and fsync it, and a new file's folder
    entry, before returning: what was appended survives a crash or a power cut."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if new:
            folder = os.open(path.parent, os.O_RDONLY)
            os.fsync(folder)
            os.close(folder)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an advisory lock on the regular file `path` (made empty if absent; never a link)
    for the block: a second run that asks for it gets one line, instead of interleaving its
    writes with the first's. The kernel drops the lock when the process ends, killed or not."""
    import fcntl

    path = Path(path)
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                         file_mode())
    except OSError as exc:  # a link where the lock belongs (ELOOP), and the like
        raise GPT2QAError(f"{path}: cannot open it to lock it ({exc.strerror}; a link is "
                          "refused)") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GPT2QAError(f"{path}: not a regular file; gpt2qa writes and locks it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GPT2QAError(f"{path.parent}: another gpt2qa run is writing here now (it "
                              f"holds {path.name}); wait for it, or give another --out-dir"
                              ) from None
        yield
    finally:
        os.close(fd)


def truncate_durably(path: str | os.PathLike[str], size: int) -> None:
    """Cut `path` to its first `size` bytes and fsync it (a torn last line dropped): the
    bytes before `size` are never rewritten."""
    with writing(path), open(path, "r+b") as fh:
        fh.truncate(size)
        os.fsync(fh.fileno())


def non_finite_path(obj: object, where: str = "") -> str | None:
    """The JSON path ("predictions[2].score") of the first NaN or infinite float in `obj`."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where
    items: Any = (obj.items() if isinstance(obj, dict)
                  else enumerate(obj) if isinstance(obj, (list, tuple)) else ())
    for key, value in items:
        inner = (f"{where}.{key}" if where else str(key)) if isinstance(obj, dict) \
            else f"{where}[{key}]"
        found = non_finite_path(value, inner)
        if found is not None:
            return found
    return None


def _set_modes(root: Path) -> None:
    fmode, dmode = file_mode(), dir_mode()
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), dmode)
        for name in files:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                os.chmod(path, fmode)
    os.chmod(root, dmode)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `final` only if the block succeeds.

    Before the rename, the directory and everything in it get the umask's modes: mkdtemp
    makes the directory 0700, and some writers (safetensors) create their files 0600.
    A symlink to a directory is followed: the directory is replaced, the link stays.
    """
    final = Path(final)
    if final.is_symlink():
        final = Path(os.path.realpath(final))
    if final.exists() and not final.is_dir():
        raise GPT2QAError(f"output directory {final}: is a file, not a directory")
    with writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        _set_modes(tmp)
    except BaseException as exc:
        # Judged while the temporary directory still fills the disk; the free space is
        # reported once it is gone (what a retry would have).
        code = write_errno(exc, tmp) if isinstance(exc, Exception) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if code is None:
            raise
        raise cannot_write(final, exc, code=code) from None
    old = None
    with writing(final):
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
