{{/* The release's base name: the release name when it already says "vigil". */}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.detector" -}}{{ include "vigil.fullname" . }}-detector{{- end -}}
{{- define "vigil.remediator" -}}{{ include "vigil.fullname" . }}-remediator{{- end -}}
{{- define "vigil.detectorHeadless" -}}{{ include "vigil.detector" . }}-headless{{- end -}}
{{- define "vigil.remediatorHeadless" -}}{{ include "vigil.remediator" . }}-headless{{- end -}}
{{- define "vigil.detectorSecret" -}}
{{- .Values.detector.auth.existingSecret | default (printf "%s-token" (include "vigil.detector" .)) -}}
{{- end -}}
{{- define "vigil.remediatorSecret" -}}
{{- .Values.remediator.auth.existingSecret | default (printf "%s-tokens" (include "vigil.remediator" .)) -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "detector") */}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" .ctx }}-{{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vigil.componentLabels" -}}
{{ include "vigil.labels" .ctx }}
{{ include "vigil.selectorLabels" . }}
{{- end -}}

{{- define "vigil.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* http://<fullname>-detector.<ns>.svc:9420: the runbooks, verification, the console. */}}
{{- define "vigil.detectorUrl" -}}
http://{{ include "vigil.detector" . }}.{{ .Release.Namespace }}.svc:9420
{{- end -}}

{{/* The shipped playbooks kept (files/playbooks/<name>.yaml): a list of file paths. */}}
{{- define "vigil.shippedPlaybookFiles" -}}
{{- $out := list -}}
{{- if .Values.remediator.shippedPlaybooks.enabled -}}
{{- range $path, $_ := .Files.Glob "files/playbooks/*.yaml" -}}
{{- if not (has (base $path | trimSuffix ".yaml") $.Values.remediator.shippedPlaybooks.exclude) -}}
{{- $out = append $out $path -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The pod's scheduling and hardening fields, for (dict "ctx" $ "values" .Values.<component>). */}}
{{- define "vigil.podPlacement" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* A volumeClaimTemplate for (dict "name" "state" "p" .Values.<component>.persistence). */}}
{{- define "vigil.claim" -}}
- metadata:
    name: {{ .name }}
  spec:
    accessModes:
      {{- toYaml .p.accessModes | nindent 6 }}
    {{- with .p.storageClassName }}
    storageClassName: {{ . | quote }}
    {{- end }}
    resources:
      requests:
        storage: {{ .p.size }}
{{- end -}}

{{/* A peer in the stack's namespace: (dict "ns" ... "names" (list ...)). */}}
{{- define "vigil.stackPeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .ns }}
  podSelector:
    matchExpressions:
      - key: app.kubernetes.io/name
        operator: In
        values: {{ toJson .names }}
{{- end -}}

{{/* Egress every Vigil pod needs: DNS, the API server, traces. */}}
{{- define "vigil.commonEgress" -}}
# cluster DNS
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
# the API server (enrichment, actions, Leases): host addresses no selector matches, so
# ports only; narrow with an ipBlock of your control plane where it is known. 443 also
# carries the remediator's notify webhooks and OTLP over TLS.
- ports:
    {{- range .Values.networkPolicy.apiServerPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- if .Values.stack.otlpEndpoint }}
# traces: the collector's OTLP/HTTP port
- ports:
    - {protocol: TCP, port: 4318}
{{- end }}
{{- end -}}
