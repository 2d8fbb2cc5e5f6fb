{{/* The resource name of one service: namePrefix + the service's name. */}}
{{- define "services.resourceName" -}}
{{- printf "%s%s" .root.Values.namePrefix .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select one service's pods. */}}
{{- define "services.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "services.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "services.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: course-redis
{{- end -}}

{{- define "services.image" -}}
{{- $repo := required "image.repository is required (the project's image)" .Values.image.repository -}}
{{- $tag := required "image.tag is required (pin a version)" .Values.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{- define "services.containerSecurityContext" -}}
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

{{/* DATABASE_URL from its Secret: the same for a service and its prepare-database. */}}
{{- define "services.databaseUrlEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.secretName }}
      key: {{ .Values.database.key }}
{{- end -}}

{{- define "services.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* One service's settings: its entry in `services` over `serviceDefaults`, as YAML (read
back with fromYaml). Call with (dict "root" $ "service" $entry). */}}
{{- define "services.settings" -}}
{{- toYaml (merge (deepCopy .service) (deepCopy .root.Values.serviceDefaults)) -}}
{{- end -}}

{{/* Fail early on values that cannot work. */}}
{{- define "services.validate" -}}
{{- if not .Values.database.secretName -}}
{{- fail "database.secretName is required (DATABASE_URL)" -}}
{{- end -}}
{{- if not .Values.jwt.publicKeys.secretName -}}
{{- fail "jwt.publicKeys.secretName is required (JWT_PUBLIC_KEYS)" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "standalone") (not .Values.redis.url) -}}
{{- fail "redis.url is required in standalone mode (REDIS_URL)" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "cluster") (not .Values.redis.clusterNodes) -}}
{{- fail "redis.clusterNodes is required in cluster mode (REDIS_CLUSTER_NODES)" -}}
{{- end -}}
{{- if and .Values.redis.tls (not .Values.redis.caSecret) -}}
{{- fail "redis.caSecret is required when redis.tls (REDIS_TLS_CA_FILE)" -}}
{{- end -}}
{{- if and .Values.gateway.ingress.enabled (not .Values.gateway.ingress.host) -}}
{{- fail "gateway.ingress.host is required when the ingress is enabled" -}}
{{- end -}}
{{- if not (hasKey .Values.services .Values.gateway.service) -}}
{{- fail (printf "gateway.service %q is not one of services" .Values.gateway.service) -}}
{{- end -}}
{{- range $upstream, $_ := .Values.gateway.upstreams -}}
{{- if not (hasKey $.Values.services $upstream) -}}
{{- fail (printf "gateway.upstreams.%s is not one of services" $upstream) -}}
{{- end -}}
{{- end -}}
{{- $signers := list -}}
{{- range $name, $entry := .Values.services -}}
{{- $service := include "services.settings" (dict "root" $ "service" $entry) | fromYaml -}}
{{- if and $service.enabled (not $service.redisSecret) -}}
{{- fail (printf "services.%s.redisSecret is required (its Redis ACL user's Secret)" $name) -}}
{{- end -}}
{{- if $service.signsTokens -}}
{{- $signers = append $signers $name -}}
{{- end -}}
{{- end -}}
{{- if gt (len $signers) 1 -}}
{{- fail (printf "only one service signs tokens, not %s: the private key is held once" (join ", " $signers)) -}}
{{- end -}}
{{- if and $signers (not .Values.jwt.privateKey.secretName) -}}
{{- fail "jwt.privateKey.secretName is required (JWT_PRIVATE_KEY of the service that signs)" -}}
{{- end -}}
{{- end -}}
