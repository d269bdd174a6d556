{{/* Names, labels and the collector's command line, shared by the templates. */}}

{{- define "kelemetry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kelemetry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kelemetry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kelemetry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kelemetry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kelemetry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kelemetry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kelemetry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kelemetry.tokenSecretName" -}}
{{- default (printf "%s-token" (include "kelemetry.fullname" .)) .Values.token.existingSecret -}}
{{- end -}}

{{- define "kelemetry.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* Where the apiserver's audit webhook posts: the Service unless apiserver.webhookServer says otherwise. */}}
{{- define "kelemetry.webhookServer" -}}
{{- if .Values.apiserver.webhookServer -}}
{{- .Values.apiserver.webhookServer | trimSuffix "/" -}}
{{- else if .Values.scaled.enabled -}}
{{- printf "%s://%s-webhook.%s.svc:%v" (include "kelemetry.scheme" .) (include "kelemetry.fullname" .) .Release.Namespace .Values.service.port -}}
{{- else -}}
{{- printf "%s://%s.%s.svc:%v" (include "kelemetry.scheme" .) (include "kelemetry.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the Pod. */}}
{{- define "kelemetry.dataDir" -}}/data{{- end -}}
{{- define "kelemetry.kubeconfigDir" -}}/etc/kelemetry/kubeconfig{{- end -}}
{{- define "kelemetry.tlsDir" -}}/etc/kelemetry/tls{{- end -}}
{{- define "kelemetry.stateDir" -}}/state{{- end -}}
{{- define "kelemetry.serviceAccountDir" -}}/var/run/secrets/kubernetes.io/serviceaccount{{- end -}}

{{- define "kelemetry.checkValues" -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key" -}}
{{- end -}}
{{- if and .Values.cluster.connect .Values.watch.customResources.enabled (not .Values.watch.customResources.apiGroups) -}}
{{- fail "watch.customResources.enabled needs watch.customResources.apiGroups: the API groups of the CRDs to watch (the ClusterRole grants list/watch on them only)" -}}
{{- end -}}
{{- if and .Values.cluster.connect .Values.watch.customResources.enabled (not .Values.watch.resources) -}}
{{- fail "watch.resources is empty, which watches no objects (custom resources included): list at least one, or turn watch.customResources off" -}}
{{- end -}}
{{- if .Values.scaled.enabled -}}
{{- if not .Values.scaled.queue.url -}}
{{- fail "scaled.enabled needs scaled.queue.url: your NATS with JetStream, nats://HOST:PORT (the chart does not install NATS)" -}}
{{- end -}}
{{- range splitList "," .Values.scaled.queue.url -}}
{{- if not (regexMatch "^(nats|tls)://[^:/]+(:[0-9]+)?$" (trim .)) -}}
{{- fail (printf "scaled.queue.url: %q is not a NATS address: use nats://HOST:PORT" (trim .)) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.scaled.otlpEndpoint -}}
{{- fail "scaled.enabled needs scaled.otlpEndpoint: Jaeger's OTLP receiver the workers export to, e.g. grpc://jaeger-collector:4317" -}}
{{- end -}}
{{- if not .Values.scaled.jaegerUrl -}}
{{- fail "scaled.enabled needs scaled.jaegerUrl: Jaeger's query service the frontend reads, e.g. http://jaeger-query:16686" -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$" (toString .Values.cluster.name)) -}}
{{- fail (printf "cluster.name %q: use letters, digits, '.', '_', '-' (it is a path segment of the webhook)" (toString .Values.cluster.name)) -}}
{{- end -}}
{{- end -}}

{{/*
The container's arguments after the `kelemetry` command. Every flag here is parsed by the package's
own argument parser in its tests, for the default values and for others.
*/}}
{{- define "kelemetry.args" -}}
- --log-level
- {{ .Values.logLevel | quote }}
- --log-format
- {{ .Values.logFormat | quote }}
- serve
- --listen
- {{ printf "%s:%v" .Values.listenHost .Values.containerPort | quote }}
- --store
- {{ printf "%s/kelemetry.db" (include "kelemetry.dataDir" .) | quote }}
- --cluster
- {{ .Values.cluster.name | quote }}
{{- if .Values.cluster.connect }}
- --kubeconfig
- {{ printf "%s/kubeconfig" (include "kelemetry.kubeconfigDir" .) | quote }}
{{- range .Values.watch.resources }}
- --watch
- {{ . | quote }}
{{- else }}
- --watch
- none
{{- end }}
{{- if not .Values.watch.customResources.enabled }}
- --no-watch-custom-resources
{{- end }}
- --change-grace
- {{ .Values.watch.changeGrace | quote }}
{{- end }}
- --retention
- {{ .Values.store.retention | quote }}
{{- if .Values.store.maxSize }}
- --max-store-size
- {{ .Values.store.maxSize | quote }}
{{- end }}
- --min-free-space
- {{ .Values.store.minFreeSpace | quote }}
- --durability
- {{ .Values.store.durability | quote }}
- --window
- {{ .Values.trace.window | quote }}
- --cache-size
- {{ .Values.trace.cacheSize | quote }}
{{- range .Values.trace.redact }}
- --redact
- {{ . | quote }}
{{- end }}
{{- range .Values.trace.excludeResources }}
- --exclude-resource
- {{ . | quote }}
{{- end }}
- --max-body
- {{ .Values.webhook.maxBody | quote }}
- --max-backlog
- {{ .Values.webhook.maxBacklog | quote }}
{{- if .Values.otlp.endpoint }}
- --otlp-endpoint
- {{ .Values.otlp.endpoint | quote }}
{{- end }}
{{- if and .Values.token.enabled .Values.token.publicQuery }}
- --public-query
{{- end }}
{{- if .Values.tls.enabled }}
- --tls-cert
- {{ printf "%s/tls.crt" (include "kelemetry.tlsDir" .) | quote }}
- --tls-key
- {{ printf "%s/tls.key" (include "kelemetry.tlsDir" .) | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}


{{/* Scaled mode: each role's selector adds its component to the chart's selector labels. */}}
{{- define "kelemetry.componentLabels" -}}
{{ include "kelemetry.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The flags both scaled roles of `serve` need to agree on the JetStream layout. */}}
{{- define "kelemetry.queueArgs" -}}
- --queue
- {{ .Values.scaled.queue.url | quote }}
- --partitions
- {{ .Values.scaled.partitions | quote }}
- --queue-replicas
- {{ .Values.scaled.queue.replicas | quote }}
- --lease
- {{ .Values.scaled.lease | quote }}
{{- end -}}

{{/* `kelemetry serve --role webhook`: answers the audit webhook once JetStream has the batch. */}}
{{- define "kelemetry.webhookArgs" -}}
- --log-level
- {{ .Values.logLevel | quote }}
- --log-format
- {{ .Values.logFormat | quote }}
- serve
{{ include "kelemetry.queueArgs" . }}
- --role
- webhook
- --listen
- {{ printf "%s:%v" .Values.listenHost .Values.containerPort | quote }}
- --cluster
- {{ .Values.cluster.name | quote }}
- --max-body
- {{ .Values.webhook.maxBody | quote }}
- --max-backlog
- {{ .Values.webhook.maxBacklog | quote }}
{{- /* The webhook scrubs batches before they reach NATS, with the same extra rules. */}}
{{- range .Values.trace.redact }}
- --redact
- {{ . | quote }}
{{- end }}
{{- if .Values.tls.enabled }}
- --tls-cert
- {{ printf "%s/tls.crt" (include "kelemetry.tlsDir" .) | quote }}
- --tls-key
- {{ printf "%s/tls.key" (include "kelemetry.tlsDir" .) | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
`kelemetry serve --role worker`: the worker id is the Pod's name, which the kubelet substitutes
for $(POD_NAME) from the downward API variable of the same name.
*/}}
{{- define "kelemetry.workerArgs" -}}
- --log-level
- {{ .Values.logLevel | quote }}
- --log-format
- {{ .Values.logFormat | quote }}
- serve
{{ include "kelemetry.queueArgs" . }}
- --role
- worker
- --listen
- {{ printf "%s:%v" .Values.listenHost .Values.containerPort | quote }}
- --worker-id
- $(POD_NAME)
- --state-dir
- {{ include "kelemetry.stateDir" . | quote }}
- --snapshot-every
- {{ .Values.scaled.snapshotEvery | quote }}
- --settle
- {{ .Values.scaled.settle | quote }}
- --otlp-endpoint
- {{ .Values.scaled.otlpEndpoint | quote }}
- --window
- {{ .Values.trace.window | quote }}
- --cache-size
- {{ .Values.trace.cacheSize | quote }}
{{- range .Values.trace.redact }}
- --redact
- {{ . | quote }}
{{- end }}
{{- range .Values.trace.excludeResources }}
- --exclude-resource
- {{ . | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* `kelemetry frontend --jaeger-url`: the web UI and the query API over what the workers exported. */}}
{{- define "kelemetry.frontendArgs" -}}
- --log-level
- {{ .Values.logLevel | quote }}
- --log-format
- {{ .Values.logFormat | quote }}
- frontend
- --listen
- {{ printf "%s:%v" .Values.listenHost .Values.containerPort | quote }}
- --jaeger-url
- {{ .Values.scaled.jaegerUrl | quote }}
- --views
- {{ printf "%s/views.db" (include "kelemetry.dataDir" .) | quote }}
{{- if and .Values.token.enabled .Values.token.publicQuery }}
- --public-query
{{- end }}
{{- if .Values.tls.enabled }}
- --tls-cert
- {{ printf "%s/tls.crt" (include "kelemetry.tlsDir" .) | quote }}
- --tls-key
- {{ printf "%s/tls.key" (include "kelemetry.tlsDir" .) | quote }}
{{- end }}
{{- end -}}
