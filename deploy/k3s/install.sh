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

# Pinned versions: what this script was tried with. Override on purpose, never by accident.
K3S_VERSION=${K3S_VERSION:-v1.33.3+k3s1}
HELM_VERSION=${HELM_VERSION:-v3.18.4}
# Required when k3s is not installed yet: the SHA-256 of k3s' install script at that tag,
# checked before it runs. k3s publishes no checksum of its install script, so take it where
# you trust the copy: download https://raw.githubusercontent.com/k3s-io/k3s/<tag>/install.sh
# on a machine you trust, read it, and run `sha256sum install.sh` there (or compare with the
# copy your organisation keeps). The script itself verifies the k3s binary against the
# release's sha256sum file.
K3S_INSTALL_SHA256=${K3S_INSTALL_SHA256:-}

arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Downloads URL to FILE over HTTPS only, failing on any HTTP error.
fetch() { curl --proto '=https' --tlsv1.2 -fsSL -o "$2" "$1"; }

if ! command -v k3s >/dev/null 2>&1; then
  if ! [[ "$K3S_INSTALL_SHA256" =~ ^[0-9a-f]{64}$ ]]; then
    echo "K3S_INSTALL_SHA256 is required (64 hex digits): the SHA-256 of k3s' install.sh at ${K3S_VERSION}, taken on a machine you trust (see the comment above it in this script). The installer is never run unchecked." >&2
    exit 2
  fi
  # The install script of the pinned tag, saved and checked, never piped into a shell.
  fetch "https://raw.githubusercontent.com/k3s-io/k3s/${K3S_VERSION}/install.sh" "$work/k3s-install.sh"
  echo "$K3S_INSTALL_SHA256  $work/k3s-install.sh" | sha256sum -c --quiet -
  INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_EXEC="${K3S_FLAGS[*]}" sh "$work/k3s-install.sh"
else
  echo "k3s is already installed; its flags are in /etc/systemd/system/k3s.service" >&2
fi

if ! command -v helm >/dev/null 2>&1; then
  # The release archive and its published SHA-256, verified before anything is unpacked.
  tarball="helm-${HELM_VERSION}-linux-$(arch).tar.gz"
  fetch "https://get.helm.sh/${tarball}" "$work/$tarball"
  fetch "https://get.helm.sh/${tarball}.sha256sum" "$work/$tarball.sha256sum"
  (cd "$work" && sha256sum -c --quiet "$tarball.sha256sum")
  tar -xzf "$work/$tarball" -C "$work"
  install -m 0755 "$work/linux-$(arch)/helm" /usr/local/bin/helm
fi

# kubectl and helm for the invoking user.
user=${SUDO_USER:-root}
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 0700 -o "$user" "$home/.kube"
install -m 0600 -o "$user" /etc/rancher/k3s/k3s.yaml "$home/.kube/config"

until k3s kubectl get --raw /readyz >/dev/null 2>&1; do sleep 2; done
k3s kubectl get nodes -o wide
echo "k3s is ready; next: deploy/k3s/README.md, step 2"
