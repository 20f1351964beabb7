import pytest

from proxy.policy.tokens import (
    Allowed,
    Denied,
    Reason,
    canonical,
    parse_keys,
    sign,
    token_fields,
    verify,
)

KEYS = {"k1": b"0123456789abcdef0123", "k2": b"another-secret-of-length"}
PATH = "/media/private/report.pdf"
EXP = 1_800_000_000
# The README's test vector: any signer (Django, PHP, Node) must produce exactly this.
VECTOR = "exp=1800000000&kid=k1&sig=a_sS1ZPeXBdSt-x3nh-KKp-O2xw0wUo19LpMkCC1Yg4"


def check(query: str, path: str = PATH, ip: str | None = "198.51.100.7",
          now: float = EXP - 100) -> Allowed | Denied:
    return verify(token_fields(query), path, ip, now, KEYS, skew_seconds=30)


def test_test_vector() -> None:
    assert canonical("k1", EXP, "path", PATH, "") == (
        b"mediaproxy-url-v1\nk1\n1800000000\npath\n/media/private/report.pdf\n")
    assert sign(PATH, key_id="k1", secret=KEYS["k1"], expires=EXP) == VECTOR
    assert check(VECTOR) == Allowed("k1", EXP)


def test_missing_is_401_everything_else_403() -> None:
    assert check("") == Denied(Reason.MISSING)
    assert Reason.MISSING.status == 401
    assert all(r.status == 403 for r in Reason if r is not Reason.MISSING)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (VECTOR.replace("exp=1800000000", "exp=1800000001"), Reason.BAD_SIGNATURE),  # tampered
        (VECTOR.replace("sig=a", "sig=b"), Reason.BAD_SIGNATURE),
        (VECTOR.replace("kid=k1", "kid=k2"), Reason.BAD_SIGNATURE),  # another key's id
        (VECTOR.replace("kid=k1", "kid=nope"), Reason.UNKNOWN_KEY),
        (VECTOR + "&sig=x", Reason.DUPLICATE),  # parameter pollution
        (VECTOR + "&exp=1900000000", Reason.DUPLICATE),
        ("exp=1800000000&kid=k1", Reason.MALFORMED),
        ("exp=soon&kid=k1&sig=" + "a" * 43, Reason.MALFORMED),
        ("exp=1e9&kid=k1&sig=" + "a" * 43, Reason.MALFORMED),
        (VECTOR.replace("sig=", "sig=" + "A" * 5000), Reason.MALFORMED),  # very long
        ("exp=1800000000&kid=k1&sig=short", Reason.BAD_SIGNATURE),
        ("exp=" + "9" * 40 + "&kid=k1&sig=" + "a" * 43, Reason.MALFORMED),
    ],
)
def test_tampering(query: str, reason: Reason) -> None:
    assert check(query) == Denied(reason)


def test_expiry_with_skew() -> None:
    assert check(VECTOR, now=EXP + 29) == Allowed("k1", EXP)
    assert check(VECTOR, now=EXP + 31) == Denied(Reason.EXPIRED)


@pytest.mark.parametrize("other", ["/media/private/report.pdf2", "/media/private/",
                                   "/MEDIA/private/report.pdf", "/media/private/report.pdf/x"])
def test_path_token_is_for_that_path_only(other: str) -> None:
    assert check(VECTOR, path=other) == Denied(Reason.BAD_SIGNATURE)


def test_prefix_token_covers_its_directory_only() -> None:
    query = sign("/v/abc/", key_id="k1", secret=KEYS["k1"], expires=EXP, prefix=True)
    assert isinstance(check(query, path="/v/abc/seg-001.ts"), Allowed)
    assert isinstance(check(query, path="/v/abc/720p/seg-001.ts"), Allowed)
    assert check(query, path="/v/abcd/seg.ts") == Denied(Reason.WRONG_PATH)
    assert check(query, path="/V/abc/seg.ts") == Denied(Reason.WRONG_PATH)  # case matters
    assert check(query, path="/v/") == Denied(Reason.WRONG_PATH)
    # Editing the prefix breaks the signature.
    assert check(query.replace("prefix=/v/abc/", "prefix=/v/"), path="/v/x") == Denied(
        Reason.BAD_SIGNATURE)
    with pytest.raises(ValueError):
        sign("/v/abc", key_id="k1", secret=KEYS["k1"], expires=EXP, prefix=True)


def test_ip_binding() -> None:
    single = sign(PATH, key_id="k1", secret=KEYS["k1"], expires=EXP, ip="198.51.100.7")
    assert isinstance(check(single, ip="198.51.100.7"), Allowed)
    assert check(single, ip="198.51.100.8") == Denied(Reason.WRONG_IP)
    assert check(single, ip=None) == Denied(Reason.WRONG_IP)
    network = sign(PATH, key_id="k1", secret=KEYS["k1"], expires=EXP, ip="198.51.100.0/24")
    assert isinstance(check(network, ip="198.51.100.200"), Allowed)
    assert check(network, ip="198.51.101.1") == Denied(Reason.WRONG_IP)
    assert check(network.replace("ip=198.51.100.0/24", "ip=0.0.0.0/0"),
                 ip="8.8.8.8") == Denied(Reason.BAD_SIGNATURE)


def test_key_rotation_both_keys_valid() -> None:
    old = sign(PATH, key_id="k1", secret=KEYS["k1"], expires=EXP)
    new = sign(PATH, key_id="k2", secret=KEYS["k2"], expires=EXP)
    assert isinstance(check(old), Allowed) and isinstance(check(new), Allowed)


def test_parse_keys() -> None:
    assert parse_keys("a=0123456789abcdef, b=fedcba9876543210") == {
        "a": b"0123456789abcdef", "b": b"fedcba9876543210"}
    assert parse_keys("") == {}
    assert isinstance(parse_keys("a=short"), str)
    assert isinstance(parse_keys("noequals"), str)
    assert isinstance(parse_keys("bad id=0123456789abcdef"), str)
