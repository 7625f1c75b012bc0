#!/usr/bin/env bash
# Copies records from the flat key layout of backend = "redis" (Mesh's: <prefix>record:<id>)
# to the hash-tagged layout of backend = "redis-cluster" (<prefix>record:{<id>}), or back with
# --to-flat. Run it with every instance stopped; it copies each record's value and version (a
# tombstone stays a tombstone) and its deadline, if it expires (filed in the target's expiry
# index), and leaves the source untouched. History is not copied: clients that resume get a
# snapshot once, as after any history loss.
#
#   scripts/migrate-keys.sh redis://old-host:6379 redis://cluster-node:7000 "mesh:"
#   scripts/migrate-keys.sh --to-flat redis://cluster-node:7000 redis://new-host:6379 "mesh:"
#
# The source and target may be one server (a single node read in one layout and written in
# the other). Where the target already holds a record at the same or a higher version, it is
# kept. Needs redis-cli; `-c` makes it follow cluster redirections.
set -euo pipefail

to_flat=0
if [ "${1:-}" = --to-flat ]; then to_flat=1; shift; fi
if [ $# -ne 3 ]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
src=$1 dst=$2 prefix=$3

# The record ids in the source: from every version key (live records and tombstones). On a
# cluster source, every master is scanned.
source_ids() {
  local pattern
  if [ "$to_flat" = 1 ]; then pattern="${prefix}record-version:{*}"; else pattern="${prefix}record-version:*"; fi
  local nodes
  nodes=$(redis-cli -u "$src" cluster nodes 2>/dev/null | awk '$3 ~ /master/ {split($2, a, "@"); print a[1]}' || true)
  if [ -z "$nodes" ]; then
    redis-cli -u "$src" --scan --pattern "$pattern"
  else
    for node in $nodes; do redis-cli -h "${node%:*}" -p "${node##*:}" --scan --pattern "$pattern"; done
  fi | while IFS= read -r key; do
    local id=${key#"${prefix}record-version:"}
    if [ "$to_flat" = 1 ]; then id=${id#\{}; id=${id%\}}; fi
    printf '%s\n' "$id"
  done
}

name() { # kind id layout(flat|tagged)
  if [ "$3" = tagged ]; then printf '%s%s:{%s}' "$prefix" "$1" "$2"; else printf '%s%s:%s' "$prefix" "$1" "$2"; fi
}

# The target's expiry index set for a record: the one set of a node, or on a cluster the set
# its slot picks among EXPIRY_INDEX_SHARDS (8, src/store/redis/keys.rs).
index_of() { # id
  if [ "$to" = tagged ]; then
    local slot
    slot=$(redis-cli -c -u "$dst" cluster keyslot "$(name record-version "$1" tagged)")
    printf '%srecord-expiry-index:{%s}' "$prefix" $((slot % 8))
  else
    printf '%srecord-expiry-index' "$prefix"
  fi
}

if [ "$to_flat" = 1 ]; then from=tagged to=flat; else from=flat to=tagged; fi
copied=0 skipped=0
while IFS= read -r id; do
  version=$(redis-cli -c -u "$src" --raw get "$(name record-version "$id" $from)")
  [ -n "$version" ] || continue
  have=$(redis-cli -c -u "$dst" --raw get "$(name record-version "$id" $to)")
  if [ -n "$have" ] && [ "$have" -ge "$version" ]; then skipped=$((skipped + 1)); continue; fi
  value_key=$(name record "$id" $from)
  deadline=""
  if [ "$(redis-cli -c -u "$src" exists "$value_key")" = 1 ]; then
    # -x: the value travels on stdin, byte for byte (--raw output adds one newline: cut it).
    redis-cli -c -u "$src" --raw get "$value_key" | head -c -1 \
      | redis-cli -c -u "$dst" -x set "$(name record "$id" $to)" >/dev/null
    deadline=$(redis-cli -c -u "$src" --raw get "$(name record-expires "$id" $from)")
  else
    redis-cli -c -u "$dst" del "$(name record "$id" $to)" >/dev/null
  fi
  if [ -n "$deadline" ]; then
    # Filed in the index before the deadline is set, as the store does.
    redis-cli -c -u "$dst" zadd "$(index_of "$id")" "$deadline" "$id" >/dev/null
    redis-cli -c -u "$dst" set "$(name record-expires "$id" $to)" "$deadline" >/dev/null
  else
    redis-cli -c -u "$dst" del "$(name record-expires "$id" $to)" >/dev/null
  fi
  redis-cli -c -u "$dst" set "$(name record-version "$id" $to)" "$version" >/dev/null
  copied=$((copied + 1))
done < <(source_ids)
echo "migrate-keys: $copied records copied, $skipped kept (target as new or newer)" >&2
