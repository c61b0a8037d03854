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
# the API server (enrichment, actions, Leases): host addresses no selector matches.
# networkPolicy.apiServerCIDRs empty: these ports to any address, which also carries the
# remediator's notify and http.request calls and OTLP over TLS; set: only to them (and
# those calls need networkPolicy.extraEgress).
{{- with .Values.networkPolicy.apiServerCIDRs }}
- to:
    {{- range . }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
{{- else }}
- ports:
{{- end }}
    {{- range .Values.networkPolicy.apiServerPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- if .Values.stack.otlpEndpoint }}
# traces: the collector's OTLP/HTTP port
- ports:
    - {protocol: TCP, port: 4318}
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* RBAC rules merged as remediator/rbac.py (_rules) merges grants, so that the Roles of
several playbooks equal what `vigil-remediator rbac` prints for them together: verbs
united per (apiGroup, resource, resourceNames), then one rule per (apiGroup, verbs,
resourceNames) listing its resources, rules in that tuple order. Input: a list of rule
lists; output: JSON. The sort keys encode the tuples with two separators below every
character a name can hold (\x01 ends a field, \x02 a list item), so that sorting the
strings sorts the tuples. */}}
{{- define "vigil.mergeRules" -}}
{{- $end := printf "%c" 1 -}}
{{- $item := printf "%c" 2 -}}
{{- $verbs := dict -}}
{{- $what := dict -}}
{{- range $rules := . -}}
{{- range $rule := $rules -}}
{{- $names := $rule.resourceNames | default list -}}
{{- range $group := $rule.apiGroups -}}
{{- range $resource := $rule.resources -}}
{{- $key := printf "%s%s%s%s%s" $group $end $resource $end (join $item $names) -}}
{{- $_ := set $verbs $key (concat (get $verbs $key | default list) $rule.verbs | uniq | sortAlpha) -}}
{{- $_ := set $what $key (dict "group" $group "resource" $resource "names" $names) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $rules := dict -}}
{{- range $key, $w := $what -}}
{{- $vs := get $verbs $key -}}
{{- $sortKey := printf "%s%s" $w.group $end -}}
{{- range $vs }}{{ $sortKey = printf "%s%s%s" $sortKey . $item }}{{ end -}}
{{- $sortKey = printf "%s%s" $sortKey $end -}}
{{- range $w.names }}{{ $sortKey = printf "%s%s%s" $sortKey . $item }}{{ end -}}
{{- $sortKey = printf "%s%s" $sortKey $end -}}
{{- $rule := get $rules $sortKey | default (dict "group" $w.group "verbs" $vs "names" $w.names "resources" list) -}}
{{- $_ := set $rule "resources" (append $rule.resources $w.resource) -}}
{{- $_ := set $rules $sortKey $rule -}}
{{- end -}}
{{- $out := list -}}
{{- range $sortKey := keys $rules | sortAlpha -}}
{{- $r := get $rules $sortKey -}}
{{- $rule := dict "apiGroups" (list $r.group) "resources" (sortAlpha $r.resources) "verbs" $r.verbs -}}
{{- if $r.names }}{{ $_ := set $rule "resourceNames" $r.names }}{{ end -}}
{{- $out = append $out $rule -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
