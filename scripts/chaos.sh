#!/usr/bin/env bash
# The chaos suite (tests/chaos.rs): three replicas on one broker and one
# MongoDB-protocol database, clients recording every frame, faults injected
# on a seeded schedule, and a checker holding what each client got against
# the store: lost acked messages, false failures, duplicates, reordering,
# holes, and delivery times during and after each fault.
#
#   scripts/chaos.sh                 the short lane (what CI runs), all brokers
#   scripts/chaos.sh --long          every fault twice, 10 s each, 32 clients
#   scripts/chaos.sh --upgrade       a rolling upgrade: the cross-replica
#                                    scenarios of tests/cluster.rs on every
#                                    broker with node0 built from UPGRADE_FROM
#   options: --seed N|random  --brokers redis,nats,rabbitmq  --faults kill_broker,cut_link,...
#   (without --seed, the fixed schedule the test suite runs)
#
# Faults: kill_replica terminate_replica freeze_replica kill_broker cut_link
# kill_database freeze_database. The same seed replays the same schedule,
# placements and send timings. Result tables go to stdout and are appended
# to target/chaos/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# The release a rolling upgrade starts from: the last commit before the
# room's event model changed the types behind the cluster's envelopes.
UPGRADE_FROM=b6853ca
upgrade=""
export CHAOS_LANE=short
while [ $# -gt 0 ]; do
  case "$1" in
    --long) CHAOS_LANE=long ;;
    --upgrade) upgrade=1 ;;
    --seed) export CHAOS_SEED="$2"; shift ;;
    --brokers) export CHAOS_BROKERS="$2"; shift ;;
    --faults) export CHAOS_FAULTS="$2"; shift ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done

install_servers

if [ -n "$upgrade" ]; then
  # Built once from the commit's own tree, in a target directory of its
  # own (so this build's binaries stay where they are).
  from="$PWD/target/upgrade/$UPGRADE_FROM"
  if [ ! -x "$from/target/debug/rookery" ]; then
    echo "==> building the previous release, $UPGRADE_FROM"
    rm -rf "$from/src" && mkdir -p "$from/src"
    git archive "$UPGRADE_FROM" | tar -x -C "$from/src"
    CARGO_TARGET_DIR="$from/target" cargo build --quiet --locked --bin rookery \
      --manifest-path "$from/src/Cargo.toml"
  fi
  echo "==> a mixed cluster: node0 runs $UPGRADE_FROM, the others this build"
  env -u MONGO_URL SECANTUSD="$SECANTUSD" ROOKERY_PREVIOUS="$from/target/debug/rookery" \
    cargo test --quiet --test cluster -- --test-threads=1 \
    exactly_once_in_order direct_messages_cross_replicas guarantees_and_policies_cross_replicas \
    survives_a_replica_crash
  exit 0
fi

mkdir -p target/chaos
export CHAOS_REPORT="$PWD/target/chaos/report.md"
echo "## $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >>"$CHAOS_REPORT"
# Unset MONGO_URL: the suite starts (and kills) its own database.
env -u MONGO_URL SECANTUSD="$SECANTUSD" cargo test --quiet --test chaos -- --nocapture --test-threads=1
echo "==> report appended to $CHAOS_REPORT"
