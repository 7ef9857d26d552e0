#!/usr/bin/env bash
# The test suite as the README gives it: installs what the tests use for real when it is
# missing (git, the Prometheus server, python3 for the loopback file servers, sshd, ssh and rsync
# for the ssh provider's servers on loopback), then runs
# `cargo test`. Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test it rollout`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The ssh provider's tests start real sshd servers on loopback.
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
# Its uploads go over rsync when both sides have it.
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing what the tests need: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "the tests need ${missing[*]}: install them (Debian: sudo apt-get install -y ${missing[*]}) and run this again" >&2
    exit 2
  fi
fi

cargo test "$@"
