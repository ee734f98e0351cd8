"""Reading the input files of solfmt, soldump and soldrv: regular files only, with a size bound.

A FIFO, a terminal or a device (``soldump /dev/zero``, ``solfmt fifo.sol``) is refused at
once with a sentence instead of blocking or reading without end, and a file larger than the
bound is refused without reading it all. Both raise :class:`OSError` with the sentence as
``strerror``, so every caller reports them as it reports a missing file.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_SOL_BYTES = 16 * 1024 * 1024
"""Largest .sol source read, in bytes (the largest real one, HFEMS, has 23 kB)."""

MAX_SFT_BYTES = 1024 * 1024
"""Largest .sft file read, in bytes (a v4 file with every table full is about 100 kB)."""

_KINDS = (
    (stat.S_ISFIFO, "a FIFO or pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_regular_file(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """Return the bytes of the regular file ``path``, at most ``limit`` bytes of ``what``.

    The file is opened without blocking and checked with ``fstat`` before anything is read
    (no race with a file replaced by a FIFO).

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    limit : int
        The largest size accepted, in bytes.
    what : str
        What the file is, for messages (e.g. ``"an .sft file"``).

    Returns
    -------
    bytes
        The whole content.

    Raises
    ------
    OSError
        The usual ones (missing file, permission, ``Is a directory``), ``not a regular file
        (a FIFO or pipe) ...`` and ``larger than N bytes, the limit for ...``; the file name is
        in ``filename``.
    """
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        kind = next((label for test, label in _KINDS if test(mode)), "a special file")
        raise OSError(
            errno.EINVAL,
            f"not a regular file ({kind}); only regular files are read, so that a pipe "
            "or a device can neither block nor flood the command",
            name,
        )
    with open(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes, the limit for {what}", name)
    return data
