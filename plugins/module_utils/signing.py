# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ed25519 signatures of the enterprise manifest: keys, the signature file, sign and verify.

Ed25519 is implemented here from RFC 8032 with Python integers, because modules may use the
standard library only. Keys are the PEM files ``openssl genpkey -algorithm ed25519`` writes: a
PKCS#8 ``PRIVATE KEY`` (RFC 5958, RFC 8410) and its SubjectPublicKeyInfo ``PUBLIC KEY``; their
DER is read by the small parser below.

The signature file ``manifest.json.sig`` sits next to the manifest and holds the signatures of
the current manifest and of the one before it, so a reader that fetched the manifest just before
a patch replaced it still finds its signature. docs/manifest.md, "Signatures", is the reference.

Python integers do not run in constant time. Signing happens on the enterprise host, one
signature per patch, so the timing of one signature is all an observer could measure.
"""

import base64
import binascii
import hashlib
import json
import re

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    SignatureError,
    shown,
)

ALGORITHM = "ed25519"
SIGNATURE_FORMAT = 1
SIGNATURE_SUFFIX = ".sig"
SIGNATURE_KEYS = ("format", "algorithm", "key_id", "signatures")
ENTRY_KEYS = ("sha256", "signature")
KEEP_SIGNATURES = 2

# A signature file holds two short entries; anything bigger is not one.
MAX_SIGNATURE_BYTES = 64 * 1024

# --- the curve (RFC 8032, section 5.1) ----------------------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _inverse(value):
    return pow(value, P - 2, P)


def _recover_x(y, sign):
    """The x of the curve point with this y and sign bit, or None when there is none."""
    if y >= P:
        return None

    x2 = (y * y - 1) * _inverse(D * y * y + 1) % P
    if x2 == 0:
        return None if sign else 0

    # P = 5 (mod 8), so a square root is x2^((P+3)/8), possibly times sqrt(-1).
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None

    if x & 1 != sign:
        x = P - x
    return x


# Points are extended homogeneous coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z.
_BASE_Y = 4 * _inverse(5) % P
_BASE_X = _recover_x(_BASE_Y, 0)
BASE = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % P)
IDENTITY = (0, 1, 1, 0)


def _add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _multiply(scalar, point):
    result = IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _negate(point):
    x, y, z, t = point
    return (P - x if x else 0, y, z, P - t if t else 0)


def _encode_point(point):
    x, y, z, _t = point
    z_inv = _inverse(z)
    x, y = x * z_inv % P, y * z_inv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _decode_point(data):
    """The point a 32-byte encoding names, or None for an encoding RFC 8032 rejects."""
    if len(data) != 32:
        return None

    value = int.from_bytes(data, "little")
    sign, y = value >> 255, value & (2**255 - 1)
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def _hash_int(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def _expand_seed(seed):
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    # Clamping (RFC 8032, 5.1.5): clear the cofactor bits, set the top bit.
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def public_from_seed(seed):
    """The 32-byte public key of a 32-byte private key (the seed)."""
    scalar, _prefix = _expand_seed(seed)
    return _encode_point(_multiply(scalar, BASE))


def sign(seed, message):
    """The 64-byte Ed25519 signature of message (bytes) by the private key seed."""
    scalar, prefix = _expand_seed(seed)
    public = _encode_point(_multiply(scalar, BASE))
    r = _hash_int(prefix, message) % L
    encoded_r = _encode_point(_multiply(r, BASE))
    k = _hash_int(encoded_r, public, message) % L
    s = (r + k * scalar) % L
    return encoded_r + s.to_bytes(32, "little")


def verify(public, message, signature):
    """True when signature (64 bytes) is public's signature of message.

    The check is the one OpenSSL makes: S below L, A a valid point, and the encoding of
    [S]B - [k]A equal to the bytes of R. So a signature this accepts, OpenSSL accepts.
    """
    if len(signature) != 64 or len(public) != 32:
        return False

    point = _decode_point(public)
    s = int.from_bytes(signature[32:], "little")
    if point is None or s >= L:
        return False

    k = _hash_int(signature[:32], public, message) % L
    check = _add(_multiply(s, BASE), _negate(_multiply(k, point)))
    return _encode_point(check) == signature[:32]


# --- keys: PEM and DER ----------------------------------------------------------------------------

OID_ED25519 = "1.3.101.112"
KEY_TYPES = {
    OID_ED25519: "an Ed25519 key",
    "1.3.101.113": "an Ed448 key",
    "1.3.101.110": "an X25519 key",
    "1.2.840.113549.1.1.1": "an RSA key",
    "1.2.840.10045.2.1": "an EC key",
    "1.2.840.10040.4.1": "a DSA key",
}
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


class _DerError(Exception):
    pass


def _der_items(data):
    """Split DER bytes into [(tag, content)]; definite lengths only, as DER requires."""
    items, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise _DerError("truncated")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise _DerError("bad length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise _DerError("truncated")
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items


def _der_expect(data, tags):
    """The items of data; the first ones must carry these tags, in this order."""
    items = _der_items(data)
    if len(items) < len(tags) or any(items[i][0] != tag for i, tag in enumerate(tags)):
        raise _DerError("unexpected structure")
    return items


def _oid(content):
    if not content:
        raise _DerError("empty OID")

    first = content[0]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in content[1:]:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(str(arc) for arc in arcs)


def _algorithm(content):
    """The OID of an AlgorithmIdentifier; Ed25519's has no parameters (RFC 8410)."""
    items = _der_expect(content, [0x06])
    oid = _oid(items[0][1])
    if oid == OID_ED25519 and len(items) != 1:
        raise _DerError("parameters after the Ed25519 OID")
    return oid


def _pem_block(text, label, field):
    """The DER of the one PEM block in text; its label must be label."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise SignatureError(
                f"{field}: expected a PEM file, found bytes that are not text", field=field
            ) from None

    blocks = _PEM.findall(text)
    if not blocks:
        raise SignatureError(f'{field}: expected a PEM "{label}" block, found none')
    if len(blocks) > 1:
        raise SignatureError(f"{field}: expected one PEM block, found {len(blocks)}")

    found, body = blocks[0]
    if found != label:
        hint = ""
        if "PRIVATE" in found and label == "PUBLIC KEY":
            hint = "; give hosts the public key, never the private one"
        elif found == "ENCRYPTED PRIVATE KEY":
            hint = "; write the key without a passphrase and protect the file instead"
        raise SignatureError(
            f'{field}: expected a PEM "{label}" block, found "{found}"{hint}', field=field
        )

    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{field}: the PEM block is not valid base64", field=field) from None


def _key_type_error(field, oid):
    kind = KEY_TYPES.get(oid, f"a key of another type (OID {oid})")
    return SignatureError(f"{field}: expected an Ed25519 key, found {kind}", field=field)


def parse_public_key(text, field="public_key"):
    """The raw 32-byte key of an Ed25519 SubjectPublicKeyInfo PEM ("PUBLIC KEY")."""
    der = _pem_block(text, "PUBLIC KEY", field)
    try:
        (outer,) = _der_expect(der, [0x30])
        algorithm, bits = _der_expect(outer[1], [0x30, 0x03])
        oid = _algorithm(algorithm[1])
    except (_DerError, ValueError):
        raise SignatureError(f"{field}: the PUBLIC KEY is not valid DER", field=field) from None

    if oid != OID_ED25519:
        raise _key_type_error(field, oid)

    # A BIT STRING starts with its count of unused bits, which is 0 for a key.
    if len(bits[1]) != 33 or bits[1][0] != 0:
        raise SignatureError(f"{field}: the Ed25519 key is not 32 bytes long", field=field)
    if _decode_point(bits[1][1:]) is None:
        raise SignatureError(f"{field}: the Ed25519 key is not a point of the curve", field=field)
    return bits[1][1:]


def parse_private_key(text, field="signing_key"):
    """The 32-byte seed of an Ed25519 PKCS#8 PEM ("PRIVATE KEY")."""
    der = _pem_block(text, "PRIVATE KEY", field)
    try:
        (outer,) = _der_expect(der, [0x30])
        items = _der_expect(outer[1], [0x02, 0x30, 0x04])
        version = int.from_bytes(items[0][1], "big")
        oid = _algorithm(items[1][1])
        extra = items[3:]
    except (_DerError, ValueError):
        raise SignatureError(f"{field}: the PRIVATE KEY is not valid DER", field=field) from None

    if oid != OID_ED25519:
        raise _key_type_error(field, oid)
    if version not in (0, 1):
        raise SignatureError(f"{field}: unknown PKCS#8 version {version}", field=field)

    try:
        # The private key is an OCTET STRING that wraps the 32-byte seed (RFC 8410, 7).
        (inner,) = _der_expect(items[2][1], [0x04])
    except (_DerError, ValueError):
        raise SignatureError(f"{field}: the PRIVATE KEY is not valid DER", field=field) from None

    seed = inner[1]
    if len(seed) != 32:
        raise SignatureError(f"{field}: the Ed25519 key is not 32 bytes long", field=field)

    # Version 2 (RFC 5958) may carry the public key as [1]; it must be this seed's.
    for tag, content in extra:
        if tag == 0x81 and content[1:] != public_from_seed(seed):
            raise SignatureError(
                f"{field}: the public key stored in the PRIVATE KEY does not belong to it",
                field=field,
            )

    return seed


def public_key_der(public):
    """The DER SubjectPublicKeyInfo of a raw Ed25519 key (what ``openssl pkey -pubout`` writes)."""
    return bytes.fromhex("302a300506032b6570032100") + public


def public_key_pem(public):
    body = base64.b64encode(public_key_der(public)).decode("ascii")
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


def key_id(public):
    """A short name of a public key: the first 16 hex digits of the sha256 of its DER.

    ``openssl pkey -pubin -in KEY.pub -outform DER | sha256sum | cut -c1-16`` prints the same.
    """
    return hashlib.sha256(public_key_der(public)).hexdigest()[:16]


class SigningKey:
    """A private key read from its PEM; only the seed and the public half are kept."""

    def __init__(self, seed):
        self._seed = seed
        self.public = public_from_seed(seed)
        self.key_id = key_id(self.public)

    @classmethod
    def from_pem(cls, text, field="signing_key"):
        return cls(parse_private_key(text, field))

    def sign(self, message):
        return sign(self._seed, message)

    def verify(self, message, signature):
        return verify(self.public, message, signature)

    def __repr__(self):
        # Never the seed: a repr ends up in tracebacks and logs.
        return f"SigningKey(key_id={self.key_id})"


class VerifyKey:
    """A public key, read from its PEM, that hosts trust."""

    def __init__(self, public):
        self.public = public
        self.key_id = key_id(public)

    @classmethod
    def from_pem(cls, text, field="public_key"):
        return cls(parse_public_key(text, field))

    def verify(self, message, signature):
        return verify(self.public, message, signature)


# --- the signature file ---------------------------------------------------------------------------


def manifest_sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_signature_file(key, manifests):
    """The signature file (a dict) of key over each manifest's bytes, newest first."""
    entries = []
    for data in manifests[:KEEP_SIGNATURES]:
        entries.append(
            {
                "sha256": manifest_sha256(data),
                "signature": base64.b64encode(key.sign(data)).decode("ascii"),
            }
        )
    return {
        "format": SIGNATURE_FORMAT,
        "algorithm": ALGORITHM,
        "key_id": key.key_id,
        "signatures": entries,
    }


def _sig_fail(message, **context):
    raise SignatureError(message, **context)


def _check_entry(entry, field):
    if not isinstance(entry, dict) or sorted(entry) != sorted(ENTRY_KEYS):
        _sig_fail(f'{field}: expected an object with "sha256" and "signature", got {shown(entry)}')

    digest = entry["sha256"]
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        _sig_fail(f"{field}.sha256: expected 64 lowercase hex digits, got {shown(digest)}")

    try:
        signature = base64.b64decode(entry["signature"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        signature = b""
    if len(signature) != 64:
        _sig_fail(
            f"{field}.signature: expected the base64 of 64 bytes, got {shown(entry['signature'])}"
        )
    return {"sha256": digest, "signature": signature}


def parse_signature_file(data, label="signature file"):
    """Validate the bytes of a signature file; return key_id and the decoded signatures.

    label prefixes every message (e.g. "signature file /dist/manifest.json.sig").
    """
    if len(data) > MAX_SIGNATURE_BYTES:
        _sig_fail(f"{label}: it is larger than {MAX_SIGNATURE_BYTES} bytes")

    try:
        doc = json.loads(bytes(data).decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        _sig_fail(f"{label}: it is not UTF-8 (byte {error.start})")
    except json.JSONDecodeError as error:
        _sig_fail(f"{label}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}")

    if not isinstance(doc, dict):
        _sig_fail(f"{label}: expected an object, got {shown(doc)}")
    for key in SIGNATURE_KEYS:
        if key not in doc:
            _sig_fail(f'{label}: missing key "{key}"')
    for key in doc:
        if key not in SIGNATURE_KEYS:
            _sig_fail(f"{label}: unknown key {shown(key)}")

    if isinstance(doc["format"], bool) or doc["format"] != SIGNATURE_FORMAT:
        _sig_fail(f"{label}: format: expected {SIGNATURE_FORMAT}, got {shown(doc['format'])}")
    if doc["algorithm"] != ALGORITHM:
        _sig_fail(f'{label}: algorithm: expected "{ALGORITHM}", got {shown(doc["algorithm"])}')
    if not isinstance(doc["key_id"], str) or not re.fullmatch(r"[0-9a-f]{16}", doc["key_id"]):
        _sig_fail(f"{label}: key_id: expected 16 lowercase hex digits, got {shown(doc['key_id'])}")

    entries = doc["signatures"]
    if not isinstance(entries, list) or not entries:
        _sig_fail(f"{label}: signatures: expected a non-empty list, got {shown(entries)}")

    checked = [_check_entry(entry, f"{label}: signatures[{i}]") for i, entry in enumerate(entries)]
    return {"key_id": doc["key_id"], "signatures": checked}


def find_signature(sigfile, data):
    """The signature sigfile holds for these manifest bytes, or None."""
    digest = manifest_sha256(data)
    for entry in sigfile["signatures"]:
        if entry["sha256"] == digest:
            return entry["signature"]
    return None


def check_signature(key, data, sig_data, label="signature file"):
    """Raise SignatureError unless sig_data (a signature file) holds key's signature of data.

    The messages say what is wrong without guessing who did it: a file signed by another key,
    a manifest the file does not cover (altered, or replaced between the two reads; the error's
    context then has "sha256"), or a signature that does not verify.
    """
    sigfile = parse_signature_file(sig_data, label)
    if sigfile["key_id"] != key.key_id:
        _sig_fail(
            f"it is signed by key {sigfile['key_id']}, not by the trusted key {key.key_id}",
            key_id=sigfile["key_id"],
        )

    signature = find_signature(sigfile, data)
    if signature is None:
        _sig_fail(
            f"{label} holds no signature of this manifest (sha256 {manifest_sha256(data)}): the "
            f"manifest was altered after it was signed",
            sha256=manifest_sha256(data),
        )

    if not key.verify(data, signature):
        _sig_fail(
            f"the signature by key {key.key_id} does not verify: the manifest or its signature "
            f"was altered",
            key_id=key.key_id,
        )
    return sigfile
