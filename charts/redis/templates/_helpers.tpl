{{/* The chart name, overridable. */}}
{{- define "redis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name: the StatefulSet, the client Service, and the prefix of everything else. */}}
{{- define "redis.fullname" -}}
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

{{- define "redis.headless" -}}
{{- printf "%s-headless" (include "redis.fullname" .) -}}
{{- end -}}

{{/* Labels every object carries; `redis.labels` adds the server component. */}}
{{- define "redis.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "redis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: course-redis
{{- end -}}

{{- define "redis.labels" -}}
{{ include "redis.commonLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{/* Labels that select the Redis pods (never the bootstrap Job's). */}}
{{- define "redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* How many Redis pods the topology needs. */}}
{{- define "redis.nodeCount" -}}
{{- if eq .Values.mode "cluster" -}}
{{- mul .Values.cluster.masters (add 1 .Values.cluster.replicasPerMaster) -}}
{{- else -}}
1
{{- end -}}
{{- end -}}

{{/* The stable DNS name of pod N: what a cluster node announces and the bootstrap dials. */}}
{{- define "redis.podHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "redis.fullname" $root) (index . 1) (include "redis.headless" $root) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{/* Every pod as host:port, comma-separated: the bootstrap's --nodes. */}}
{{- define "redis.nodeList" -}}
{{- $root := . -}}
{{- $nodes := list -}}
{{- range $i := until (int (include "redis.nodeCount" $root)) -}}
{{- $nodes = append $nodes (printf "%s:%d" (include "redis.podHost" (list $root $i)) (int $root.Values.port)) -}}
{{- end -}}
{{- join "," $nodes -}}
{{- end -}}

{{/* repository:tag, and @digest when one is given: then the digest is what is pulled. */}}
{{- define "redis.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- with .digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/* The project image, required where the chart runs project code (cluster mode). */}}
{{- define "redis.bootstrapImage" -}}
{{- $repo := required "bootstrapImage.repository is required in cluster mode (the project's image)" .Values.bootstrapImage.repository -}}
{{- $tag := required "bootstrapImage.tag is required in cluster mode (pin a version)" .Values.bootstrapImage.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- with .Values.bootstrapImage.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/* The engine's server binary: each official image has its own names. */}}
{{- define "redis.server" -}}
{{- ternary "valkey-server" "redis-server" (eq .Values.engine "valkey") -}}
{{- end -}}

{{/* The CLI flags for the probes: the admin account (password in REDISCLI_AUTH, which
valkey-cli reads too), TLS. */}}
{{- define "redis.cli" -}}
{{ ternary "valkey-cli" "redis-cli" (eq .Values.engine "valkey") }} -h 127.0.0.1 -p {{ .Values.port }} --user "$REDIS_USERNAME" --no-auth-warning
{{- if .Values.tls.enabled }} --tls --cacert /etc/redis/tls/ca.crt{{ end }}
{{- end -}}

{{/* The hardened container securityContext every container uses. */}}
{{- define "redis.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "redis.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Fail early on values that cannot work together. */}}
{{- define "redis.validate" -}}
{{- if not .Values.auth.aclSecret.name -}}
{{- fail "auth.aclSecret.name is required: Redis runs with the default user off" -}}
{{- end -}}
{{- if not .Values.auth.adminSecret.name -}}
{{- fail "auth.adminSecret.name is required (probes, bootstrap)" -}}
{{- end -}}
{{- if and (eq .Values.mode "cluster") (not .Values.auth.replicationSecret.name) -}}
{{- fail "auth.replicationSecret.name is required in cluster mode (masteruser/masterauth)" -}}
{{- end -}}
{{- if and .Values.metrics.enabled (not .Values.metrics.secret.name) -}}
{{- fail "metrics.secret.name is required when metrics.enabled" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.secretName is required when tls.enabled" -}}
{{- end -}}
{{- if and .Values.tls.enabled (eq .Values.mode "cluster") -}}
{{- fail "tls.enabled needs mode standalone: the cluster bootstrap Job does not speak TLS yet" -}}
{{- end -}}
{{- if and (eq .Values.mode "cluster") (not .Values.persistence.enabled) -}}
{{- fail "cluster mode needs persistence.enabled: nodes.conf must survive a restart" -}}
{{- end -}}
{{- if and (eq .Values.mode "standalone") .Values.appendonly (not .Values.persistence.enabled) -}}
{{- fail "appendonly needs persistence.enabled, or the AOF dies with the pod" -}}
{{- end -}}
{{- end -}}
