# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ed25519 in pure Python, checked against RFC 8032's vectors, the cryptography package and the
openssl CLI; the PEM keys operators make; the signature file."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible_collections.prairiefyre.updater.plugins.module_utils import signing as sg
from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    ManifestError,
    SignatureError,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

REPO = Path(__file__).resolve().parents[4]
MAKE_KEY = REPO / "scripts" / "make_signing_key.sh"

# RFC 8032, section 7.1: secret key, public key, message, signature (hex).
RFC8032_VECTORS = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
        "1cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
        "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760"
        "984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23"
        "a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c6"
        "6431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


def raw_public(private):
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def private_pem(private, encryption=None):
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    ).decode()


def public_pem(private):
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pem(label, der):
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


# --- the algorithm ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "public", "message", "signature"),
    [case[1:] for case in RFC8032_VECTORS],
    ids=[case[0] for case in RFC8032_VECTORS],
)
def test_rfc8032_vectors(seed, public, message, signature):
    seed, public, message, signature = map(bytes.fromhex, (seed, public, message, signature))
    reference = ed25519.Ed25519PrivateKey.from_private_bytes(seed)

    assert (raw_public(reference), reference.sign(message)) == (public, signature)
    assert sg.public_from_seed(seed) == public
    assert sg.sign(seed, message) == signature
    assert sg.verify(public, message, signature) is True


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 1000, 4096])
def test_signatures_agree_with_the_cryptography_package(length):
    seed = hashlib.sha256(b"seed %d" % length).digest()
    message = os.urandom(length)
    reference = ed25519.Ed25519PrivateKey.from_private_bytes(seed)

    ours = sg.sign(seed, message)

    assert ours == reference.sign(message)
    reference.public_key().verify(ours, message)
    assert sg.verify(raw_public(reference), message, reference.sign(message)) is True


def flip(data, index):
    data = bytearray(data)
    data[index] ^= 0x01
    return bytes(data)


def malleable(signature):
    """The same signature with S + L: a second encoding of S that RFC 8032 requires refusing."""
    s = int.from_bytes(signature[32:], "little") + sg.L
    return signature[:32] + s.to_bytes(32, "little")


ALTERATIONS = [
    ("message changed", lambda m, s, p: (flip(m, 3), s, p)),
    ("R changed", lambda m, s, p: (m, flip(s, 0), p)),
    ("S changed", lambda m, s, p: (m, flip(s, 40), p)),
    ("S plus L", lambda m, s, p: (m, malleable(s), p)),
    ("another key", lambda m, s, p: (m, s, sg.public_from_seed(b"\x07" * 32))),
    ("signature short", lambda m, s, p: (m, s[:63], p)),
    ("message longer", lambda m, s, p: (m + b"\n", s, p)),
]


@pytest.mark.parametrize(
    "alter", [case[1] for case in ALTERATIONS], ids=[case[0] for case in ALTERATIONS]
)
def test_an_altered_signature_fails_here_and_in_the_cryptography_package(alter):
    seed = b"\x01" * 32
    message = b'{"format": 1, "serial": 2}\n'
    message, signature, public = alter(message, sg.sign(seed, message), sg.public_from_seed(seed))

    assert sg.verify(public, message, signature) is False
    with pytest.raises((InvalidSignature, ValueError)):
        key = ed25519.Ed25519PublicKey.from_public_bytes(public)
        key.verify(signature, message)


def test_a_public_key_that_is_no_point_is_refused():
    not_a_point = next(
        bytes([y]) + bytes(31)
        for y in range(2, 255)
        if sg._decode_point(bytes([y]) + bytes(31)) is None
    )

    assert sg.verify(not_a_point, b"m", bytes(64)) is False


# --- PEM keys -----------------------------------------------------------------------------------


def test_keys_from_the_cryptography_package_are_read():
    private = ed25519.Ed25519PrivateKey.generate()

    key = sg.SigningKey.from_pem(private_pem(private))
    verify_key = sg.VerifyKey.from_pem(public_pem(private))

    assert key.public == verify_key.public == raw_public(private)
    assert sg.public_key_pem(key.public) == public_pem(private)
    assert verify_key.verify(b"m", key.sign(b"m")) is True


def test_a_signing_key_never_shows_its_seed():
    seed = bytes(range(32))

    key = sg.SigningKey(seed)

    assert repr(key) == f"SigningKey(key_id={key.key_id})"
    assert seed.hex() not in repr(key)


def pkcs8_v2(seed, public):
    """A version 2 PKCS#8 (RFC 5958) with the public key as [1], which openssl can also read."""
    inner = bytes.fromhex("0420") + seed
    body = (
        bytes.fromhex("020101300506032b6570")
        + bytes([0x04, len(inner)])
        + inner
        + bytes([0x81, 33, 0])
        + public
    )
    return bytes([0x30, len(body)]) + body


def test_a_version_2_private_key_is_read_when_its_public_key_matches():
    seed = b"\x05" * 32

    key = sg.SigningKey.from_pem(pem("PRIVATE KEY", pkcs8_v2(seed, sg.public_from_seed(seed))))

    assert key.public == sg.public_from_seed(seed)


def other_private_keys():
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed448": ed448.Ed448PrivateKey.generate(),
        "x25519": x25519.X25519PrivateKey.generate(),
    }


OTHERS = other_private_keys()
ED = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
SHORT_SPKI = bytes.fromhex("3029300506032b6570032000") + bytes(31)
NOT_A_POINT = next(
    bytes([y]) + bytes(31)
    for y in range(2, 255)
    if sg._decode_point(bytes([y]) + bytes(31)) is None
)

BAD_PUBLIC_KEYS = [
    (
        "no PEM",
        "ssh-ed25519 AAAAC3Nza",
        'public_key: expected a PEM "PUBLIC KEY" block, found none',
    ),
    (
        "the private key",
        private_pem(ED),
        'public_key: expected a PEM "PUBLIC KEY" block, found "PRIVATE KEY"; give hosts the '
        "public key, never the private one",
    ),
    ("RSA", public_pem(OTHERS["rsa"]), "public_key: expected an Ed25519 key, found an RSA key"),
    ("EC", public_pem(OTHERS["ec"]), "public_key: expected an Ed25519 key, found an EC key"),
    (
        "Ed448",
        public_pem(OTHERS["ed448"]),
        "public_key: expected an Ed25519 key, found an Ed448 key",
    ),
    (
        "X25519",
        public_pem(OTHERS["x25519"]),
        "public_key: expected an Ed25519 key, found an X25519 key",
    ),
    (
        "two keys",
        public_pem(ED) + public_pem(ED),
        "public_key: expected one PEM block, found 2",
    ),
    (
        "bad base64",
        "-----BEGIN PUBLIC KEY-----\nMCowBQ*DK2VwAyEA\n-----END PUBLIC KEY-----\n",
        "public_key: the PEM block is not valid base64",
    ),
    (
        "truncated DER",
        pem("PUBLIC KEY", (SPKI_PREFIX + raw_public(ED))[:20]),
        "public_key: the PUBLIC KEY is not valid DER",
    ),
    (
        "31-byte key",
        pem("PUBLIC KEY", SHORT_SPKI),
        "public_key: the Ed25519 key is not 32 bytes long",
    ),
    (
        "not a curve point",
        pem("PUBLIC KEY", SPKI_PREFIX + NOT_A_POINT),
        "public_key: the Ed25519 key is not a point of the curve",
    ),
    (
        "binary",
        b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00" + bytes(32) + b"\xff",
        "public_key: expected a PEM file, found bytes that are not text",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("text", "message"),
    [case[1:] for case in BAD_PUBLIC_KEYS],
    ids=[case[0] for case in BAD_PUBLIC_KEYS],
)
def test_a_bad_public_key_is_refused_without_showing_it(text, message):
    with pytest.raises(SignatureError) as raised:
        sg.VerifyKey.from_pem(text)

    assert str(raised.value) == message
    assert "MC" not in str(raised.value)


BAD_PRIVATE_KEYS = [
    (
        "the public key",
        public_pem(ED),
        'signing_key: expected a PEM "PRIVATE KEY" block, found "PUBLIC KEY"',
    ),
    (
        "encrypted",
        private_pem(ED, serialization.BestAvailableEncryption(b"secret")),
        'signing_key: expected a PEM "PRIVATE KEY" block, found "ENCRYPTED PRIVATE KEY"; write the '
        "key without a passphrase and protect the file instead",
    ),
    (
        "OpenSSH format",
        ED.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode(),
        'signing_key: expected a PEM "PRIVATE KEY" block, found "OPENSSH PRIVATE KEY"',
    ),
    ("RSA", private_pem(OTHERS["rsa"]), "signing_key: expected an Ed25519 key, found an RSA key"),
    (
        "traditional RSA",
        OTHERS["rsa"]
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode(),
        'signing_key: expected a PEM "PRIVATE KEY" block, found "RSA PRIVATE KEY"',
    ),
    (
        "stored public key of another key",
        pem("PRIVATE KEY", pkcs8_v2(b"\x05" * 32, sg.public_from_seed(b"\x06" * 32))),
        "signing_key: the public key stored in the PRIVATE KEY does not belong to it",
    ),
    (
        "31-byte seed",
        pem("PRIVATE KEY", bytes.fromhex("302d020100300506032b657004210420") + bytes(31)),
        "signing_key: the PRIVATE KEY is not valid DER",
    ),
    (
        "seed of 31 bytes, well formed",
        pem("PRIVATE KEY", bytes.fromhex("302d020100300506032b65700421041f") + bytes(31)),
        "signing_key: the Ed25519 key is not 32 bytes long",
    ),
    ("empty", "", 'signing_key: expected a PEM "PRIVATE KEY" block, found none'),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("text", "message"),
    [case[1:] for case in BAD_PRIVATE_KEYS],
    ids=[case[0] for case in BAD_PRIVATE_KEYS],
)
def test_a_bad_private_key_is_refused_without_showing_it(text, message):
    with pytest.raises(SignatureError) as raised:
        sg.SigningKey.from_pem(text)

    assert str(raised.value) == message


def test_every_signature_error_is_a_manifest_error():
    assert issubclass(SignatureError, ManifestError)


# --- the openssl CLI and the key helper ----------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")


@pytest.fixture
def openssl_keys(tmp_path):
    """A key pair made by scripts/make_signing_key.sh; returns (dir, its output)."""
    done = subprocess.run(
        [str(MAKE_KEY), str(tmp_path / "keys")], check=True, capture_output=True, text=True
    )
    return tmp_path / "keys", done.stdout


@needs_openssl
def test_the_key_helper_makes_keys_this_code_reads(openssl_keys):
    keys, output = openssl_keys

    key = sg.SigningKey.from_pem((keys / "enterprise.key").read_text())
    verify_key = sg.VerifyKey.from_pem((keys / "enterprise.pub").read_text())

    assert key.public == verify_key.public
    assert f"key ID:      {key.key_id}\n" in output
    assert oct((keys / "enterprise.key").stat().st_mode & 0o777) == "0o600"


@needs_openssl
@pytest.mark.bad_input
def test_the_key_helper_never_overwrites_a_key(openssl_keys):
    keys, _output = openssl_keys
    before = (keys / "enterprise.key").read_bytes()

    done = subprocess.run([str(MAKE_KEY), str(keys)], check=False, capture_output=True, text=True)

    assert done.returncode == 1
    assert done.stderr == (
        f"{MAKE_KEY}: {keys}/enterprise.key exists; remove it first to make a new key pair\n"
    )
    assert (keys / "enterprise.key").read_bytes() == before


@needs_openssl
def test_openssl_verifies_our_signature_and_we_verify_its(openssl_keys, tmp_path):
    keys, _output = openssl_keys
    key = sg.SigningKey.from_pem((keys / "enterprise.key").read_text())
    message = tmp_path / "manifest.json"
    message.write_bytes(b'{"format": 1}\n')
    (tmp_path / "ours.sig").write_bytes(key.sign(message.read_bytes()))

    verified = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(keys / "enterprise.pub"),
            "-rawin",
            "-in",
            str(message),
            "-sigfile",
            str(tmp_path / "ours.sig"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    theirs = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-sign",
            "-inkey",
            str(keys / "enterprise.key"),
            "-rawin",
            "-in",
            str(message),
        ],
        check=True,
        capture_output=True,
    ).stdout

    assert verified.returncode == 0, verified.stderr
    assert theirs == key.sign(message.read_bytes())
    assert key.verify(message.read_bytes(), theirs) is True


@needs_openssl
def test_the_key_id_is_what_openssl_and_sha256sum_print(openssl_keys):
    keys, _output = openssl_keys
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(keys / "enterprise.pub"), "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout

    key = sg.VerifyKey.from_pem((keys / "enterprise.pub").read_text())

    assert key.key_id == hashlib.sha256(der).hexdigest()[:16]


# --- the signature file -------------------------------------------------------------------------

KEY = sg.SigningKey(b"\x02" * 32)
OTHER = sg.SigningKey(b"\x03" * 32)
OLD = b'{"serial": 1}\n'
NEW = b'{"serial": 2}\n'


def sigfile(key=KEY, manifests=(NEW, OLD)):
    return json.dumps(sg.make_signature_file(key, list(manifests))).encode()


def test_a_signature_file_signs_the_new_and_the_previous_manifest():
    doc = sg.make_signature_file(KEY, [NEW, OLD, b"older"])

    assert list(doc) == ["format", "algorithm", "key_id", "signatures"]
    assert (doc["format"], doc["algorithm"], doc["key_id"]) == (1, "ed25519", KEY.key_id)
    assert [entry["sha256"] for entry in doc["signatures"]] == [
        hashlib.sha256(NEW).hexdigest(),
        hashlib.sha256(OLD).hexdigest(),
    ]
    for data in (NEW, OLD):
        assert sg.check_signature(KEY, data, sigfile())["key_id"] == KEY.key_id


def edited(change):
    doc = sg.make_signature_file(KEY, [NEW])
    change(doc)
    return json.dumps(doc).encode()


SIG = "signature file S"
BAD_SIGNATURE_FILES = [
    ("empty", b"", f"{SIG}: invalid JSON at line 1 column 1: Expecting value"),
    ("not UTF-8", b'{"a": "\xfe"}', f"{SIG}: it is not UTF-8 (byte 7)"),
    ("a list", b"[]", f"{SIG}: expected an object, got []"),
    ("no key ID", edited(lambda d: d.pop("key_id")), f'{SIG}: missing key "key_id"'),
    ("extra key", edited(lambda d: d.update(serial=2)), f'{SIG}: unknown key "serial"'),
    ("format 2", edited(lambda d: d.update(format=2)), f"{SIG}: format: expected 1, got 2"),
    (
        "RSA",
        edited(lambda d: d.update(algorithm="rsa")),
        f'{SIG}: algorithm: expected "ed25519", got "rsa"',
    ),
    (
        "key ID too short",
        edited(lambda d: d.update(key_id="abc")),
        f'{SIG}: key_id: expected 16 lowercase hex digits, got "abc"',
    ),
    (
        "no signatures",
        edited(lambda d: d.update(signatures=[])),
        f"{SIG}: signatures: expected a non-empty list, got []",
    ),
    (
        "entry without signature",
        edited(lambda d: d["signatures"][0].pop("signature")),
        f'{SIG}: signatures[0]: expected an object with "sha256" and "signature", got '
        f'{{"sha256": "{hashlib.sha256(NEW).hexdigest()}"}}',
    ),
    (
        "sha256 upper case",
        edited(lambda d: d["signatures"][0].update(sha256="A" * 64)),
        f'{SIG}: signatures[0].sha256: expected 64 lowercase hex digits, got "{"A" * 64}"',
    ),
    (
        "signature not base64",
        edited(lambda d: d["signatures"][0].update(signature="not base64!")),
        f'{SIG}: signatures[0].signature: expected the base64 of 64 bytes, got "not base64!"',
    ),
    (
        "signature truncated",
        edited(lambda d: d["signatures"][0].update(signature=base64.b64encode(bytes(33)).decode())),
        f"{SIG}: signatures[0].signature: expected the base64 of 64 bytes, got "
        f'"{base64.b64encode(bytes(33)).decode()}"',
    ),
    (
        "too large",
        b" " * (sg.MAX_SIGNATURE_BYTES + 1),
        f"{SIG}: it is larger than {sg.MAX_SIGNATURE_BYTES} bytes",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("data", "message"),
    [case[1:] for case in BAD_SIGNATURE_FILES],
    ids=[case[0] for case in BAD_SIGNATURE_FILES],
)
def test_a_bad_signature_file_is_refused(data, message):
    with pytest.raises(SignatureError) as raised:
        sg.check_signature(KEY, NEW, data, "signature file S")

    assert str(raised.value) == message


def forged():
    doc = sg.make_signature_file(KEY, [NEW])
    doc["signatures"][0]["signature"] = base64.b64encode(OTHER.sign(NEW)).decode()
    return json.dumps(doc).encode()


SIGNATURE_FAILURES = [
    (
        "signed by another key",
        NEW,
        sigfile(OTHER),
        f"it is signed by key {OTHER.key_id}, not by the trusted key {KEY.key_id}",
    ),
    (
        "manifest altered",
        NEW.replace(b"2", b"3"),
        sigfile(),
        f"signature file S holds no signature of this manifest (sha256 "
        f"{hashlib.sha256(NEW.replace(b'2', b'3')).hexdigest()}): the manifest was altered after "
        "it was signed",
    ),
    (
        "another key's signature under this key's ID",
        NEW,
        forged(),
        f"the signature by key {KEY.key_id} does not verify: the manifest or its signature was "
        "altered",
    ),
]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("data", "sig_data", "message"),
    [case[1:] for case in SIGNATURE_FAILURES],
    ids=[case[0] for case in SIGNATURE_FAILURES],
)
def test_a_manifest_without_the_trusted_signature_is_refused(data, sig_data, message):
    with pytest.raises(SignatureError) as raised:
        sg.check_signature(KEY, data, sig_data, "signature file S")

    assert str(raised.value) == message
