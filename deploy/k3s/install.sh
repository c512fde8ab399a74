#!/usr/bin/env bash
# Installs k3s for finrep on a 2 vCPU / 2 GB host (run as root), then Helm.
#
#   sudo deploy/k3s/install.sh
#
# The k3s flags below turn off what finrep does not use, each saving memory on a host where
# every 50 MiB counts:
#   --disable traefik           no Ingress: finrep serves nothing to the outside (its admin
#                               port is scraped inside the cluster)
#   --disable servicelb         no LoadBalancer Services
#   --disable metrics-server    finrep has its own /metrics; re-enable for `kubectl top`
#   --disable-helm-controller   Helm runs from your shell, not as HelmChart resources
#   --disable-cloud-controller  no cloud provider on a single VM
# Kept: CoreDNS (pods resolve feed and mail hosts), the local-path provisioner (the
# PostgreSQL and backup volumes), the network policy controller (the chart's optional
# NetworkPolicies), SQLite as the datastore (lighter than etcd on one node).
# Also: Secrets encrypted at rest, the kubeconfig readable by root only, and kubelet
# reservations so the node evicts pods before the kernel's OOM killer picks k3s.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "run as root: sudo $0" >&2
  exit 1
fi

K3S_FLAGS=(
  server
  --disable traefik
  --disable servicelb
  --disable metrics-server
  --disable-helm-controller
  --disable-cloud-controller
  --secrets-encryption
  --write-kubeconfig-mode 0600
  --kubelet-arg "system-reserved=memory=256Mi"
  --kubelet-arg "kube-reserved=memory=256Mi"
  --kubelet-arg "eviction-hard=memory.available<100Mi"
)

if ! command -v k3s >/dev/null 2>&1; then
  curl -sfL https://get.k3s.io | INSTALL_K3S_EXEC="${K3S_FLAGS[*]}" sh -
else
  echo "k3s is already installed; its flags are in /etc/systemd/system/k3s.service" >&2
fi

if ! command -v helm >/dev/null 2>&1; then
  curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash
fi

# kubectl and helm for the invoking user.
user=${SUDO_USER:-root}
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 0700 -o "$user" "$home/.kube"
install -m 0600 -o "$user" /etc/rancher/k3s/k3s.yaml "$home/.kube/config"

until k3s kubectl get --raw /readyz >/dev/null 2>&1; do sleep 2; done
k3s kubectl get nodes -o wide
echo "k3s is ready; next: deploy/k3s/README.md, step 2"
