# Sourced by the scripts: one cargo target directory per machine, so RocksDB's C++ is compiled once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/snap-target}
export SNAP_BIN=${SNAP_BIN:-$CARGO_TARGET_DIR/release/snap}

# install_deps: Debian packages the build and the tests need, installed only when missing.
install_deps() {
  local need=()
  dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
  command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  # The MySQL tests start private MariaDB servers (../shared/scripts/mariadb-sandbox.sh).
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
  command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
  # The SFTP tests start a private sshd (scripts/sshd-sandbox.sh).
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  # The backup-plan tests check systemd units (systemd-analyze) and render the HTML report in
  # headless Chromium (issue 14).
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v clang >/dev/null 2>&1 || true
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# install_remote_deps: the servers the remote-backend tests start — moto_server (PyPI) for S3 and
# Garage (compiled once by ../shared/scripts/garage-cluster.sh, ~9 minutes, cached in ~/.cargo/bin).
install_remote_deps() {
  command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]' >&2
  command -v garage >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/garage" ] ||
    cargo install garage --locked --version "${GARAGE_VERSION:-2.5.0}" >&2
}

