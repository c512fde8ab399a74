#!/usr/bin/env python3
"""Renders and checks the Helm chart with Helm's own library, for tests/chart.rs.

    render.py CHART RELEASE NAMESPACE VALUES_JSON

Prints one JSON object: Helm's lint findings, the values-schema verdict, the rendered
objects (each validated against the Kubernetes schemas of the newest version
kubernetes-validate knows, strictly: unknown fields are errors), the schema problems found
and NOTES.txt. Objects of kinds the Kubernetes schemas do not hold (the Prometheus
Operator's) are listed as unvalidated, never silently passed.
"""
import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml


def main():
    chart_path, release, namespace, values_json = sys.argv[1:5]
    values = json.loads(values_json)
    out = {"lint": helm.lint(chart_path), "schemaError": None, "objects": [],
           "invalid": [], "unvalidated": [], "notes": "", "renderError": None}
    version = kubernetes_validate.latest_version()
    out["kubernetesVersion"] = version
    with helm.Chart.load(chart_path) as chart:
        try:
            chart.validate_schema(values)
        except Exception as e:  # the verdict is data for the test
            out["schemaError"] = str(e)
            print(json.dumps(out))
            return
        try:
            manifests = chart.render(values, name=release, namespace=namespace)
        except Exception as e:
            out["renderError"] = str(e)
            print(json.dumps(out))
            return
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            out["notes"] = text
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            doc.setdefault("metadata", {})
            out["objects"].append({"template": path, "object": doc})
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                out["unvalidated"].append(f"{doc['kind']} {doc['metadata'].get('name')}")
            except kubernetes_validate.ValidationError as e:
                out["invalid"].append(f"{path}: {doc['kind']} {doc['metadata'].get('name')}: {e.message} at {list(e.path)}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
