"""Offline stand-in for the get-pip script that ansible-test downloads.

ansible-test sanity bootstraps pip into each of its virtual environments with a script it
fetches from the internet. This machine reaches only the package registries, so this file
takes its place: it bootstraps pip from the interpreter's own ensurepip, then installs the
pinned packages ansible-test asked for from the configured package index.
"""

import subprocess
import sys

# Options only the real get-pip script understands.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    main()
