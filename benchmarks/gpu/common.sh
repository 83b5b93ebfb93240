# Sourced by the GPU call scripts beside it: installs the carried wheels (the device has no
# internet), sets up logging, and defines
#   train NAME ARGS...   `nowcast train fit ARGS` on the carried stores, log in /tmp/logs/NAME.txt
#   pack                 the logs (and /tmp/runs_metrics) as $OUT/logs.tar.gz
#   metrics NAME RUN     keep RUN's metrics.csv for pack
set -u
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p /tmp/logs /tmp/runs_metrics
T0=$(date +%s)
pack() { tar czf "$OUT/logs.tar.gz" -C /tmp logs runs_metrics 2>/dev/null; }
train() {
  local name=$1; shift
  python3 -m nowcast.cli train fit "$@" --data.store_root .gpu > "/tmp/logs/$name.txt" 2>&1
  echo "$name rc=$? t=$(( $(date +%s) - T0 ))s"
}
metrics() { mkdir -p "/tmp/runs_metrics/$1"; cp "$2/lightning_logs/version_0/metrics.csv" "/tmp/runs_metrics/$1/" 2>/dev/null; }
