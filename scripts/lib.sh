# Shared helpers of the scripts/ commands (sourced, not run).

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${HONGBAO_BUILD_DIR:-$repo_dir/build}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Debian packages the project builds and runs with.
readonly HB_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config python3
  libcaf-dev libprotobuf-dev protobuf-compiler libpq-dev postgresql
  libspdlog-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  libjemalloc-dev libhiredis-dev libedit-dev tmux curl
)

# Installs whatever of HB_PACKAGES is missing (apt-get, as root).
install_deps() {
  local missing=()
  for p in "${HB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# PostgreSQL runs as an unprivileged user when we are root; its data
# directory must be reachable by that user. A checkout under a private home
# directory is not, so fall back to a folder under /tmp named after the repo.
choose_pg_dir() {
  [[ -n "${HONGBAO_PG_DIR:-}" ]] && return 0
  local dir="$build_dir/pg" d="$build_dir"
  if [[ $(id -u) -eq 0 ]]; then
    while [[ "$d" != "/" ]]; do
      if [[ -e "$d" ]] && ! stat -c '%A' "$d" | grep -q '^d.\{8\}[xt]'; then
        dir="/tmp/hongbao-pg-$(printf '%s' "$repo_dir" | md5sum | cut -c1-8)"
        break
      fi
      d="$(dirname "$d")"
    done
  fi
  export HONGBAO_PG_DIR="$dir"
}

configure_and_build() {
  # Paths relative to the checkout in ccache's keys: a fresh clone in another
  # folder (CI) still hits the cache of an earlier build.
  export CCACHE_BASEDIR="$repo_dir" CCACHE_NOHASHDIR=1
  # Translation units built with the precompiled CAF header are cacheable
  # only when ccache may ignore the header's own defines and time stamps.
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  local gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  if [[ -f "$build_dir/CMakeCache.txt" ]]; then
    gen=()  # keep whatever generator the build tree has
  fi
  say "building in $build_dir"
  cmake -S "$repo_dir" -B "$build_dir" "${gen[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" -j "$(nproc)"
}

# The libpq connection string of the private cluster without a database
# name (tests create their own databases).
pg_server_url() {
  "$repo_dir/scripts/pg" url | sed 's/ dbname=[^ ]*//'
}
