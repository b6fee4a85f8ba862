"""SHA-512-crypt ("$6$...") password hashes from the system's libcrypt, as nginx checks them.

nginx's `auth_basic_user_file` verifies a hash with the system's crypt(3): libxcrypt
(`libcrypt.so.1`) on Debian and Ubuntu. Hashing with that same library keeps the two in step;
Python's own `crypt` module, which did this, is gone in Python 3.13. SHA-512-crypt rather than
bcrypt: nginx checks the hash on every dashboard request, and bcrypt would make each one slow.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hmac
import secrets
import threading

from gpucluster.errors import GpuClusterError

SALT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SALT_LENGTH = 16  # the longest salt SHA-512-crypt uses
LIBCRYPT = "libcrypt.so.1"  # libxcrypt's soname, the library nginx is linked with
# libxcrypt's crypt_rn needs at least sizeof(struct crypt_data) (32 KiB) of scratch space
_SCRATCH_BYTES = 1 << 15


class CryptUnavailable(GpuClusterError, RuntimeError):
    """The system's libcrypt is missing or cannot make SHA-512-crypt hashes."""


def hash_password(password: str) -> str:
    """A SHA-512-crypt hash of `password` with a fresh random salt (default 5000 rounds)."""
    salt = "".join(secrets.choice(SALT_ALPHABET) for _ in range(SALT_LENGTH))
    return crypt(password, f"$6${salt}")


def verify_password(password: str, hashed: str) -> bool:
    """Whether `password` matches the crypt hash `hashed` (compared in constant time)."""
    try:
        return hmac.compare_digest(crypt(password, hashed), hashed)
    except ValueError:
        return False


def crypt(password: str, setting: str) -> str:
    """crypt(3) of `password` with `setting` ("$6$salt" or a whole hash), by libcrypt.

    Raises ValueError when libcrypt refuses the setting, CryptUnavailable when there is no
    libcrypt to ask or it does not know SHA-512-crypt.
    """
    if not setting.startswith("$6$"):
        raise ValueError(f"not a SHA-512-crypt setting (wants '$6$...'): {setting[:3]!r}")
    hashed = _libcrypt()(password.encode("utf-8"), setting.encode("ascii"))
    # libxcrypt answers a refused setting with a "*0"/"*1" failure token (or NULL)
    if hashed is None or hashed.startswith("*"):
        raise ValueError("libcrypt refused the SHA-512-crypt setting")
    if not hashed.startswith("$6$"):
        raise CryptUnavailable(
            f"the system's libcrypt did not make a SHA-512-crypt hash: {hashed[:3]!r}"
        )
    return hashed


@functools.cache
def _libcrypt():
    """A thread-safe `crypt(phrase, setting) -> str | None` over the system's libcrypt."""
    library = _load_library()
    if hasattr(library, "crypt_rn"):  # libxcrypt: reentrant, caller-sized scratch space
        crypt_rn = library.crypt_rn
        crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        crypt_rn.restype = ctypes.c_char_p

        def call(phrase: bytes, setting: bytes) -> str | None:
            scratch = ctypes.create_string_buffer(_SCRATCH_BYTES)
            result = crypt_rn(phrase, setting, scratch, _SCRATCH_BYTES)
            return None if result is None else result.decode("ascii")

        return call
    # another libcrypt: plain crypt(3) returns a static buffer, so one caller at a time
    plain = library.crypt
    plain.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    plain.restype = ctypes.c_char_p
    lock = threading.Lock()

    def call_plain(phrase: bytes, setting: bytes) -> str | None:
        with lock:
            result = plain(phrase, setting)
        return None if result is None else result.decode("ascii")

    return call_plain


def _load_library() -> ctypes.CDLL:
    names = [LIBCRYPT]
    found = ctypes.util.find_library("crypt")
    if found and found != LIBCRYPT:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    raise CryptUnavailable(
        f"cannot load the system's libcrypt ({LIBCRYPT}), needed to hash the dashboard "
        "password the way nginx checks it; install libxcrypt (Debian/Ubuntu: libcrypt1, "
        "Fedora/RHEL: libxcrypt)"
    )
