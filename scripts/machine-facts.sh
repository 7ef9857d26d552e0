# Sourced by the benchmark scripts: facts about the machine and the build for their reports.
# Usage: machine_facts WORK_DIR REPO_DIR; sets cpu, mem, fs, rev and dirty.
machine_facts() {
  local work=$1 repo=$2
  cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  fs=$(df -T "$work" | awk 'NR == 2 { print $2 " on " $1 }')
  rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | grep -q . && echo " (src modified)" || true)
}
