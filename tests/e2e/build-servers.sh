#!/usr/bin/env bash
# Build the real servers the end-to-end tests run, through the Go module proxy, into a cache
# outside the repository keyed by version. A second run finds the binaries and returns at once.
#
#   tests/e2e/build-servers.sh [k8s|kwok|jaeger|kubeadmiral|helm|all]
#
# Cache: ${KELEMETRY_CACHE:-$HOME/.cache/kelemetry-py}/bin/<component>-<version>/
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.33.13}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
KUBEADMIRAL_VERSION="${KUBEADMIRAL_VERSION:-v1.0.0}"
HELM_VERSION="${HELM_VERSION:-v3.18.4}"
CACHE="${KELEMETRY_CACHE:-$HOME/.cache/kelemetry-py}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

log() { echo "build-servers: $*" >&2; }

need_go() {
  command -v go >/dev/null || { log "go is not installed; it is needed to build the test servers"; exit 1; }
}

build_k8s() {
  local out="$CACHE/bin/k8s-v$K8S_VERSION" cmd
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local missing=0
  for cmd in "${cmds[@]}"; do [[ -x "$out/$cmd" ]] || missing=1; done
  if [[ $missing == 0 ]]; then log "kubernetes v$K8S_VERSION cached in $out"; return; fi
  need_go
  local work="$CACHE/src/k8s-v$K8S_VERSION"
  mkdir -p "$work" "$out"
  cd "$work"
  local staging="v0.${K8S_VERSION#1.}"
  if [[ ! -f go.mod ]]; then
    go mod init local/k8sservers >/dev/null 2>&1
    # k8s.io/kubernetes requires its staging modules at v0.0.0 through replace directives that only
    # apply inside its own repository; a local main module supplies the released versions instead.
    for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
      cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
      cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms \
      kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
      mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller; do
      go mod edit -replace="k8s.io/$m=k8s.io/$m@$staging"
    done
  fi
  local tools=() 
  for cmd in "${cmds[@]}"; do tools+=("k8s.io/kubernetes/cmd/$cmd@v$K8S_VERSION"); done
  go get -tool "${tools[@]}"
  go mod tidy
  # Without these the binaries report v0.0.0-master, which kubectl and kwok version checks trip on.
  local ldflags="-s -w" p minor
  minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building ${cmds[*]} v$K8S_VERSION (cold on 2 cores: several minutes)"
  local pkgs=()
  for cmd in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  go build -ldflags "$ldflags" -o "$out/" "${pkgs[@]}"
}

build_kwok() {
  local out="$CACHE/bin/kwok-$KWOK_VERSION"
  if [[ -x "$out/kwok" ]]; then log "kwok $KWOK_VERSION cached in $out"; return; fi
  need_go
  mkdir -p "$out"
  log "building kwok $KWOK_VERSION"
  GOBIN="$out" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_jaeger() {
  local out="$CACHE/bin/jaeger-$JAEGER_VERSION"
  if [[ -x "$out/jaeger" ]]; then log "jaeger $JAEGER_VERSION cached in $out"; return; fi
  need_go
  local work="$CACHE/src/jaeger-$JAEGER_VERSION"
  mkdir -p "$work" "$out"
  cd "$work"
  # The checksum database here does not know some opentelemetry-collector-contrib versions Jaeger
  # needs (lookups answer 404); the module proxy itself is the trusted source on this network.
  export GOSUMDB=off
  if [[ ! -f go.mod ]]; then
    go mod init local/jaegerservers >/dev/null 2>&1
    # Jaeger's own go.mod pins sarama through a replace directive that only applies in its repository.
    go mod edit -replace=github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
    go mod tidy
  fi
  log "building jaeger $JAEGER_VERSION (v2 cmd/jaeger)"
  go build -ldflags "-s -w" -o "$out/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
}

build_kubeadmiral() {
  local out="$CACHE/bin/kubeadmiral-$KUBEADMIRAL_VERSION"
  local module=github.com/kubewharf/kubeadmiral
  if [[ -x "$out/kubeadmiral-controller-manager" ]]; then log "kubeadmiral $KUBEADMIRAL_VERSION cached in $out"; return; fi
  need_go
  local work="$CACHE/src/kubeadmiral-$KUBEADMIRAL_VERSION"
  mkdir -p "$work" "$out"
  cd "$work"
  # The tool line is the last thing the setup writes: without it, a setup that failed half way
  # is done again from the start.
  if ! grep -q "^tool $module/cmd/controller-manager" go.mod 2>/dev/null; then
    rm -f go.mod go.sum
    go mod init local/kubeadmiralservers >/dev/null 2>&1
    # KubeAdmiral's go.mod holds its Kubernetes libraries at v0.26.6 through replace directives,
    # which only apply inside its own repository (so `go install module@version` is refused);
    # repeat them here, read from the module's own go.mod so they follow the pinned version.
    local info gomod replaces r
    if ! info="$(go mod download -json "$module@$KUBEADMIRAL_VERSION" 2>&1)"; then
      log "could not download $module@$KUBEADMIRAL_VERSION: $info"
      exit 1
    fi
    gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")"
    replaces="$(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    print(r["Old"]["Path"] + "=" + r["New"]["Path"] + "@" + r["New"]["Version"])
')"
    for r in $replaces; do go mod edit -replace="$r"; done
    go get -tool "$module/cmd/controller-manager@$KUBEADMIRAL_VERSION"
    go mod tidy
  fi
  log "building kubeadmiral-controller-manager $KUBEADMIRAL_VERSION"
  go build -ldflags "-s -w" -o "$out/kubeadmiral-controller-manager" "$module/cmd/controller-manager"
}

build_helm() {
  local out="$CACHE/bin/helm-$HELM_VERSION" module=helm.sh/helm/v3
  if [[ -x "$out/helm" ]]; then log "helm $HELM_VERSION cached in $out"; return; fi
  need_go
  mkdir -p "$out"
  # helm's go.mod has no replace directives, so `go install module@version` builds it as released.
  # Its release build also stamps the version `helm version` prints and the Kubernetes version of
  # its client libraries, which `helm template` and `helm lint` assume of the cluster (unset, 1.20,
  # older than charts may require); both are read here from the module itself.
  local info gomod minor ldflags p
  if ! info="$(go mod download -json "$module@$HELM_VERSION" 2>&1)"; then
    log "could not download $module@$HELM_VERSION: $info"
    exit 1
  fi
  gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")"
  minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")"
  ldflags="-s -w -X $module/internal/version.version=$HELM_VERSION"
  for p in lint/rules chartutil; do
    ldflags+=" -X $module/pkg/$p.k8sVersionMajor=1 -X $module/pkg/$p.k8sVersionMinor=$minor"
  done
  log "building helm $HELM_VERSION (Kubernetes libraries 1.$minor)"
  GOBIN="$out" go install -ldflags "$ldflags" "$module/cmd/helm@$HELM_VERSION"
}

# Each build uses every core while it compiles, but downloading modules and linking leave them
# idle, so the KubeAdmiral and helm builds run beside the others instead of after them.
build_all() {
  local admiral_log="$CACHE/kubeadmiral-build.log" helm_log="$CACHE/helm-build.log"
  local admiral_pid helm_pid rc admiral_rc helm_rc
  mkdir -p "$CACHE"
  (build_kubeadmiral) >"$admiral_log" 2>&1 &
  admiral_pid=$!
  (build_helm) >"$helm_log" 2>&1 &
  helm_pid=$!
  # A failure of the others still waits for the background builds, so no go build outlives the script.
  set +e
  (set -e; build_k8s; build_kwok; build_jaeger)
  rc=$?
  wait "$admiral_pid"
  admiral_rc=$?
  wait "$helm_pid"
  helm_rc=$?
  set -e
  cat "$admiral_log" "$helm_log" >&2
  if [[ $admiral_rc != 0 ]]; then log "building kubeadmiral failed"; fi
  if [[ $helm_rc != 0 ]]; then log "building helm failed"; fi
  if [[ $rc != 0 || $admiral_rc != 0 || $helm_rc != 0 ]]; then exit 1; fi
}

case "${1:-all}" in
  k8s) build_k8s ;;
  kwok) build_kwok ;;
  jaeger) build_jaeger ;;
  kubeadmiral) build_kubeadmiral ;;
  helm) build_helm ;;
  all) build_all ;;
  *) log "unknown component $1"; exit 2 ;;
esac
