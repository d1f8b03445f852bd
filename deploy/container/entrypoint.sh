#!/bin/sh
# The container's entry point (Dockerfile ENTRYPOINT). With no arguments, or
# `serve ...`, it initialises what is missing and then *becomes* the server
# (exec), so `mailserver serve` is PID 1 and receives SIGTERM (drain and
# stop) and SIGHUP (reload policy.yaml and the certificate) directly.
#
# First start on empty volumes:
#   /etc/mailserver      gets the commented templates mailserver.yaml and
#                        policy.yaml, with MAILSERVER_HOSTNAME, MAILSERVER_DOMAINS
#                        and MAILSERVER_CLAMD filled in when set (first-config.py),
#                        checked by `mailserver config check`;
#   /var/lib/mailserver  gets the data folders, a self-signed certificate
#                        (only when tls.cert/tls.key are not configured), the
#                        directory database and the operators' mailbox, whose
#                        temporary password is printed once in the log.
# Every later start finds them and changes nothing (`mailserver init` is
# idempotent).
#
# Anything else is a command: `podman run --rm IMAGE account list` runs
# `mailserver account list`; a program on PATH (sh, python3) runs as given.
set -eu

config="${MAILSERVER_CONFIG:-/etc/mailserver/mailserver.yaml}"

ensure_config() {
  [ -e "$config" ] && return 0
  dir=$(dirname "$config")
  if [ ! -w "$dir" ]; then
    echo "error: $config does not exist and $dir is not writable by uid $(id -u):" >&2
    echo "       give the volume to uid $(id -u), or copy /usr/share/mailserver/config/*.yaml there" >&2
    exit 1
  fi
  python3 /usr/share/mailserver/first-config.py "$dir"
  mailserver config check
}

if [ "$#" -eq 0 ] || [ "$1" = serve ]; then
  [ "$#" -gt 0 ] && shift
  ensure_config
  mailserver init
  exec mailserver serve "$@"
fi

if command -v "$1" >/dev/null 2>&1; then
  exec "$@"
fi
ensure_config  # e.g. `restore` into new volumes: the configuration says where the data goes
exec mailserver "$@"
