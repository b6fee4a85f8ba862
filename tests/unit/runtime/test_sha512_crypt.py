"""SHA-512-crypt by the system's libcrypt: the spec's test vectors, fresh salts, refusals."""

from __future__ import annotations

import re

import pytest

from gpucluster.runtime import sha512_crypt
from gpucluster.runtime.sha512_crypt import (
    SALT_ALPHABET,
    CryptUnavailable,
    crypt,
    hash_password,
    verify_password,
)

# Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512" (akkadia.org/drepper/SHA-crypt.txt),
# the SHA-512 vectors: (setting, password, hash). Left out: "rounds=10", which the spec clamps
# to 1000 and libxcrypt (what nginx uses) refuses.
SPEC_VECTORS = [
    (
        "$6$saltstring",
        "Hello world!",
        (
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
            "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        ),
    ),
    (
        "$6$rounds=10000$saltstringsaltstring",
        "Hello world!",
        (
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sb"
            "HbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
        ),
    ),
    (
        "$6$rounds=5000$toolongsaltstring",
        "This is just a test",
        (
            "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQ"
            "zQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"
        ),
    ),
    (
        "$6$rounds=1400$anotherlongsaltstring",
        "a very much longer text to encrypt.  This one even stretches over morethan one line.",
        (
            "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wP"
            "vMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"
        ),
    ),
    (
        "$6$rounds=77777$short",
        "we have a short salt string but not a short password",
        (
            "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0g"
            "ge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"
        ),
    ),
]


@pytest.mark.parametrize(("setting", "password", "expected"), SPEC_VECTORS)
def test_the_spec_vectors(setting, password, expected):
    assert crypt(password, setting) == expected
    assert verify_password(password, expected)


def test_a_fresh_hash_has_a_random_16_character_salt_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    pattern = rf"\$6\$([{re.escape(SALT_ALPHABET)}]{{16}})\$[./0-9A-Za-z]{{86}}"
    salts = [re.fullmatch(pattern, hashed).group(1) for hashed in (first, second)]
    assert salts[0] != salts[1]  # a new salt each time
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horse!", first)
    assert not verify_password("", first)


def test_a_non_ascii_password_is_hashed_as_utf8():
    hashed = hash_password("pässwörd")
    assert verify_password("pässwörd", hashed)
    assert not verify_password("passwort", hashed)


def test_other_schemes_and_broken_hashes_are_refused():
    with pytest.raises(ValueError, match="SHA-512-crypt"):
        crypt("x", "$1$saltsalt")  # MD5-crypt: not what the edge stores
    assert not verify_password("x", "$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1")
    assert not verify_password("x", "plain-text")
    assert not verify_password("x", "$6$")


def test_a_missing_libcrypt_is_a_clear_error(monkeypatch):
    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    sha512_crypt._libcrypt.cache_clear()
    monkeypatch.setattr(sha512_crypt.ctypes, "CDLL", no_library)
    try:
        with pytest.raises(CryptUnavailable, match=r"libcrypt\.so\.1.*libcrypt1"):
            hash_password("x")
    finally:
        sha512_crypt._libcrypt.cache_clear()
