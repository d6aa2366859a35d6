#!/usr/bin/env bash
# Machine setup the batch-queue tests need outside /tmp, run by .ci/run before the tests (as root,
# after the packages in .ci/apt/batch.txt are installed). Idempotent.
#
# Son of Grid Engine's Debian cell (/var/lib/gridengine/default) is created by the package's
# postinst, but with DEBIAN_FRONTEND=noninteractive its master host is empty, and this machine's
# hostname is not what 127.0.0.1 resolves to, which makes every qconf fail with "access denied".
# The tests' fixture starts sge_qmaster/sge_execd itself on free ports and configures the rest
# (min_uid, scheduler interval, exec host, all.q) through qconf; Slurm needs nothing outside /tmp
# (the fixture runs its own munged with a private key and socket).
set -euo pipefail
common=/var/lib/gridengine/default/common
if [ -d "$common" ]; then
    names="localhost"
    for h in "$(hostname)" "$(hostname -s)"; do
        case " $names " in *" $h "*) ;; *) names="$names $h" ;; esac
    done
    echo "$names" > "$common/host_aliases"
    echo localhost > "$common/act_qmaster"
    echo "setup-batch: SGE cell ready ($common: host_aliases '$names', act_qmaster localhost)"
else
    echo "setup-batch: $common is missing; is gridengine-master installed? (the sge tests will skip or fail)" >&2
fi
