{{/* Chart name, shortened to a DNS label. */}}
{{- define "kubenas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: the release name, plus the chart name unless it already contains it. */}}
{{- define "kubenas.fullname" -}}
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

{{- define "kubenas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object, without the component. */}}
{{- define "kubenas.baseLabels" -}}
helm.sh/chart: {{ include "kubenas.chart" . }}
app.kubernetes.io/name: {{ include "kubenas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubenas
{{- end -}}

{{/* Labels of the operator's objects. */}}
{{- define "kubenas.labels" -}}
{{ include "kubenas.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels that select the operator pod. */}}
{{- define "kubenas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubenas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubenas.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.name -}}
{{- .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- printf "%s-operator" (include "kubenas.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubenas.trainerServiceAccountName" -}}
{{- if .Values.trainer.serviceAccount.name -}}
{{- .Values.trainer.serviceAccount.name -}}
{{- else -}}
{{- printf "%s-trainer" (include "kubenas.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubenas.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "kubenas.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) -}}
{{- end -}}

{{/* Address trial pods POST their reports to: the Service's cluster DNS name. */}}
{{- define "kubenas.reportUrlBase" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "kubenas.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.service.port) -}}
{{- end -}}

{{/* Namespaces that get trainer ServiceAccounts: the release namespace and every watched one. */}}
{{- define "kubenas.trainerNamespaces" -}}
{{- $all := list .Release.Namespace -}}
{{- range .Values.rbac.namespaces -}}
{{- $all = append $all . -}}
{{- end -}}
{{- $all | uniq | toJson -}}
{{- end -}}

{{/* The operator's API permissions, read from files/operator-rbac.yaml (the single list). */}}
{{- define "kubenas.rbacRules" -}}
{{- .Files.Get "files/operator-rbac.yaml" | fromYaml | toJson -}}
{{- end -}}
