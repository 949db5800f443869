#!/usr/bin/env bash
# Offline demo: set up .venv, start the mock hub with the project's fixtures, crawl it into the
# default SQLite store (data/ptm.sqlite) and print a summary. Needs no network.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
log=$(mktemp -d)/mockhub.out
mock_pid=
trap '[ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null || true' EXIT
# A fixed port keeps the stored URLs equal between demo runs (history would record a new port
# as a change of every model's url); any free port when it is taken.
start_mock() {
  python -m tests.mockhub --port "$1" >"$log" 2>&1 &
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
  KAGGLE_API_URL=$url/api/v1
# Verify the mock's commit signatures with its signer's public key, in a throwaway keyring.
gnupg=$(mktemp -d)
chmod 700 "$gnupg"
python -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
  "$url/_mock/gpg/signer.asc" | GNUPGHOME=$gnupg gpg --batch --quiet --import 2>/dev/null || true
for spider in $(scrapy list); do
  echo "== scrapy crawl $spider"
  extra=()
  # ptm report's studies read the cards, file trees and signed commits of HF models
  [ "$spider" = hf_models ] && extra=(-s PTM_HF_CARDS=1 -s PTM_HF_FILES=1 -s PTM_HF_COMMITS=1
                                      -s PTM_HF_GNUPGHOME="$gnupg")
  scrapy crawl "$spider" -s LOG_LEVEL=WARNING "${extra[@]}"
done
GNUPGHOME=$gnupg gpgconf --kill gpg-agent 2>/dev/null || true
rm -rf "$gnupg"
echo
ptm stats
echo
echo "Most downloaded Hugging Face models (ptm query):"
ptm query '{"hub": "huggingface"}' --sort=-downloads --limit 5 --table \
  --fields _id,owner,downloads,license,tasks
echo
ptm report --out reports/demo
