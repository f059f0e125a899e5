#!/usr/bin/env bash
# Make the enterprise's Ed25519 key pair for signing manifests, with the openssl CLI.
#   scripts/make_signing_key.sh DIR [NAME]   -> DIR/NAME.key (private, 0600), DIR/NAME.pub
# NAME defaults to "enterprise". The private key stays on the enterprise host
# (enterprise_patch_signing_key); the .pub text goes to the hosts (remote_ivr_update_public_key).
# An existing key is never overwritten: replacing it would lock out every host that trusts it.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 DIR [NAME]" >&2
  exit 2
fi
dir=$1
name=${2:-enterprise}
key="$dir/$name.key"
pub="$dir/$name.pub"

if ! command -v openssl >/dev/null 2>&1; then
  echo "$0: openssl is not installed; it is needed to make the key" >&2
  exit 1
fi
for path in "$key" "$pub"; do
  if [ -e "$path" ]; then
    echo "$0: $path exists; remove it first to make a new key pair" >&2
    exit 1
  fi
done

mkdir -p "$dir"
# The umask keeps the private key unreadable by others from the moment it exists.
(umask 077 && openssl genpkey -algorithm ed25519 -out "$key")
openssl pkey -in "$key" -pubout -out "$pub"
chmod 0644 "$pub"
key_id=$(openssl pkey -pubin -in "$pub" -outform DER | sha256sum | cut -c1-16)
echo "private key: $key (keep it on the enterprise host, mode 0600)"
echo "public key:  $pub (give its text to the IVR hosts)"
echo "key ID:      $key_id"
