{{/* The prefix of every resource name. */}}
{{- define "locust.fullname" -}}
{{- .Values.nameOverride | default "locust" | trunc 42 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select one role's pods (master or worker). */}}
{{- define "locust.selectorLabels" -}}
app.kubernetes.io/name: locust
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "locust.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "locust.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: course-redis
course-redis/load-suite: {{ .root.Values.suite | replace "_" "-" }}
{{- end -}}

{{- define "locust.image" -}}
{{- $repo := required "image.repository is required (the project's image with Locust)" .Values.image.repository -}}
{{- $tag := required "image.tag is required (pin a version)" .Values.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{- define "locust.masterHost" -}}
{{- printf "%s-master" (include "locust.fullname" .) -}}
{{- end -}}

{{- define "locust.containerSecurityContext" -}}
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

{{- define "locust.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A locustfile's key in the ConfigMap: its path under loadtests/ with "/" as "." (a
key cannot hold "/"); the volume's items put each file back at its path. */}}
{{- define "locust.fileKey" -}}
{{- . | replace "/" "." -}}
{{- end -}}

{{/* The locustfile the run starts from: loadtests/<suite>.py from the ConfigMap. */}}
{{- define "locust.locustfile" -}}
{{- printf "loadtests/%s.py" .Values.suite -}}
{{- end -}}

{{/* Fail early on values that cannot work. */}}
{{- define "locust.validate" -}}
{{- $file := printf "%s.py" .Values.suite -}}
{{- if not (hasKey .Values.locustfiles $file) -}}
{{- fail (printf "locustfiles has no %s: pass the files of loadtests/ (the Pulumi program does)" $file) -}}
{{- end -}}
{{- if not (hasKey .Values.locustfiles "common/__init__.py") -}}
{{- fail "locustfiles has no common/__init__.py: pass every file of loadtests/" -}}
{{- end -}}
{{- if eq .Values.suite "redis_direct" -}}
{{- if not .Values.redis.secretName -}}
{{- fail "redis.secretName is required for the redis_direct suite (an ACL user's Secret)" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "standalone") (not .Values.redis.url) -}}
{{- fail "redis.url is required in standalone mode" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "cluster") (not .Values.redis.clusterNodes) -}}
{{- fail "redis.clusterNodes is required in cluster mode" -}}
{{- end -}}
{{- else -}}
{{- if not .Values.host -}}
{{- fail "host is required: the gateway's URL" -}}
{{- end -}}
{{- if not .Values.credentialsSecret.name -}}
{{- fail "credentialsSecret.name is required: a Secret with the demo accounts (the seed's JSON)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The environment of master and workers: where things are, and the suite's options. */}}
{{- define "locust.env" -}}
- name: HOME
  value: /tmp
- name: PYTHONPATH
  value: /locust
- name: PYTHONUNBUFFERED
  value: "1"
# No local stack in a pod: every default comes from the values below, never a stray file.
- name: LOAD_STACK_FILE
  value: /locust/no-local-stack.json
{{- if ne .Values.suite "redis_direct" }}
- name: LOAD_CREDENTIALS_FILE
  value: {{ printf "/etc/loadtest/%s" .Values.credentialsSecret.key | quote }}
- name: LOAD_COURSES_METRICS_URL
  value: {{ .Values.metricsUrls.courses | quote }}
- name: LOAD_ENROLLMENTS_METRICS_URL
  value: {{ .Values.metricsUrls.enrollments | quote }}
{{- else }}
{{- if eq .Values.redis.mode "cluster" }}
- name: REDIS_CLUSTER_NODES
  value: {{ .Values.redis.clusterNodes | quote }}
{{- else }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
- name: REDIS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.secretName }}
      key: username
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.secretName }}
      key: password
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "locust.volumeMounts" -}}
- name: locustfiles
  mountPath: /locust/loadtests
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if ne .Values.suite "redis_direct" }}
- name: credentials
  mountPath: /etc/loadtest
  readOnly: true
{{- end }}
{{- end -}}

{{- define "locust.volumes" -}}
- name: locustfiles
  configMap:
    name: {{ include "locust.fullname" . }}-files
    items:
      {{- if not (hasKey .Values.locustfiles "__init__.py") }}
      - key: __init__.py
        path: __init__.py
      {{- end }}
      {{- range $name, $_ := .Values.locustfiles }}
      - key: {{ include "locust.fileKey" $name }}
        path: {{ $name }}
      {{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if ne .Values.suite "redis_direct" }}
- name: credentials
  secret:
    secretName: {{ .Values.credentialsSecret.name }}
    items:
      - key: {{ .Values.credentialsSecret.key }}
        path: {{ .Values.credentialsSecret.key }}
{{- end }}
{{- end -}}

{{/* What every Locust pod shares: security, placement, the files. */}}
{{- define "locust.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "locust.podSecurityContext" . | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A Job's name: the role's name, suffixed with runId so that a new id is a new run. */}}
{{- define "locust.jobName" -}}
{{- if .root.Values.runId -}}
{{- printf "%s-%s-%s" (include "locust.fullname" .root) .role .root.Values.runId -}}
{{- else -}}
{{- printf "%s-%s" (include "locust.fullname" .root) .role -}}
{{- end -}}
{{- end -}}
