#!/usr/bin/env python3
"""Installs, upgrades or uninstalls the finrep chart on a real cluster with Helm's own
library (helm-python-sdk), for tests/e2e/main.rs.

    helm_release.py KUBECONFIG install|upgrade|uninstall RELEASE NAMESPACE [VALUES_JSON]

Waits for the release's resources ("watcher") and prints the release summary as JSON.
"""
import json
import sys

import helm_python as helm


def main():
    kubeconfig, action, release, namespace = sys.argv[1:5]
    values = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    chart = sys.argv[0].rsplit("/tests/", 1)[0] + "/charts/finrep"
    with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
        if action == "install":
            out = cfg.install(chart, release, values, namespace=namespace, wait="watcher",
                              timeout=600, create_namespace=True)
        elif action == "upgrade":
            out = cfg.upgrade(chart, release, values, namespace=namespace, wait="watcher", timeout=600)
        elif action == "uninstall":
            out = cfg.uninstall(release, wait="watcher", timeout=300)
        else:
            sys.exit(f"unknown action {action}")
    print(json.dumps(out, default=str)[:2000])


if __name__ == "__main__":
    main()
