#!/usr/bin/env bash
# Offline demo: set up .venv, start the mock hub in its clean mode (the project's fixtures
# without the ones the tests break on purpose), crawl every hub into the default SQLite store
# (data/ptm.sqlite), then show what was stored and where to look next. Needs no network.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
log=$(mktemp -d)/mockhub.out
mock_pid=
gnupg=
cleanup() {  # also when a step fails or the demo is interrupted: leave nothing running
  [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null
  if [ -n "$gnupg" ]; then
    GNUPGHOME=$gnupg gpgconf --kill all 2>/dev/null
    rm -rf "$gnupg"
  fi
  return 0
}
trap cleanup EXIT
# A fixed port keeps the stored URLs equal between demo runs (history would record a new port
# as a change of every model's url); any free port when it is taken.
start_mock() {
  python -m tests.mockhub --clean --port "$1" >"$log" 2>&1 &
  mock_pid=$!
  for _ in $(seq 1 100); do
    grep -q MOCKHUB_URL= "$log" 2>/dev/null && return 0
    kill -0 "$mock_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
start_mock "${PTM_DEMO_PORT:-8731}" || start_mock 0 || { echo "mock hub did not start:"; cat "$log"; exit 1; }
url=$(sed -n 's/^MOCKHUB_URL=//p' "$log")
echo "Mock hub at $url"
export HF_ENDPOINT=$url GITHUB_API_URL=$url GITHUB_RAW_URL=$url/raw MODELZOO_URL=$url \
  KAGGLE_API_URL=$url/api/v1 GITHUB_MEDIA_URL=$url/media
# The mock takes any Kaggle key; these go to its origin only. At kaggle.com use your own.
export KAGGLE_USERNAME=ptm-demo KAGGLE_KEY=any-key-the-mock-hub-accepts
# Verify the mock's commit signatures with its signer's public key, in a throwaway keyring.
gnupg=$(mktemp -d)
chmod 700 "$gnupg"
python -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
  "$url/_mock/gpg/signer.asc" | GNUPGHOME=$gnupg gpg --batch --quiet --import 2>/dev/null || true
# modelzoo falls back to a headless Chromium for pages its API refuses. The mock's API refuses
# none, so without a usable Chromium the demo crawls it without the fallback, and says why.
modelzoo_args=()
no_browser=$(python -c 'from scrapy.utils.project import get_project_settings
from ptmspiders.config import PtmSettings
from ptmspiders.spiders.modelzoo import browser_problem
print(browser_problem(PtmSettings.from_settings(get_project_settings())) or "")')
if [ -n "$no_browser" ]; then
  echo "(modelzoo runs without its browser fallback, which this demo does not need: $no_browser)"
  modelzoo_args=(-a render=never)
fi

crawl() {  # scrapy crawl SPIDER [ARGS...], printing only warnings and errors
  echo "== scrapy crawl $1"
  scrapy crawl "$@" -s LOG_LEVEL=WARNING
}
# ptm report's studies read the cards, file trees and signed commits of HF models
crawl hf_models -s PTM_HF_CARDS=1 -s PTM_HF_FILES=1 -s PTM_HF_COMMITS=1 -s PTM_HF_GNUPGHOME="$gnupg"
crawl kaggle_models
crawl modelhub
crawl modelzoo "${modelzoo_args[@]}"
crawl onnx_zoo
crawl pytorch_hub
crawl tfhub
# Model packages (docs/packages.md) of the Hugging Face models just stored, into data/packages/:
# no pickle-based weights, and none of the mock's weights, which it lists at their real sizes
# (up to 1.6 GB) but does not serve.
crawl packages -a hub=huggingface -a weights=safe -a max_file_bytes=1M

echo
echo "What was stored (ptm stats):"
ptm stats
echo
echo "Are the stored packages intact (ptm verify)?"
ptm verify
echo
echo "Most downloaded Hugging Face models (ptm query):"
ptm query '{"hub": "huggingface"}' --sort=-downloads --limit 5 --table \
  --fields _id,owner,downloads,license,tasks
echo
ptm report --out reports/demo
cat <<'EOF'

Where to look next:
  reports/demo/index.html        the reuse and risk studies, one page that opens offline
  data/packages/                 the downloaded model packages: one folder per model and
                                 revision, linked to a content-addressed blob store
  ptm --help                     every command: stats, query, export, history, crawls, report
  docs/index.md                  the reference: hubs, settings, stores, schema, studies
  PTM_STORE_URI=sqlite:///data/hf.sqlite scrapy crawl hf_models -a limit=100
                                 a first real crawl (network; docs/hubs.md), in its own store
EOF
