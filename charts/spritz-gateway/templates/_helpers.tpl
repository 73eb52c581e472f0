{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "spritz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "spritz.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. */}}
{{- define "spritz.componentName" -}}
{{- printf "%s-%s" (include "spritz.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "spritz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "spritz.labels" -}}
helm.sh/chart: {{ include "spritz.chart" . }}
{{ include "spritz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spritz
{{- end }}

{{- define "spritz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spritz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "component" "worker"). */}}
{{- define "spritz.componentLabels" -}}
{{ include "spritz.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "spritz.componentSelectorLabels" -}}
{{ include "spritz.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "spritz.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "spritz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spritz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spritz.notifier.serviceAccountName" -}}
{{- if .Values.notifier.serviceAccount.create }}
{{- default (include "spritz.componentName" (dict "root" . "component" "notifier")) .Values.notifier.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.notifier.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spritz.notifier.leaseName" -}}
{{- default (include "spritz.componentName" (dict "root" . "component" "notifier")) .Values.notifier.leaseName }}
{{- end }}

{{/* An env var read from a Secret by reference; call with (dict "name" "ENV" "ref" .Values.secrets.x). */}}
{{- define "spritz.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secrets: existingSecret is required for %s" .name) .ref.existingSecret }}
      key: {{ required (printf "secrets: key is required for %s" .name) .ref.key }}
{{- end }}

{{/* Env every process has. */}}
{{- define "spritz.commonEnv" -}}
- name: RUST_LOG
  value: {{ .Values.config.logLevel | quote }}
- name: SPRITZ_METRICS_ADDR
  value: {{ printf "0.0.0.0:%v" .Values.config.metricsPort | quote }}
{{- if include "spritz.caBundle.enabled" . }}
- name: SPRITZ_TLS_CA_FILE
  value: {{ printf "/etc/spritz/tls/%s" .Values.config.caBundle.key | quote }}
{{- end }}
{{ include "spritz.secretEnv" (dict "name" "SPRITZ_AMQP_URL" "ref" .Values.secrets.amqpUrl) }}
{{- end }}

{{/* Ports, probes, security context and image of a process container. */}}
{{- define "spritz.containerBase" -}}
image: {{ include "spritz.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
startupProbe:
  httpGet:
    path: {{ .Values.probes.startup.path }}
    port: metrics
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: {{ .Values.probes.liveness.path }}
    port: metrics
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: {{ .Values.probes.readiness.path }}
    port: metrics
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if include "spritz.caBundle.enabled" . }}
  - name: ca-bundle
    mountPath: /etc/spritz/tls
    readOnly: true
  {{- end }}
{{- end }}

{{/* "true" when config.caBundle names a ConfigMap or a Secret; both is an error. */}}
{{- define "spritz.caBundle.enabled" -}}
{{- $bundle := .Values.config.caBundle | default dict -}}
{{- if and $bundle.configMap $bundle.secret -}}
{{- fail "config.caBundle: name a configMap or a secret, not both" -}}
{{- end -}}
{{- if or $bundle.configMap $bundle.secret -}}true{{- end -}}
{{- end }}

{{/* Pod-spec fields shared by the Deployments; call with
     (dict "root" $ "component" "worker" "values" .Values.worker). */}}
{{- define "spritz.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .values.terminationGracePeriodSeconds }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else if ne .values.podAntiAffinity "none" }}
{{- /* Replicas of one component on different nodes: soft (preferred) by default, so
       a small cluster still schedules them all; hard (required) on request. */}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "spritz.componentSelectorLabels" . | fromYaml)) }}
affinity:
  podAntiAffinity:
    {{- if eq .values.podAntiAffinity "hard" }}
    requiredDuringSchedulingIgnoredDuringExecution:
      {{- toYaml (list $term) | nindent 6 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          {{- toYaml $term | nindent 10 }}
    {{- end }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- with .root.Values.config.caBundle }}
  {{- if .configMap }}
  - name: ca-bundle
    configMap:
      name: {{ .configMap }}
      items:
        - key: {{ .key }}
          path: {{ .key }}
  {{- else if .secret }}
  - name: ca-bundle
    secret:
      secretName: {{ .secret }}
      items:
        - key: {{ .key }}
          path: {{ .key }}
  {{- end }}
  {{- end }}
{{- end }}

{{/* Deliveries in flight (KEDA: messages ready + unacked) one worker replica should
     carry: worker.targetInFlightPercent of worker.prefetch, at least 1; a non-zero
     worker.keda.queueLength overrides it for KEDA. */}}
{{- define "spritz.worker.targetInFlight" -}}
{{- if and .Values.worker.keda.enabled .Values.worker.keda.queueLength -}}
{{- .Values.worker.keda.queueLength -}}
{{- else -}}
{{- max 1 (div (mul (int .Values.worker.prefetch) (int .Values.worker.targetInFlightPercent)) 100) -}}
{{- end -}}
{{- end }}
