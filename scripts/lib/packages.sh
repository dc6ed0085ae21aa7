# Sourced by scripts/setup and the language workers' scripts: how they
# tell a toolchain is there, and Debian packages installed as root
# (through sudo when not root; sudo may ask for a password only on a
# terminal), `apt-get update` run only when the install fails (the package
# lists may be stale or absent).

# Ruby and its headers (Debian's ruby-dev).
ruby_headers() {
    command -v ruby >/dev/null \
        && ruby -e 'exit(File.exist?(File.join(RbConfig::CONFIG["rubyhdrdir"], "ruby.h")))' 2>/dev/null
}

# libclang itself, which bindgen loads (Debian's libclang-dev links
# llvm-N/lib/libclang.so); libclang-cpp, which other packages bring, is
# not it.
have_libclang() {
    [ -n "${LIBCLANG_PATH:-}" ] || compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null
}

# Runs its arguments as root; fails when that cannot be had.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        echo "need root to run: $*" >&2
        return 1
    fi
}

# apt_install PACKAGE...: installs them; fails without apt-get or root.
apt_install() {
    command -v apt-get >/dev/null || return 1
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@")
    as_root "${install[@]}" || { as_root apt-get update && as_root "${install[@]}"; }
}
