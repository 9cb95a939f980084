"""Where ``save_as`` writes: the workspace's folders, and files written inside them and nowhere else.

**The workspace** (:class:`Workspace`) is an ordered list of folders (:class:`Root`), decided per
call (:func:`workspace_of`): over stdio, the roots the client declares (MCP ``roots/list``), else
the server's working directory when it is a folder a project can live in (not a filesystem or drive
root, not a system folder such as ``/usr`` or ``C:\\Windows\\System32``, and writable), else the
output folder. The output folder is always accepted for an absolute path. A hosted server writes
only into the output folder its operator set, which is then its only root: a client's roots name
folders on the client's computer, not the server's.

**A path** (:func:`save_target`) is relative to the first root, or absolute inside one of the
roots; ``~`` is the home folder. On a server that is not Windows, a Windows path (``C:\\...``,
``C:/...``, ``\\\\host\\share``) is refused in a sentence, and a backslash in a relative path is
read as a separator. ``..`` is refused, and the name ends in an extension that names the format.

**Writing** (:func:`write_confined`, blocking) walks the path one folder at a time from a
descriptor of the root, opening each with ``O_NOFOLLOW`` and creating the missing ones, so nothing
outside the root is ever opened. A symbolic link met on the way is followed only when its target,
worked out here, stays inside the root (at most 16 links); one that points out is refused. The
file is written under a temporary name in its folder, then linked to its name, which fails when
the name exists (so nothing is overwritten), or, with ``overwrite``, renamed over it (which
replaces a link itself, never what it points to). Where the platform has no descriptor-relative
calls (Windows), each folder on the way is checked not to be a link before it is used, and the file
is created exclusively.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from .constants import MAX_PATH_CHARS
from .errors import InvalidParameterError, SaveError
from .storage import partial_files

__all__ = [
    "MAX_ROOTS",
    "Root",
    "SaveTarget",
    "Workspace",
    "client_roots",
    "is_system_folder",
    "save_target",
    "target_is_free",
    "workspace_of",
    "write_confined",
]

RootOrigin = Literal["client root", "working directory", "output folder"]
#: Client roots considered (a client may declare more; the rest are ignored).
MAX_ROOTS = 32
_MAX_LINKS = 16
_MAX_NAME_BYTES = 255
#: A Windows link or junction (FILE_ATTRIBUTE_REPARSE_POINT).
_REPARSE_POINT = 0x400
#: Folders no project lives in (and below which nothing is written), by platform.
_POSIX_SYSTEM = tuple(
    PurePosixPath(p)
    for p in (
        "/bin", "/sbin", "/usr", "/etc", "/dev", "/proc", "/sys", "/boot", "/run", "/lib", "/lib32",
        "/lib64", "/libx32", "/System", "/Library", "/private/etc", "/private/var/db",
    )
)  # fmt: skip
_WINDOWS_SYSTEM = ("windows", "program files", "program files (x86)", "programdata")
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Descriptor-relative calls (POSIX): the walk never resolves a path from the top again.
_BY_DESCRIPTOR = all(
    f in os.supports_dir_fd for f in (os.open, os.mkdir, os.link, os.unlink, os.readlink, os.stat)
) and bool(_NOFOLLOW)


@dataclass(frozen=True)
class Root:
    """One folder of the workspace: its absolute path (links resolved) and where it came from."""

    path: Path
    origin: RootOrigin


@dataclass(frozen=True)
class Workspace:
    """The folders ``save_as`` may write into; relative paths go into the first."""

    roots: tuple[Root, ...]

    def describe(self) -> str:
        return "; ".join(f"{root.path} ({root.origin})" for root in self.roots)


@dataclass(frozen=True)
class SaveTarget:
    """A file to write: its root, its path below the root (components), and whether it may replace one."""

    root: Root
    parts: tuple[str, ...]
    overwrite: bool = False

    @property
    def relative(self) -> str:
        return "/".join(self.parts)

    @property
    def absolute(self) -> Path:
        return self.root.path.joinpath(*self.parts)

    @property
    def extension(self) -> str:
        """The extension, lower case, without its dot (``webp``)."""
        return PurePosixPath(self.parts[-1]).suffix.lower().lstrip(".")

    def numbered(self, n: int) -> SaveTarget:
        """``hero-2.webp`` for ``hero.webp``: one of several outputs."""
        name = PurePosixPath(self.parts[-1])
        return replace(self, parts=(*self.parts[:-1], f"{name.stem}-{n}{name.suffix}"))

    def renamed(self, name: str) -> SaveTarget:
        """The file ``name`` in the same folder."""
        return replace(self, parts=(*self.parts[:-1], name))


# --- the workspace ------------------------------------------------------------------------------


def client_roots(uris: Iterable[str]) -> list[Root]:
    """The folders among a client's root URIs: ``file://`` URIs of existing folders (at most
    :data:`MAX_ROOTS`); anything else is skipped, and so is a filesystem root or a system folder
    (a client that declares ``/`` does not make the whole disk writable)."""
    found: list[Root] = []
    for uri in list(uris)[:MAX_ROOTS]:
        if len(uri) > MAX_PATH_CHARS:
            continue
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            continue
        text = unquote(parts.path)
        if os.name == "nt" and len(text) > 2 and text[0] == "/" and text[2] == ":":
            text = text[1:]  # file:///C:/work -> C:/work
        try:
            path = Path(text)
            if path.is_absolute() and path.is_dir() and not is_system_folder(path.resolve()):
                found.append(Root(path.resolve(), "client root"))
        except (OSError, ValueError):
            continue
    return found


def is_system_folder(path: PurePath) -> bool:
    """A filesystem or drive root, or a folder of the system (where no project lives).

    Works on either flavour of path, so Windows paths are judged alike on any server.
    """
    if path == PurePath(path.anchor) or len(path.parts) <= 1:
        return True
    if isinstance(path, PureWindowsPath):
        return len(path.parts) > 1 and path.parts[1].lower() in _WINDOWS_SYSTEM
    posix = PurePosixPath(path)
    return any(posix == top or posix.is_relative_to(top) for top in _POSIX_SYSTEM)


def _usable(folder: Path) -> bool:
    """A working directory a project can live in: not a root or system folder, and writable."""
    try:
        marked = folder.stat().st_mode & 0o222  # a folder marked read-only is not a workspace, even for root
        return (
            folder.is_dir() and not is_system_folder(folder) and bool(marked) and os.access(folder, os.W_OK)
        )
    except OSError:
        return False


def workspace_of(client: list[Root] | None, *, cwd: Path | None, output_dir: Path, hosted: bool) -> Workspace:
    """The workspace of one call (see the module docstring)."""
    output = Root(_resolved(output_dir), "output folder")
    if hosted:
        return Workspace((output,))
    if client:
        roots = list(client)
    elif cwd is not None and _usable(cwd):
        roots = [Root(cwd.resolve(), "working directory")]
    else:
        roots = []
    if all(root.path != output.path for root in roots):
        roots.append(output)
    return Workspace(tuple(roots))


def _resolved(folder: Path) -> Path:
    try:
        return folder.resolve()
    except OSError:
        return folder.absolute()


# --- a path in the workspace --------------------------------------------------------------------


def save_target(
    text: str,
    workspace: Workspace,
    *,
    overwrite: bool = False,
    home: Path | None = None,
    windows: bool = os.name == "nt",
) -> SaveTarget:
    """Where ``text`` (a ``save_as`` value) points in ``workspace``, or the reason it cannot be used."""
    given = text.strip()
    shown = repr(given[:200])
    if not given:
        raise _refused("is empty: give a file name such as 'assets/hero.png'.")
    if "\x00" in given or any(ord(c) < 32 for c in given):
        raise _refused(f"{shown} contains a control character.")
    if given.startswith("file:"):
        raise _refused(f"{shown} is a URI: give a path such as 'assets/hero.png'.")
    if not windows and (PureWindowsPath(given).drive or given.startswith("\\\\")):
        raise _refused(
            f"{shown} is a Windows path, but this server runs on another system and cannot write there. "
            "Give a path relative to the workspace, such as 'assets/hero.png'."
        )
    if given.startswith("~"):
        head, _, rest = given.replace("\\", "/").partition("/")
        if head != "~":
            raise _refused(
                f"{shown}: '{head}' (another user's home folder) is not accepted; use ~/ or a path."
            )
        if home is None:
            raise _refused(f"{shown}: this server has no home folder; give a path relative to the workspace.")
        given = str(home / rest) if rest else str(home)
    flavour: type[PurePath] = PureWindowsPath if windows else PurePosixPath
    path = flavour(given if windows else given.replace("\\", "/"))
    if ".." in path.parts:
        raise _refused(f"{shown} goes up a folder ('..'); give a path inside the workspace.")
    if path.is_absolute():
        root, parts = _inside_a_root(path, workspace, shown)
    else:
        root, parts = workspace.roots[0], tuple(p for p in path.parts if p not in ("", "."))
    if not parts or given.endswith(("/", "\\")):
        raise _refused(f"{shown} names a folder: end it with a file name such as 'hero.png'.")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
            raise _refused(f"{shown} has a name longer than {_MAX_NAME_BYTES} bytes.")
    return SaveTarget(root, parts, overwrite)


def _inside_a_root(path: PurePath, workspace: Workspace, shown: str) -> tuple[Root, tuple[str, ...]]:
    for root in workspace.roots:
        base = type(path)(root.path)
        if path.is_relative_to(base):
            return root, tuple(path.relative_to(base).parts)
    raise _refused(
        f"{shown} is outside the workspace, so it is not written. Give a path relative to the workspace "
        f"(or inside one of its folders: {workspace.describe()})."
    )


def _refused(reason: str) -> InvalidParameterError:
    return InvalidParameterError("save_as", reason)


# --- writing inside a root -----------------------------------------------------------------------


class _Outside(Exception):
    """A link on the way points out of the root (or too many links)."""


def target_is_free(target: SaveTarget) -> None:
    """Raise when ``target`` may not be written: it exists (without ``overwrite``), or its path leaves
    the root through a link, or a folder on the way is a file. Checked before a job is sent; the
    write checks again on what it opens."""
    if not target.root.path.exists():
        return  # an output folder not made yet: nothing is in it
    try:
        if _BY_DESCRIPTOR:
            held = _descend(target, create=False)
            if held is None:
                return
            fd, name = held
            try:
                existing = _lstat(name, fd)
            finally:
                os.close(fd)
        else:
            existing = _walk_by_path(target, create=False)
    except _Outside as why:
        raise _refused(f"{target.relative!r} {why}") from None
    except NotADirectoryError:
        raise _refused(f"{target.relative!r}: a folder on its way is a file.") from None
    except OSError as exc:
        raise _refused(f"{target.relative!r} cannot be checked ({exc.strerror or exc}).") from None
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise _refused(f"{target.relative!r} is a folder in the workspace; choose a file name.")
        if not target.overwrite:
            raise _refused(
                f"{target.relative!r} already exists in the workspace and was left as it is. Choose another "
                "name, or pass overwrite=true to replace it."
            )


def write_confined(target: SaveTarget, data: bytes) -> Path:
    """Write ``data`` to ``target`` inside its root (see the module docstring); its absolute path.

    Blocking. Raises :class:`SaveError` with what to do.
    """
    try:
        if target.root.origin == "output folder":
            target.root.path.mkdir(parents=True, exist_ok=True)  # made when first written to
        if _BY_DESCRIPTOR:
            _write_by_descriptor(target, data)
        else:
            _write_by_path(target, data)
    except FileExistsError:
        raise SaveError(
            f"{target.relative!r} already exists in the workspace and was left as it is (pass overwrite=true "
            "to replace it)."
        ) from None
    except _Outside as why:
        raise SaveError(f"{target.relative!r} was not written: it {why}") from None
    except OSError as exc:
        raise SaveError(
            f"Could not write {target.relative!r} in {target.root.path}: {exc.strerror or exc}."
        ) from None
    return target.absolute


def _lstat(name: str, fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _descend(target: SaveTarget, *, create: bool) -> tuple[int, str] | None:
    """A descriptor of the folder that holds the file, and the file's name; None when a folder on
    the way is missing (``create=False``). Never opens anything outside the root."""
    pending = list(target.parts)
    walked: list[str] = []
    links = 0
    fd = os.open(target.root.path, _DIR_FLAGS)
    try:
        while len(pending) > 1:
            name = pending[0]
            try:
                inner = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened (and checked) on the next turn
                continue
            except OSError as exc:
                found = _lstat(name, fd) if exc.errno in (errno.ELOOP, errno.ENOTDIR) else None
                if found is None or not stat.S_ISLNK(found.st_mode):
                    raise
                links += 1
                if links > _MAX_LINKS:
                    raise _Outside("goes through too many symbolic links.") from None
                pending = _follow(walked, os.readlink(name, dir_fd=fd), pending[1:], target.root.path)
                walked = []
                os.close(fd)
                fd = os.open(target.root.path, _DIR_FLAGS)
                continue
            os.close(fd)
            fd = inner
            walked.append(pending.pop(0))
        return fd, pending[0]
    except BaseException:
        os.close(fd)
        raise


def _follow(walked: list[str], link: str, rest: list[str], root: Path) -> list[str]:
    """The components from the root that a link met after ``walked`` leads to, then ``rest``."""
    pointed = PurePosixPath(link)
    if pointed.is_absolute():
        if not pointed.is_relative_to(root):
            raise _Outside("goes through a symbolic link that points out of the workspace.")
        parts = list(pointed.relative_to(root).parts)
    else:
        parts = [*walked, *pointed.parts]
    out: list[str] = []
    for part in parts:
        if part == "..":
            if not out:
                raise _Outside("goes through a symbolic link that points out of the workspace.")
            out.pop()
        elif part not in ("", "."):
            out.append(part)
    return [*out, *rest]


def _write_by_descriptor(target: SaveTarget, data: bytes) -> None:
    held = _descend(target, create=True)
    assert held is not None
    fd, name = held
    tmp = f".{name[:64]}.{secrets.token_hex(6)}.part"
    tracked = str(target.absolute.parent / tmp)
    partial_files.add(tracked)
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if target.overwrite:
                os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                _link_exclusive(tmp, name, fd, data)
        finally:
            try:
                os.unlink(tmp, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        partial_files.discard(tracked)
        os.close(fd)


def _link_exclusive(tmp: str, name: str, fd: int, data: bytes) -> None:
    """Give the finished file its name unless the name exists (atomic where hard links exist)."""
    try:
        os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
            raise
    # a file system without hard links: created exclusively and written in place
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
    with os.fdopen(out, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _walk_by_path(target: SaveTarget, *, create: bool) -> os.stat_result | None:
    """The file's status (None: absent), checking that no folder on the way is a link."""
    folder = target.root.path
    for name in target.parts[:-1]:
        folder = folder / name
        try:
            found = os.lstat(folder)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(folder)
            found = os.lstat(folder)
        if stat.S_ISLNK(found.st_mode) or int(getattr(found, "st_file_attributes", 0)) & _REPARSE_POINT:
            raise _Outside("goes through a link, which this server does not follow here.")
        if not stat.S_ISDIR(found.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder))
    try:
        return os.lstat(folder / target.parts[-1])
    except FileNotFoundError:
        return None


def _write_by_path(target: SaveTarget, data: bytes) -> None:
    _walk_by_path(target, create=True)
    path = target.absolute
    if target.overwrite:
        tmp = path.with_name(f".{path.name[:64]}.{secrets.token_hex(6)}.part")
        partial_files.add(str(tmp))
        try:
            with open(tmp, "xb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        finally:
            partial_files.discard(str(tmp))
            tmp.unlink(missing_ok=True)
        return
    with open(path, "xb") as handle:
        handle.write(data)
