#!/usr/bin/env bash
# Writes manifests/install/finrep.yaml: the Helm chart rendered with its default values
# (release "finrep", namespace "finrep-system") by Helm's own library, for `kubectl apply -f`
# without Helm. tests/chart.rs fails when the file and the chart differ.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
ensure_venv helm-python-sdk kubernetes-validate pyyaml
mkdir -p manifests/install
"$VENV/bin/python" tests/chart/render.py charts/finrep finrep finrep-system '{}' |
  "$VENV/bin/python" -c '
import json, sys, yaml
rendered = json.load(sys.stdin)
if rendered["renderError"] or rendered["schemaError"] or rendered["invalid"]:
    sys.exit(f"the chart does not render cleanly: {rendered}")
print("# finrep installed without Helm: the chart (charts/finrep) rendered with its default values")
print("# for release \"finrep\" in namespace finrep-system, by scripts/render-install.sh. Do not edit:")
print("# change the chart and run the script again.")
print("#   kubectl create namespace finrep-system")
print("#   kubectl apply --server-side -f manifests/install/")
print("# Helm hooks (the migration Job) run as ordinary objects here.")
docs = [yaml.safe_dump(o["object"], sort_keys=False, allow_unicode=True) for o in rendered["objects"]]
print("---\n" + "---\n".join(docs), end="")
' > manifests/install/finrep.yaml
echo "wrote manifests/install/finrep.yaml"
